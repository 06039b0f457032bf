"""Load a saved encoder folder (or Hub repo) as a plain ``nn.Module``: :class:`MIMCLEncoder`.

``MIMCLEncoder.from_pretrained(DIR | "org/name")`` reads the folder written by
:func:`mimcl_hub.hub.save.save_encoder` — ``config.json`` (timm format), ``model.safetensors``,
``README.md`` — builds the timm model from ``architecture`` + ``model_args`` with ``num_classes=0``
(timm's own config parser, exactly what ``timm.create_model("local-dir:DIR", pretrained=True)`` uses) and
loads the weights strictly. Hub repo ids are fetched with ``huggingface_hub.snapshot_download`` (which
honours ``HF_ENDPOINT``, ``HF_TOKEN`` and ``HF_HUB_OFFLINE``).

Only safetensors weights are read. Pickle checkpoints (``pytorch_model.bin``, ``*.pth``) are refused unless
``allow_pickle=True``, and even then they go through ``torch.load(weights_only=True)``.

``forward(pixel_values)`` returns pooled (B, D) features; :meth:`MIMCLEncoder.embed` takes PIL images or
uint8 arrays and applies the model's own preprocessing (``timm.data.resolve_data_config`` +
``create_transform``, eval mode). :meth:`MIMCLEncoder.save_pretrained` writes the same folder back
(via ``save_encoder``), keeping the model card.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .._atomic import atomic_write_bytes
from .._safety import check_repo_id

__all__ = ["CONFIG_NAME", "MIMCLEncoder", "PICKLE_NAMES", "WEIGHTS_NAME"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
#: pickle checkpoints, read only with ``allow_pickle=True``
PICKLE_NAMES = ("pytorch_model.bin", "model.pth", "model.pt", "open_clip_pytorch_model.bin")
_HUB_FILES = [CONFIG_NAME, WEIGHTS_NAME, CARD_NAME, "*.png", "eval_results.json", "training_metrics.json"]


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or "\\" in name or os.path.exists(name)


def resolve_folder(path_or_repo_id: str | os.PathLike, revision: str | None = None, token: str | bool | None = None,
                   allow_pickle: bool = False, cache_dir: str | None = None) -> Path:
    """A local folder as is, or a Hub repo id downloaded with ``snapshot_download`` (config, weights, card)."""
    name = os.fspath(path_or_repo_id)
    if os.path.isdir(name):
        return Path(name)
    if _looks_like_path(name) or name.count("/") != 1:
        raise FileNotFoundError(f"encoder {name!r}: no such folder (and not a Hub repo id of the form ORG/NAME)")
    check_repo_id(name, what="encoder repo id")
    from huggingface_hub import snapshot_download

    patterns = list(_HUB_FILES) + (list(PICKLE_NAMES) + ["*.pth"] if allow_pickle else [])
    return Path(snapshot_download(repo_id=name, revision=revision, token=token, allow_patterns=patterns,
                                  cache_dir=cache_dir))


def _read_config(folder: Path) -> dict[str, Any]:
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"encoder folder {folder}: missing {CONFIG_NAME} (the timm config naming the architecture)")
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(config, dict) or not config.get("architecture"):
        raise ValueError(f"{path}: no 'architecture' field (not a timm config.json)")
    return config


#: ``model_args`` keys of an (untrusted) config.json that would make timm read other files or change how it
#: loads; a saved encoder never has them.
_REFUSED_MODEL_ARGS = ("pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "checkpoint_path", "cache_dir",
                       "features_only", "out_indices", "scriptable", "exportable", "no_jit", "device", "dtype")
#: Ranges of the size arguments: values outside them are not a real encoder and would only allocate memory.
_MODEL_ARG_RANGES = {"img_size": (1, 8192), "patch_size": (1, 1024), "in_chans": (1, 64), "embed_dim": (1, 65536),
                     "depth": (1, 1024), "num_heads": (1, 1024), "mlp_ratio": (0.0, 64.0), "drop_path_rate": (0.0, 1.0),
                     "drop_rate": (0.0, 1.0), "num_features": (1, 1 << 20)}


def _check_model_args(path: Path, config: Mapping[str, Any]) -> None:
    """Refuse ``model_args`` that point timm at other files, and size arguments out of range (ValueError)."""
    from .._safety import check_number

    model_args = config.get("model_args") or {}
    if not isinstance(model_args, Mapping):
        raise ValueError(f"{path}: model_args must be a JSON object, got {type(model_args).__name__}")
    refused = sorted(set(model_args) & set(_REFUSED_MODEL_ARGS))
    if refused:
        raise ValueError(f"{path}: model_args {refused} are not accepted from a config file (they would make timm "
                         "load other files or change how it loads); a saved encoder never has them")
    for key, (low, high) in _MODEL_ARG_RANGES.items():
        for where, values in (("model_args", model_args), ("config", config)):
            if key not in values:
                continue
            value = values[key]
            items = value if isinstance(value, (list, tuple)) and key in ("img_size", "patch_size") else [value]
            for item in items:
                check_number(f"{path}: {where}.{key}", item, low, high, integer=isinstance(low, int))


def _build_model(folder: Path, config: Mapping[str, Any]) -> nn.Module:
    """The timm model of ``config.json``, exactly as timm's ``local-dir:`` loader builds it, without weights."""
    import copy

    import timm
    from timm.models._hub import _parse_model_cfg

    from .. import models  # noqa: F401  registers the CIFAR ResNets / small ViTs with timm

    _check_model_args(folder / CONFIG_NAME, config)
    pretrained_cfg, model_name, model_args = _parse_model_cfg(
        copy.deepcopy(dict(config)), extra_fields={"file": str(folder / WEIGHTS_NAME), "source": "local-dir"})
    model_args = {k: v for k, v in dict(model_args).items() if k != "num_classes"}
    if not timm.is_model(model_name):
        raise ValueError(f"{folder / CONFIG_NAME}: unknown timm architecture {model_name!r}")
    try:
        return timm.create_model(model_name, pretrained=False, pretrained_cfg=pretrained_cfg, num_classes=0,
                                 **model_args)
    except TypeError as e:
        raise ValueError(f"{folder / CONFIG_NAME}: model_args {model_args} do not fit {model_name!r}: {e}") from e


def _read_weights(folder: Path, allow_pickle: bool) -> tuple[dict[str, torch.Tensor], Path]:
    path = folder / WEIGHTS_NAME
    if path.is_file():
        from safetensors.torch import load_file

        return load_file(str(path)), path
    pickles = [folder / n for n in PICKLE_NAMES if (folder / n).is_file()] + sorted(folder.glob("*.pth"))
    if not pickles:
        raise FileNotFoundError(f"encoder folder {folder}: missing {WEIGHTS_NAME}")
    if not allow_pickle:
        raise ValueError(f"encoder folder {folder}: missing {WEIGHTS_NAME}; found only the pickle checkpoint "
                         f"{pickles[0].name}, which is refused (pickles can run code). Convert it to safetensors, or "
                         f"pass allow_pickle=True to read it with torch.load(weights_only=True)")
    import pickle

    try:
        state = torch.load(str(pickles[0]), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as e:  # code or foreign objects inside the pickle
        raise ValueError(f"{pickles[0]}: refused by torch.load(weights_only=True): it holds more than tensors "
                         f"(objects or code that a plain state dict never has): {str(e).splitlines()[0]}") from e
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{pickles[0]}: not a state dict ({type(state).__name__})")
    return state, pickles[0]


class MIMCLEncoder(nn.Module):
    """A saved mimcl_hub encoder: a headless timm backbone plus its config and model card.

    Attributes:
        model: the timm backbone (``num_classes=0``).
        config: the ``config.json`` dict.
        folder: where it was loaded from (a Hub snapshot folder for repo ids), or ``None``.
    """

    def __init__(self, model: nn.Module, config: Mapping[str, Any] | None = None, folder: str | os.PathLike | None = None):
        super().__init__()
        self.model = model
        if config is None:
            from .save import encoder_config

            config = encoder_config(model)
        self.config = dict(config)
        self.folder = Path(folder) if folder is not None else None
        self._transform = None

    # ---------------------------------------------------------------------------------------- loading

    @classmethod
    def from_pretrained(cls, path_or_repo_id: str | os.PathLike, revision: str | None = None,
                        token: str | bool | None = None, device: torch.device | str | None = None,
                        allow_pickle: bool = False, cache_dir: str | None = None) -> "MIMCLEncoder":
        """Load a local encoder folder or a Hub repo id (``ORG/NAME``, through ``snapshot_download``).

        Raises:
            FileNotFoundError: no such folder, or ``config.json`` / ``model.safetensors`` missing (named).
            ValueError: a bad config, weights that do not match the architecture (strict load), or a pickle
                checkpoint without ``allow_pickle=True``.
        """
        folder = resolve_folder(path_or_repo_id, revision=revision, token=token, allow_pickle=allow_pickle,
                                cache_dir=cache_dir)
        config = _read_config(folder)
        model = _build_model(folder, config)
        state, path = _read_weights(folder, allow_pickle)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise ValueError(f"{path}: weights do not match {config['architecture']} "
                             f"{config.get('model_args') or {}}: {e}") from e
        encoder = cls(model, config, folder).eval()
        if device is not None:
            encoder.to(device)
        return encoder

    # ---------------------------------------------------------------------------------------- properties

    @property
    def pretrained_cfg(self) -> dict[str, Any]:
        return dict(getattr(self.model, "pretrained_cfg", {}) or {})

    @property
    def num_features(self) -> int:
        return int(self.model.num_features)

    @property
    def device(self) -> torch.device:
        try:
            return next(self.parameters()).device
        except StopIteration:
            return torch.device("cpu")

    @property
    def card(self):
        """The ``huggingface_hub.ModelCard`` of ``README.md``, or ``None`` when the folder has none."""
        if self.folder is None or not (self.folder / CARD_NAME).is_file():
            return None
        from huggingface_hub import ModelCard

        return ModelCard.load(self.folder / CARD_NAME)

    def data_config(self) -> dict[str, Any]:
        """timm's ``resolve_data_config`` for this model (input size, mean, std, interpolation, crop)."""
        from timm.data import resolve_data_config

        return resolve_data_config({}, model=self.model)

    @property
    def transform(self):
        """The eval transform (``timm.data.create_transform(**data_config(), is_training=False)``)."""
        if self._transform is None:
            from timm.data import create_transform

            self._transform = create_transform(**self.data_config(), is_training=False)
        return self._transform

    # ---------------------------------------------------------------------------------------- inference

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) preprocessed images -> (B, D) pooled features."""
        return self.model(pixel_values)

    def preprocess(self, images: Any) -> torch.Tensor:
        """PIL image(s) or uint8 array(s) (H, W, 3) / (N, H, W, 3) / (H, W) -> (N, C, H, W) float tensor."""
        from PIL import Image

        if isinstance(images, Image.Image):
            images = [images]
        elif isinstance(images, (np.ndarray, torch.Tensor)):
            arr = np.asarray(images.cpu() if isinstance(images, torch.Tensor) else images)
            if arr.dtype != np.uint8:
                raise ValueError(f"embed: arrays must be uint8 (H, W[, 3]) images, got {arr.dtype}")
            images = [arr] if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] in (1, 3, 4)) else list(arr)
        if not isinstance(images, Sequence) or len(images) == 0:
            raise ValueError("embed: pass a PIL image, a list of them, or a uint8 array (N, H, W, 3)")
        out = []
        for i, im in enumerate(images):
            if not isinstance(im, Image.Image):
                arr = np.asarray(im)
                if arr.dtype != np.uint8 or arr.ndim not in (2, 3):
                    raise ValueError(f"embed: image {i} is not a PIL image or uint8 (H, W[, C]) array "
                                     f"({arr.dtype} {arr.shape})")
                if arr.ndim == 3 and arr.shape[-1] == 1:
                    arr = arr[..., 0]
                im = Image.fromarray(arr)
            out.append(self.transform(im.convert("RGB")))
        return torch.stack(out)

    @torch.no_grad()
    def embed(self, images: Any, batch_size: int = 256) -> torch.Tensor:
        """Pooled features (N, D) of PIL images / uint8 arrays, with the model's own eval preprocessing."""
        x = self.preprocess(images)
        was_training = self.training
        self.eval()
        try:
            feats = [self(x[i:i + batch_size].to(self.device)).float().cpu() for i in range(0, len(x), batch_size)]
        finally:
            self.train(was_training)
        return torch.cat(feats)

    # ---------------------------------------------------------------------------------------- saving

    def save_pretrained(self, folder: str | os.PathLike, card: Any = None, **kwargs: Any) -> str:
        """Write the encoder folder with :func:`~mimcl_hub.hub.save.save_encoder` (atomically).

        ``card``: a :class:`~mimcl_hub.hub.card.RunCard` (or a mapping of its fields) rendered into a new
        ``README.md``. Without it the loaded model card (``README.md``), its twin picture and ``eval_results.json``
        are kept as they are, so ``from_pretrained(save_pretrained(...))`` round-trips. Extra keyword arguments go
        to ``save_encoder`` (``heads``, ``heads_config``, ``metrics``, ``twin_figure``).
        """
        from .save import save_encoder

        loaded_card = self.card if card is None else None
        src = self.folder
        if src is not None and "twin_figure" not in kwargs and (src / "twins.png").is_file():
            kwargs["twin_figure"] = str(src / "twins.png")
        extra: dict[str, bytes] = {}
        if card is None and src is not None:
            for name in ("eval_results.json",):
                if (src / name).is_file():
                    extra[name] = (src / name).read_bytes()
            if (src / "training_metrics.json").is_file() and "metrics" not in kwargs:
                kwargs["metrics"] = json.loads((src / "training_metrics.json").read_text(encoding="utf-8"))
        out = Path(save_encoder(self.model, folder, card, **kwargs))
        if loaded_card is not None:
            extra[CARD_NAME] = str(loaded_card.content).encode("utf-8")
        for name, data in extra.items():
            atomic_write_bytes(out / name, data)
        return str(out)

    def extra_repr(self) -> str:
        return f"architecture={self.config.get('architecture')!r}, num_features={self.config.get('num_features')}"
