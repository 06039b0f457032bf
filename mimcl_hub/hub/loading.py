"""Read an untrusted encoder folder: ``config.json`` and the weights, checked before anything large is allocated.

Every file of an encoder folder is untrusted (it may come from anyone's Hub repo). :func:`load_encoder_folder`
bounds, parses and type-checks ``config.json`` and the safetensors header, builds the architecture on the ``meta``
device and compares it with the weight file (names, shapes, dtypes, hence its size) before any real allocation,
refuses non-finite weights, and only then builds the model for real and loads it strictly. Every defect is a
``ValueError`` (bad content) or ``FileNotFoundError`` (no such file) naming the file and what is wrong — never a
library's own exception.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

__all__ = ["CONFIG_NAME", "MAX_CONFIG_BYTES", "MAX_HEADER_BYTES", "PICKLE_NAMES", "WEIGHTS_NAME",
           "check_encoder_folder", "load_encoder_folder"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
#: pickle checkpoints, read only with ``allow_pickle=True``
PICKLE_NAMES = ("pytorch_model.bin", "model.pth", "model.pt", "open_clip_pytorch_model.bin")



#: ``config.json`` larger than this is refused before it is read (a timm config is a few KB; label names of a
#: 22k-class head are under 1 MB).
MAX_CONFIG_BYTES = 16 << 20
#: safetensors header larger than this is refused before it is read (the limit the safetensors library applies).
MAX_HEADER_BYTES = 100_000_000
#: safetensors dtype names (the format's spec) -> torch dtypes: those ``safetensors.torch`` reads.
_SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                       "F8_E4M3": torch.float8_e4m3fn, "F8_E4M3FNUZ": torch.float8_e4m3fnuz,
                       "F8_E5M2": torch.float8_e5m2, "F8_E5M2FNUZ": torch.float8_e5m2fnuz, "C64": torch.complex64,
                       "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
                       "U64": torch.uint64, "U32": torch.uint32, "U16": torch.uint16, "U8": torch.uint8,
                       "BOOL": torch.bool}

#: what a weight file holds, as the loaders compare it with the architecture: tensor name -> (dtype, shape)
_Signature = dict[str, tuple[torch.dtype, tuple[int, ...]]]


def _file_size(path: Path, what: str) -> int:
    """The size of the regular file ``path``; FileNotFoundError (naming ``what``) when there is none."""
    if not path.exists():
        raise FileNotFoundError(f"encoder folder {path.parent}: missing {path.name} ({what})")
    if not path.is_file():
        kind = "a directory" if path.is_dir() else "not a regular file"
        raise FileNotFoundError(f"{path}: is {kind}, not the {what}")
    return path.stat().st_size


def _read_bytes(path: Path, start: int = 0, length: int | None = None) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(start)
            return f.read() if length is None else f.read(length)
    except OSError as e:
        raise ValueError(f"{path}: cannot be read ({e.strerror or e})") from e


def _json_object(path: Path, data: bytes, what: str) -> dict[str, Any]:
    """``data`` parsed as one JSON object; ValueError naming ``path`` for non-UTF-8 text, invalid JSON, duplicate
    keys (loaders would disagree on which one counts), NaN / Infinity (not JSON), nesting too deep, or a non-object."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: the {what} is not UTF-8 text (byte {e.start}: {data[e.start:e.start + 1]!r})") from e

    def no_duplicates(pairs):
        keys = [k for k, _ in pairs]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise ValueError(f"{path}: the {what} has duplicate keys {dup[:5]} (which one counts is ambiguous)")
        return dict(pairs)

    def no_constant(name):
        raise ValueError(f"{path}: the {what} holds {name}, which is not JSON")

    try:
        value = json.loads(text, object_pairs_hook=no_duplicates, parse_constant=no_constant)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: the {what} is not valid JSON ({e})") from e
    except RecursionError as e:
        raise ValueError(f"{path}: the {what} is nested too deeply to be a real one") from e
    if not isinstance(value, dict):
        raise ValueError(f"{path}: the {what} must be a JSON object, got a JSON {type(value).__name__}")
    return value


def _read_config(folder: Path) -> dict[str, Any]:
    """``config.json`` as a dict, its top-level fields type-checked (ValueError / FileNotFoundError naming it)."""
    path = folder / CONFIG_NAME
    size = _file_size(path, "timm config naming the architecture")
    if size > MAX_CONFIG_BYTES:
        raise ValueError(f"{path}: {size:,} bytes, more than any timm config.json ({MAX_CONFIG_BYTES:,} at most)")
    data = _read_bytes(path, 0, MAX_CONFIG_BYTES + 1)     # bounded: a special file may report size 0
    if len(data) > MAX_CONFIG_BYTES:
        raise ValueError(f"{path}: more than any timm config.json ({MAX_CONFIG_BYTES:,} bytes at most)")
    config = _json_object(path, data, "config")
    arch = config.get("architecture")
    if not arch:
        raise ValueError(f"{path}: no 'architecture' field (not a timm config.json)")
    if not isinstance(arch, str):
        raise ValueError(f"{path}: 'architecture' must be a timm model name (a string), got "
                         f"{type(arch).__name__} {arch!r:.100}")
    for key in ("model_args", "pretrained_cfg"):
        if config.get(key) is not None and not isinstance(config[key], Mapping):
            raise ValueError(f"{path}: {key!r} must be a JSON object, got {type(config[key]).__name__} "
                             f"{config[key]!r:.100}")
    return config


#: ``model_args`` keys of an (untrusted) config.json that would make timm read other files or change how it
#: loads; a saved encoder never has them.
_REFUSED_MODEL_ARGS = ("pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "checkpoint_path", "cache_dir",
                       "features_only", "out_indices", "scriptable", "exportable", "no_jit", "device", "dtype")
#: Ranges of the size arguments: values outside them are not a real encoder and would only allocate memory. Each is
#: checked alone; their product (the model's size) is checked against the weight file before anything is allocated.
_MODEL_ARG_RANGES = {"img_size": (1, 8192), "patch_size": (1, 1024), "in_chans": (1, 64), "embed_dim": (1, 65536),
                     "depth": (1, 1024), "num_heads": (1, 1024), "mlp_ratio": (0.0, 64.0), "drop_path_rate": (0.0, 1.0),
                     "drop_rate": (0.0, 1.0), "num_features": (1, 1_000_000), "num_classes": (0, 1_000_000)}
#: ``pretrained_cfg`` fields that preprocessing (``MIMCLEncoder.transform``) reads, and their ranges.
_PRETRAINED_CFG_RANGES = {"input_size": (1, 8192), "mean": (-1e3, 1e3), "std": (1e-6, 1e3), "crop_pct": (0.01, 4.0)}


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
    pretrained_cfg = config.get("pretrained_cfg") or {}
    for ranges, where, values in ((_MODEL_ARG_RANGES, "model_args", model_args), (_MODEL_ARG_RANGES, "config", config),
                                  (_PRETRAINED_CFG_RANGES, "pretrained_cfg", pretrained_cfg)):
        for key, (low, high) in ranges.items():
            if values.get(key) is None:
                continue
            value = values[key]
            listed = key in ("img_size", "patch_size", "input_size", "mean", "std")
            if listed and isinstance(value, (list, tuple)) and not 1 <= len(value) <= 64:
                raise ValueError(f"{path}: {where}.{key} must list 1 to 64 numbers, got {len(value)}")
            items = value if isinstance(value, (list, tuple)) and listed else [value]
            for item in items:
                check_number(f"{path}: {where}.{key}", item, low, high, integer=isinstance(low, int))


def _read_safetensors_header(path: Path) -> _Signature:
    """The tensors a safetensors file holds, from its header alone (the data is not read): name -> (dtype, shape).

    Checks what the format requires (8-byte little-endian header length, then that many bytes of UTF-8 JSON, then
    the data) with bounds taken from the file's real size, so a truncated file or an absurd header length is refused
    before anything is allocated: each tensor's ``data_offsets`` span exactly ``numel * itemsize`` bytes, the spans
    tile the data section without gap or overlap, and the data section ends where the file ends.
    """
    size = _file_size(path, "weights")
    if size < 8:
        raise ValueError(f"{path}: {size} bytes, too short for a safetensors file (an 8-byte header length comes "
                         "first); the file is empty or truncated")
    (header_len,) = struct.unpack("<Q", _read_bytes(path, 0, 8))
    if header_len > min(size - 8, MAX_HEADER_BYTES):
        why = (f"the file has only {size - 8:,} bytes after it: truncated, or not a safetensors file"
               if header_len > size - 8 else f"more than the {MAX_HEADER_BYTES:,} bytes safetensors allows")
        raise ValueError(f"{path}: safetensors header length {header_len:,} bytes: {why}")
    header = _json_object(path, _read_bytes(path, 8, header_len), "safetensors header")
    data_size = size - 8 - header_len
    metadata = header.pop("__metadata__", None)
    if metadata is not None and not (isinstance(metadata, dict)
                                     and all(isinstance(v, str) for v in metadata.values())):
        raise ValueError(f"{path}: safetensors __metadata__ must map names to strings")
    signature: _Signature = {}
    spans = []
    for name, info in header.items():
        dtype_name = info.get("dtype") if isinstance(info, dict) else None
        shape = info.get("shape") if isinstance(info, dict) else None
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if dtype_name not in _SAFETENSORS_DTYPES:
            raise ValueError(f"{path}: tensor {name!r}: dtype {dtype_name!r} is not one of "
                             f"{sorted(_SAFETENSORS_DTYPES)}")
        if not (isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                for d in shape)):
            raise ValueError(f"{path}: tensor {name!r}: shape {shape!r:.100} is not a list of non-negative ints")
        if not (isinstance(offsets, list) and len(offsets) == 2
                and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
            raise ValueError(f"{path}: tensor {name!r}: data_offsets {offsets!r:.100} are not two ints")
        dtype = _SAFETENSORS_DTYPES[dtype_name]
        nbytes = math.prod(shape) * dtype.itemsize
        if offsets[1] - offsets[0] != nbytes:
            raise ValueError(f"{path}: tensor {name!r}: {dtype_name} {shape} needs {nbytes:,} bytes but its "
                             f"data_offsets {offsets} span {offsets[1] - offsets[0]:,}")
        signature[name] = (dtype, tuple(shape))
        spans.append((offsets[0], offsets[1], name))
    end = 0
    for begin, stop, name in sorted(spans):
        if begin != end:
            raise ValueError(f"{path}: tensor {name!r} starts at data byte {begin:,}, expected {end:,} (the tensors "
                             "must tile the data section without gaps or overlaps)")
        end = stop
    if end != data_size:
        raise ValueError(f"{path}: the header describes {end:,} bytes of tensor data but the file holds {data_size:,}"
                         f" ({'truncated' if end > data_size else 'trailing bytes'})")
    return signature


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of ``path`` (already checked by :func:`_read_safetensors_header`), on CPU."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as e:      # the file changed since its header was checked
        raise ValueError(f"{path}: not a readable safetensors file ({e})") from e


def _weights_path(folder: Path, allow_pickle: bool) -> Path:
    """``model.safetensors``, or with ``allow_pickle=True`` a pickle checkpoint when that is all there is."""
    path = folder / WEIGHTS_NAME
    if path.exists() or path.is_symlink():
        _file_size(path, "weights")          # a directory / dangling link of that name is named as such
        return path
    pickles = [folder / n for n in PICKLE_NAMES if (folder / n).is_file()] + sorted(folder.glob("*.pth"))
    if not pickles:
        raise FileNotFoundError(f"encoder folder {folder}: missing {WEIGHTS_NAME}")
    if not allow_pickle:
        raise ValueError(f"encoder folder {folder}: missing {WEIGHTS_NAME}; found only the pickle checkpoint "
                         f"{pickles[0].name}, which is refused (pickles can run code). Convert it to safetensors, or "
                         f"pass allow_pickle=True to read it with torch.load(weights_only=True)")
    return pickles[0]


def _load_pickle(path: Path) -> dict[str, torch.Tensor]:
    """A pickle state dict through ``torch.load(weights_only=True)`` (no code, no foreign objects)."""
    import pickle

    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as e:
        raise ValueError(f"{path}: refused by torch.load(weights_only=True): it is damaged or holds more than "
                         "tensors (objects or code that a plain state dict never has): "
                         f"{str(e).splitlines()[0]}") from e
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a state dict ({type(state).__name__})")
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"{path}: not a state dict: entries {bad[:5]!r} are not named tensors")
    return state


def _signature(state: Mapping[str, torch.Tensor]) -> _Signature:
    return {k: (v.dtype, tuple(v.shape)) for k, v in state.items()}


def _numel(signature: _Signature) -> int:
    return sum(math.prod(shape) for _, shape in signature.values())


def _nbytes(signature: _Signature) -> int:
    return sum(math.prod(shape) * dtype.itemsize for dtype, shape in signature.values())


def _dtype_kind(dtype: torch.dtype) -> str:
    if dtype.is_floating_point:
        return "floating point"
    if dtype.is_complex:
        return "complex"
    return "bool" if dtype == torch.bool else "integer"


def _check_finite(path: Path, state: Mapping[str, torch.Tensor]) -> None:
    """Refuse NaN / inf in floating-point weights: they make every embedding NaN (a silent wrong result);
    a trained encoder never has them."""
    bad = []
    for name, tensor in state.items():
        if tensor.is_floating_point() and tensor.numel():
            flat = tensor.reshape(-1)
            step = 1 << 24                      # a bool mask of 16 MB at a time
            n = sum(int((~torch.isfinite(flat[i:i + step].to(torch.float16) if tensor.itemsize == 1
                                          else flat[i:i + step])).sum()) for i in range(0, flat.numel(), step))
            if n:
                bad.append(f"{name} ({n:,} of {tensor.numel():,})")
    if bad:
        raise ValueError(f"{path}: non-finite values (NaN / inf) in {len(bad)} tensor(s): {', '.join(bad[:5])}"
                         f"{' ...' if len(bad) > 5 else ''}; a trained encoder has none")


# ------------------------------------------------------------------------------------------------ building the model


def _parse_timm_config(config: dict[str, Any],
                       extra_fields: Mapping[str, Any]) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """``(pretrained_cfg, model_name, model_args)`` of a timm ``config.json`` dict (changed in place), as timm's
    ``local-dir:`` loader reads it (timm >= 1.0.16, ``timm.models._hub._parse_model_cfg``, which is private, so it
    is written out here): a legacy single dict is split; ``extra_fields`` and the top-level ``num_classes`` /
    ``label_names`` / ``label_descriptions`` go into ``pretrained_cfg``; ``model_args`` ``in_chans`` / ``img_size``
    (fixed-size models) are reflected in ``pretrained_cfg["input_size"]``."""
    if "pretrained_cfg" not in config:                      # legacy single dict
        pretrained_cfg = config
        config = {"architecture": pretrained_cfg.pop("architecture"),
                  "num_features": pretrained_cfg.pop("num_features", None), "pretrained_cfg": pretrained_cfg}
        if "labels" in pretrained_cfg:
            pretrained_cfg["label_names"] = pretrained_cfg.pop("labels")
    pretrained_cfg = config["pretrained_cfg"]
    if not isinstance(pretrained_cfg, dict):
        raise TypeError(f"pretrained_cfg must be a JSON object, got {type(pretrained_cfg).__name__}")
    pretrained_cfg.update(extra_fields)
    if "num_classes" in config:
        pretrained_cfg["num_classes"] = config["num_classes"]
    for key in ("label_names", "label_descriptions"):
        if key in config:
            pretrained_cfg[key] = config.pop(key)
    model_args = config.get("model_args") or {}
    if model_args.get("in_chans") is not None:
        input_size = pretrained_cfg.get("input_size") or (3, 224, 224)
        pretrained_cfg["input_size"] = (model_args["in_chans"], *input_size[1:])
    if model_args.get("img_size") is not None and pretrained_cfg.get("fixed_input_size", False):
        size = model_args["img_size"]
        size = (size, size) if isinstance(size, int) else tuple(size)
        pretrained_cfg["input_size"] = (pretrained_cfg["input_size"][0], *size)
    return pretrained_cfg, config["architecture"], model_args


def _model_spec(folder: Path, config: Mapping[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """``(model_name, pretrained_cfg, model_args)`` of ``config.json``, parsed as timm's ``local-dir:`` loader does."""
    import copy

    import timm

    from .. import models  # noqa: F401  registers the CIFAR ResNets / small ViTs with timm

    path = folder / CONFIG_NAME
    _check_model_args(path, config)
    try:
        pretrained_cfg, model_name, model_args = _parse_timm_config(
            copy.deepcopy(dict(config)), extra_fields={"file": str(folder / WEIGHTS_NAME), "source": "local-dir"})
    except Exception as e:  # noqa: BLE001  the parser assumes well-formed fields, as timm's does
        raise ValueError(f"{path}: not a timm config timm can parse ({type(e).__name__}: {e})") from e
    model_args = {k: v for k, v in dict(model_args).items() if k != "num_classes"}
    if not timm.is_model(model_name):
        from ..models.backbones import unknown_architecture_message

        raise ValueError(f"{path}: {unknown_architecture_message(model_name)}")
    return model_name, pretrained_cfg, model_args


#: torch's tensor factories that take ``device=`` (the set ``torch.utils._device._device_constructors()`` holds,
#: written out here because that function is private; names a torch build lacks are skipped)
_FACTORY_NAMES = ("empty", "empty_permuted", "empty_strided", "empty_quantized", "ones", "zeros", "full", "arange",
                  "range", "linspace", "logspace", "eye", "rand", "randn", "randint", "randperm", "bartlett_window",
                  "blackman_window", "hamming_window", "hann_window", "kaiser_window", "tril_indices", "triu_indices",
                  "sparse_coo_tensor", "sparse_compressed_tensor", "sparse_csr_tensor", "sparse_csc_tensor",
                  "sparse_bsr_tensor", "sparse_bsc_tensor", "asarray", "tensor", "as_tensor", "scalar_tensor")


def _tensor_factories() -> frozenset:
    found = [getattr(torch, name, None) for name in _FACTORY_NAMES]
    found += [getattr(torch.fft, "fftfreq", None), getattr(torch.fft, "rfftfreq", None),
              getattr(torch.nested, "nested_tensor", None)]
    return frozenset(f for f in found if f is not None)


class _AllocationBudget(torch.overrides.TorchFunctionMode):
    """Inside it, torch's tensor factories (``torch.empty``, ``zeros``, ``randn``, ``tensor``, ...) may create at
    most ``budget`` bytes in all; each request is sized on the meta device first, so the call that would pass the
    budget raises (ValueError) before it allocates anything."""

    def __init__(self, budget: int, what: str):
        super().__init__()
        self.budget, self.used, self.what = budget, 0, what
        self.factories = _tensor_factories()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.factories:
            try:
                probe = func(*args, **{**kwargs, "device": "meta"})
                self.used += probe.numel() * probe.element_size() if isinstance(probe, torch.Tensor) else 0
            except Exception:  # noqa: BLE001  a call the meta device cannot size: the real call decides
                pass
            if self.used > self.budget:
                raise _OverBudget(f"{self.what}: building it creates more than {self.budget:,} bytes of tensors "
                                  f"(the stated budget: 2 x the weight file's tensor bytes + 64 MiB); refused before "
                                  "allocating them")
        return func(*args, **kwargs)


class _OverBudget(ValueError):
    """Raised by :class:`_AllocationBudget`; passed through :func:`_create` as is (it already names the config)."""


def _create(folder: Path, model_name: str, pretrained_cfg: dict[str, Any], model_args: dict[str, Any],
            device: str | None = None) -> nn.Module:
    """``timm.create_model`` (``num_classes=0``, no weights); any failure of the constructor -> ValueError."""
    import timm

    try:
        if device is None:
            return timm.create_model(model_name, pretrained=False, pretrained_cfg=pretrained_cfg, num_classes=0,
                                     **model_args)
        with torch.device(device):
            return timm.create_model(model_name, pretrained=False, pretrained_cfg=pretrained_cfg, num_classes=0,
                                     **model_args)
    except (_OverBudget, MemoryError):
        raise
    except Exception as e:  # noqa: BLE001  the constructor is arbitrary code fed by an untrusted file
        raise ValueError(f"{folder / CONFIG_NAME}: model_args {model_args} do not fit {model_name!r}: "
                         f"{type(e).__name__}: {e}") from e


def _build_model(folder: Path, config: Mapping[str, Any], weights: _Signature, weights_path: Path) -> nn.Module:
    """The timm model of ``config.json``, exactly as timm's ``local-dir:`` loader builds it, without weights.

    ``weights`` is what the weight file ``weights_path`` holds (:func:`_read_safetensors_header`, or the signature
    of a pickle's state dict). The architecture is first built on the ``meta`` device (no memory) and its state
    dict compared with the file — names, shapes, dtype kinds and so its size — so a config that asks for a model
    larger than its weights (``embed_dim 16384, depth 64``: 172 G parameters) is refused (ValueError naming both
    files and both sizes) before anything is allocated. An architecture that cannot be built on ``meta`` is built
    for real under a stated budget instead: its tensors may total at most 2 x the file's tensor bytes + 64 MiB
    (:class:`_AllocationBudget`)."""
    model_name, pretrained_cfg, model_args = _model_spec(folder, config)
    try:
        skeleton = _create(folder, model_name, pretrained_cfg, model_args, device="meta")
    except ValueError:
        skeleton = None                      # cannot be built on meta (or a bad config, which the real build names)
    if skeleton is not None:
        _check_weights_fit(folder / CONFIG_NAME, weights_path, model_name, model_args,
                           _signature(skeleton.state_dict()), weights)
        return _create(folder, model_name, pretrained_cfg, model_args)
    budget = 2 * _nbytes(weights) + (64 << 20)
    with _AllocationBudget(budget, f"{folder / CONFIG_NAME}: {model_name} {model_args}"):
        return _create(folder, model_name, pretrained_cfg, model_args)


def _check_weights_fit(config_path: Path, weights_path: Path, model_name: str, model_args: Mapping[str, Any],
                       expected: _Signature, found: _Signature) -> None:
    """ValueError naming both files and both sizes unless the file holds exactly the architecture's tensors
    (names, shapes; floating point for floating point, integer for integer)."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = [f"{k} (file {list(found[k][1])}, architecture {list(expected[k][1])})"
              for k in expected if k in found and found[k][1] != expected[k][1]]
    dtypes = [f"{k} (file {found[k][0]}, architecture {expected[k][0]})"
              for k in expected if k in found and _dtype_kind(found[k][0]) != _dtype_kind(expected[k][0])]
    if not (missing or unexpected or shapes or dtypes):
        return

    def few(items):
        return ", ".join(items[:5]) + (f" (+{len(items) - 5} more)" if len(items) > 5 else "")

    n_model, n_file = _numel(expected), _numel(found)
    problems = [f"{what}: {few(items)}" for what, items in
                (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes), ("wrong dtype", dtypes))
                if items]
    raise ValueError(f"{weights_path}: weights do not match {config_path} ({model_name}, model_args "
                     f"{dict(model_args)}): the architecture has {n_model:,} parameters and buffers "
                     f"({_nbytes(expected) / 2**30:.3g} GiB as built), the file holds {n_file:,} "
                     f"({_nbytes(found) / 2**30:.3g} GiB); {'; '.join(problems)}. Nothing was allocated for the model")


def check_encoder_folder(folder: Path, check_values: bool = False) -> tuple[str, dict[str, Any]]:
    """Check a saved encoder folder as :func:`load_encoder_folder` does, without building the model:
    ``config.json`` bounded, parsed and type-checked, the architecture built on the ``meta`` device and compared
    with the ``model.safetensors`` header (so a config asking for a model far larger than its weights is refused
    before anything is allocated); with ``check_values``, the weights are also read one tensor at a time and NaN /
    inf refused. Returns ``(timm model name, model_args)``; ``ValueError`` / ``FileNotFoundError`` naming the file
    otherwise. ``mimcl train --model_name local-dir:DIR`` and ``mimcl push`` run it first."""
    folder = Path(folder)
    config = _read_config(folder)
    path = _weights_path(folder, allow_pickle=False)
    found = _read_safetensors_header(path)
    model_name, pretrained_cfg, model_args = _model_spec(folder, config)
    skeleton = _create(folder, model_name, pretrained_cfg, model_args, device="meta")
    _check_weights_fit(folder / CONFIG_NAME, path, model_name, model_args, _signature(skeleton.state_dict()), found)
    if check_values:
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                for name in f.keys():
                    _check_finite(path, {name: f.get_tensor(name)})
        except (SafetensorError, OSError) as e:      # the file changed since its header was checked
            raise ValueError(f"{path}: not a readable safetensors file ({e})") from e
    return model_name, model_args


def load_encoder_folder(folder: Path, allow_pickle: bool = False) -> tuple[nn.Module, dict[str, Any]]:
    """``(model with its weights loaded, config dict)`` of an encoder folder (see the module docstring)."""
    config = _read_config(folder)
    path = _weights_path(folder, allow_pickle)
    state = None
    if path.name == WEIGHTS_NAME:
        found = _read_safetensors_header(path)          # header only: nothing large is read yet
    else:
        state = _load_pickle(path)                      # bounded by the file's size
        found = _signature(state)
    model = _build_model(folder, config, found, path)   # refused on meta when it does not fit the file
    if state is None:
        state = _load_safetensors(path)
    _check_finite(path, state)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ValueError(f"{path}: weights do not match {config['architecture']} "
                         f"{config.get('model_args') or {}}: {e}") from e
    return model, config
