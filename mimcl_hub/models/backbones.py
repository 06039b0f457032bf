"""timm backbone factory and small-image variants registered in timm's model registry.

Every backbone is a plain timm model created with ``num_classes=0``: ``model(x)`` returns pooled
features of shape (B, ``model.num_features``). Heads live in :mod:`mimcl_hub.models.heads`.

Registered on import (``import mimcl_hub.models``), so ``timm.create_model(name)`` builds them:

============================  ===========================================================  ==============
name                          what it is                                                   standard timm?
============================  ===========================================================  ==============
``resnet18_cifar``            ResNet-18 with the CIFAR stem (3x3/1 conv1, no max-pool)     no
``resnet50_cifar``            ResNet-50 with the CIFAR stem                                no
``vit_tiny_patch4_32``        ``vit_tiny_patch16_224`` + ``img_size=32, patch_size=4``     yes
``vit_small_patch4_32``       ``vit_small_patch16_224`` + ``img_size=32, patch_size=4``    yes
``vit_tiny_patch8_64``        ``vit_tiny_patch16_224`` + ``img_size=64, patch_size=8``     yes
============================  ===========================================================  ==============

Why the CIFAR ResNets are not "standard timm + model_args": timm's ``ResNet`` stem is either a 7x7
stride-2 conv (``stem_type=''``) or a three-conv deep stem whose first conv has stride 2
(``stem_type='deep'|'deep_tiered'``), always followed by a stride-2 down-sampling layer
(``MaxPool2d(3, 2)``, a stride-2 conv with ``replace_stem_pool=True``, or the stride-2 ``aa_layer``).
No constructor argument gives a stride-1 stem and ``output_stride`` only dilates the stages, so
every ``resnet*`` configuration down-samples the input by 4 before ``layer1``. The CIFAR variants
therefore subclass timm's ``ResNet`` and swap ``conv1`` / ``maxpool``; their state-dict keys are
exactly timm ``resnet18`` / ``resnet50`` keys (only ``conv1.weight`` changes shape, 3x3 instead of
7x7), but a saved ``config.json`` naming them loads (in timm or ``transformers.AutoModel``) only in a
process that ran ``import mimcl_hub.models`` first. See :data:`REQUIRES_MIMCL_HUB`.

The ViT variants delegate to the standard timm entrypoint, so :func:`timm_config_for` can describe
them as ``{"architecture": "vit_tiny_patch16_224", "model_args": {"img_size": 32, "patch_size": 4,
...}}``: such a ``config.json`` loads with ``timm.create_model("local-dir:DIR", pretrained=True)``
and ``transformers.AutoModel.from_pretrained(DIR)`` without importing mimcl_hub.
"""

from __future__ import annotations

import difflib
import json
import os
from typing import Any

import timm
import torch
from timm.data.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import convert_sync_batchnorm
from timm.models import (
    build_model_with_cfg,
    generate_default_cfgs,
    is_model,
    model_entrypoint,
    register_model,
    resolve_pretrained_cfg,
    split_model_name_tag,
)
from timm.models.resnet import BasicBlock, Bottleneck, ResNet
from torch import nn

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "REQUIRES_MIMCL_HUB",
    "SMALL_IMAGE_MODELS",
    "CifarResNet",
    "OfflineWeightsError",
    "backbone_data_config",
    "create_backbone",
    "timm_config_for",
    "unknown_architecture_message",
]

#: CIFAR-10 training-set channel statistics (as used by solo-learn / SimCLR CIFAR recipes).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

#: ViT variants: registered name -> (standard timm architecture, model_args that turn it into the variant).
_VIT_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "vit_tiny_patch4_32": ("vit_tiny_patch16_224", {"img_size": 32, "patch_size": 4}),
    "vit_small_patch4_32": ("vit_small_patch16_224", {"img_size": 32, "patch_size": 4}),
    "vit_tiny_patch8_64": ("vit_tiny_patch16_224", {"img_size": 64, "patch_size": 8}),
}

#: Registered variants whose saved ``config.json`` needs ``import mimcl_hub.models`` before loading
#: (in timm or transformers): no standard timm architecture + model_args reproduces them.
REQUIRES_MIMCL_HUB = frozenset({"resnet18_cifar", "resnet50_cifar"})

#: Every small-image variant this module registers in timm's registry.
SMALL_IMAGE_MODELS = ("resnet18_cifar", "resnet50_cifar", *_VIT_VARIANTS)


class OfflineWeightsError(ValueError):
    """``pretrained=True`` was asked for, but the weights are not available locally (nothing is downloaded)."""


# --------------------------------------------------------------------------------------------------
# pretrained cfgs (no weights: url / hf_hub_id stay empty, so timm never tries to download them)
# --------------------------------------------------------------------------------------------------


def _resnet_cfg(**kwargs: Any) -> dict[str, Any]:
    return {
        "url": "",
        "num_classes": 0,
        "input_size": (3, 32, 32),
        "pool_size": (4, 4),
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": CIFAR10_MEAN,
        "std": CIFAR10_STD,
        "first_conv": "conv1",
        "classifier": "fc",
        "license": "apache-2.0",
        "origin_url": "https://github.com/vturrisi/solo-learn",
        "paper_ids": "arXiv:2002.05709",
        **kwargs,
    }


def _vit_cfg(img_size: int, mean=CIFAR10_MEAN, std=CIFAR10_STD, **kwargs: Any) -> dict[str, Any]:
    return {
        "url": "",
        "num_classes": 0,
        "input_size": (3, img_size, img_size),
        "pool_size": None,
        "crop_pct": 1.0,
        "interpolation": "bicubic",
        "fixed_input_size": True,
        "mean": mean,
        "std": std,
        "first_conv": "patch_embed.proj",
        "classifier": "head",
        "license": "apache-2.0",
        "paper_ids": "arXiv:2010.11929",
        **kwargs,
    }


default_cfgs = generate_default_cfgs({
    "resnet18_cifar": _resnet_cfg(notes=("CIFAR stem: 3x3 stride-1 conv1, no max-pool",)),
    "resnet50_cifar": _resnet_cfg(notes=("CIFAR stem: 3x3 stride-1 conv1, no max-pool",)),
    "vit_tiny_patch4_32": _vit_cfg(32, notes=("vit_tiny_patch16_224 with img_size=32, patch_size=4",)),
    "vit_small_patch4_32": _vit_cfg(32, notes=("vit_small_patch16_224 with img_size=32, patch_size=4",)),
    "vit_tiny_patch8_64": _vit_cfg(
        64, mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD,
        notes=("vit_tiny_patch16_224 with img_size=64, patch_size=8",),
    ),
})


# --------------------------------------------------------------------------------------------------
# CIFAR ResNets
# --------------------------------------------------------------------------------------------------


class CifarResNet(ResNet):
    """timm ``ResNet`` with the CIFAR stem: ``conv1`` is a 3x3 stride-1 conv and ``maxpool`` is Identity.

    The stem used by SimCLR's CIFAR-10 experiments (Chen et al. 2020, appendix B.9) and solo-learn.
    Module names are timm's, so ``state_dict()`` keys equal those of the matching timm ``resnet*``
    (``conv1.weight`` is (64, C, 3, 3) instead of (64, C, 7, 7)). Feature maps keep the input
    resolution through ``layer1`` (reductions 1, 1, 2, 4, 8 for act1, layer1..layer4).

    Stem-shaping arguments of ``ResNet`` (``stem_type``, ``replace_stem_pool``, ``aa_layer``) and
    ``output_stride != 32`` are rejected: they assume timm's stride-4 stem.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        bad = {
            k: kwargs[k]
            for k, default in (("stem_type", ""), ("replace_stem_pool", False), ("aa_layer", None), ("output_stride", 32))
            if k in kwargs and kwargs[k] != default
        }
        if bad:
            raise ValueError(f"CIFAR ResNet has a fixed 3x3 stride-1 stem; unsupported arguments: {bad}")
        super().__init__(*args, **kwargs)
        width = self.bn1.num_features
        ref = self.bn1.weight
        self.conv1 = nn.Conv2d(
            self.in_chans, width, kernel_size=3, stride=1, padding=1, bias=False, device=ref.device, dtype=ref.dtype
        )
        if ref.device.type != "meta":
            nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.maxpool = nn.Identity()
        # the stem no longer down-samples: every reduction is 4x smaller than timm's
        for info in self.feature_info:
            info["reduction"] = max(1, info["reduction"] // (2 if info["module"] == "act1" else 4))


def _create_cifar_resnet(variant: str, pretrained: bool = False, **kwargs: Any) -> ResNet:
    return build_model_with_cfg(CifarResNet, variant, pretrained, **kwargs)


@register_model
def resnet18_cifar(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-18 for 32x32 images: timm ``resnet18`` blocks with a 3x3 stride-1 ``conv1`` and no max-pool.

    512-d pooled features; CIFAR-10 mean/std in ``pretrained_cfg``. State-dict keys equal timm
    ``resnet18``'s. A saved config naming it needs ``import mimcl_hub.models`` to load.
    """
    model_args = dict(block=BasicBlock, layers=(2, 2, 2, 2))
    return _create_cifar_resnet("resnet18_cifar", pretrained, **dict(model_args, **kwargs))


@register_model
def resnet50_cifar(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-50 for 32x32 images: timm ``resnet50`` blocks with a 3x3 stride-1 ``conv1`` and no max-pool.

    2048-d pooled features; CIFAR-10 mean/std in ``pretrained_cfg``. State-dict keys equal timm
    ``resnet50``'s. A saved config naming it needs ``import mimcl_hub.models`` to load.
    """
    model_args = dict(block=Bottleneck, layers=(3, 4, 6, 3))
    return _create_cifar_resnet("resnet50_cifar", pretrained, **dict(model_args, **kwargs))


# --------------------------------------------------------------------------------------------------
# small-image ViTs: a standard timm entrypoint + model_args, with this variant's pretrained_cfg
# --------------------------------------------------------------------------------------------------


def _create_small_vit(variant: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    architecture, variant_args = _VIT_VARIANTS[variant]
    pretrained_cfg = resolve_pretrained_cfg(
        variant,
        pretrained_cfg=kwargs.pop("pretrained_cfg", None),
        pretrained_cfg_overlay=kwargs.pop("pretrained_cfg_overlay", None),
    )
    return model_entrypoint(architecture)(
        pretrained=pretrained,
        pretrained_cfg=pretrained_cfg.to_dict(),
        **dict(variant_args, **kwargs),
    )


@register_model
def vit_tiny_patch4_32(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """ViT-Ti/4 for 32x32 images (64 patches + class token, 192-d features).

    Exactly ``vit_tiny_patch16_224`` with ``img_size=32, patch_size=4``; CIFAR-10 mean/std.
    """
    return _create_small_vit("vit_tiny_patch4_32", pretrained, **kwargs)


@register_model
def vit_small_patch4_32(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """ViT-S/4 for 32x32 images (64 patches + class token, 384-d features).

    Exactly ``vit_small_patch16_224`` with ``img_size=32, patch_size=4``; CIFAR-10 mean/std.
    """
    return _create_small_vit("vit_small_patch4_32", pretrained, **kwargs)


@register_model
def vit_tiny_patch8_64(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """ViT-Ti/8 for 64x64 images (64 patches + class token, 192-d features).

    Exactly ``vit_tiny_patch16_224`` with ``img_size=64, patch_size=8``; ImageNet mean/std.
    """
    return _create_small_vit("vit_tiny_patch8_64", pretrained, **kwargs)


# --------------------------------------------------------------------------------------------------
# factory
# --------------------------------------------------------------------------------------------------

_OFFLINE_RULE = (
    "mimcl_hub never downloads weights: pretrained=True needs weights that are already on disk, e.g. "
    "create_backbone('local-dir:/path/to/folder', pretrained=True) (a folder with config.json + "
    "model.safetensors), pretrained_cfg_overlay=dict(file='/path/to/weights.safetensors'), or a model "
    "already in the local Hugging Face / torch hub cache."
)


def _check_img_size(name: str, img_size: Any) -> int | None:
    if img_size is None:
        return None
    size = img_size
    if isinstance(size, (tuple, list)):
        if len(size) != 2 or size[0] != size[1]:
            raise ValueError(
                f"img_size for model '{name}' must be one positive int (square images), got {img_size!r}"
            )
        size = size[0]
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise ValueError(f"img_size for model '{name}' must be a positive int (square images), got {img_size!r}")
    return size


def _unknown_model(name: str) -> ValueError:
    close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
    hint = f" Close matches: {', '.join(close)}." if close else ""
    return ValueError(f"Unknown backbone '{name}': not a timm model nor a mimcl_hub variant.{hint}")


def unknown_architecture_message(name: str) -> str:
    """Why a saved encoder naming ``name`` does not load, and the one line that fixes it.

    For a name that this mimcl_hub registers: timm / transformers need ``import mimcl_hub`` first (timm says
    "Unknown model", transformers an ImportError suggesting a timm upgrade, which does not help). For any other
    name: neither timm nor this mimcl_hub knows it, e.g. a folder saved by a newer mimcl_hub (upgrade it, then
    ``import mimcl_hub``) or a newer timm.
    """
    import importlib.metadata

    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "?"

    fix = ("with timm or transformers directly, run `import mimcl_hub` before loading "
           "(it registers mimcl_hub's architectures with timm: " + ", ".join(SMALL_IMAGE_MODELS) + ")")
    if name in SMALL_IMAGE_MODELS:
        return f"architecture {name!r} is registered by mimcl_hub: {fix}"
    return (f"unknown timm architecture {name!r}: neither timm {timm.__version__} nor mimcl_hub "
            f"{version('mimcl-hub')} registers it. If the encoder was saved by a newer mimcl_hub, upgrade it "
            f"(pip install -U mimcl-hub) and, {fix}; if it needs a newer timm, upgrade timm (pip install -U timm)")


def _cached_hf_file(repo_id: str, filenames: tuple[str, ...], revision: str | None = None) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    for filename in filenames:
        path = try_to_load_from_cache(repo_id, filename, revision=revision)
        if isinstance(path, str) and os.path.isfile(path):
            return path
    return None


def _local_hf_hub_dir(name: str, model_id: str) -> str:
    """Map ``hf-hub:REPO[@REV]`` to the snapshot folder in the local HF cache (never a download)."""
    from .._safety import check_relative_name, check_repo_id

    repo_id, _, revision = model_id.partition("@")
    check_repo_id(repo_id, what=f"repo id of {name!r}")
    if revision:                                   # a branch / tag / commit, never a path out of the cache
        check_relative_name(revision, what=f"revision of {name!r}")
    config = _cached_hf_file(repo_id, ("config.json",), revision or None)
    if config is None:
        raise OfflineWeightsError(f"Cannot create '{name}': its config.json is not in the local Hugging Face cache. "
                                  + _OFFLINE_RULE)
    return "local-dir:" + os.path.dirname(config)


def _local_weights_overlay(name: str, timm_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Return a pretrained_cfg overlay that makes timm load from a local file, or raise OfflineWeightsError."""
    base, tag = split_model_name_tag(name)
    cfg = resolve_pretrained_cfg(
        base,
        pretrained_cfg=timm_kwargs.get("pretrained_cfg") or tag or None,
        pretrained_cfg_overlay=timm_kwargs.get("pretrained_cfg_overlay"),
    )
    if cfg.state_dict is not None or cfg.file:
        return {}
    if cfg.hf_hub_id:
        hub_id, _, revision = cfg.hf_hub_id.partition("@")
        names = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else ("model.safetensors", "pytorch_model.bin")
        path = _cached_hf_file(hub_id, names, revision or None)
        if path is not None and cfg.custom_load != "hf":
            return {"file": path, "custom_load": bool(cfg.custom_load)}
    if cfg.url and isinstance(cfg.url, str):
        path = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(cfg.url.split("?")[0]))
        if os.path.isfile(path):
            return {"file": path, "custom_load": bool(cfg.custom_load)}
    where = cfg.hf_hub_id or cfg.url or "no weight source at all"
    raise OfflineWeightsError(f"No local weights for '{name}' (pretrained_cfg points to {where}). " + _OFFLINE_RULE)


def _weights_error(name: str, kwargs: dict[str, Any], error: Exception) -> OfflineWeightsError:
    file = (kwargs.get("pretrained_cfg_overlay") or {}).get("file")
    where = f" from {file}" if file else ""
    detail = f"{type(error).__name__}: {error}".rstrip(". :")
    return OfflineWeightsError(f"Could not load weights for '{name}'{where} ({detail}). " + _OFFLINE_RULE)


def create_backbone(
    name: str,
    pretrained: bool = False,
    img_size: int | None = None,
    drop_path_rate: float = 0.0,
    sync_batchnorm: bool = False,
    **timm_kwargs: Any,
) -> nn.Module:
    """Create a headless timm backbone: ``model(x)`` returns pooled features (B, ``model.num_features``).

    Args:
        name: any timm model name (``resnet18``, ``vit_tiny_patch16_224``, ``test_vit``, with an optional
            ``.tag``), a variant from :data:`SMALL_IMAGE_MODELS`, ``local-dir:/folder`` (a saved timm
            folder) or ``hf-hub:repo/id`` (only when already in the local Hugging Face cache).
        pretrained: load weights. Never downloads: the weights must be on disk (see ``OfflineWeightsError``).
        img_size: square input size. Passed as ``img_size`` to models that take it (ViTs; must be a multiple
            of the patch size); for size-agnostic models (ResNets) it only sets ``pretrained_cfg['input_size']``
            so :func:`backbone_data_config` reports it.
        drop_path_rate: stochastic depth rate.
        sync_batchnorm: convert every BatchNorm (incl. timm's ``BatchNormAct2d``) to its synchronized
            version with ``timm.layers.convert_sync_batchnorm`` (a superset of
            ``torch.nn.SyncBatchNorm.convert_sync_batchnorm``). The training loop turns this on when it
            runs under DDP with more than one process; leave it off otherwise.
        **timm_kwargs: passed to ``timm.create_model`` (``global_pool``, ``in_chans``, ``patch_size``,
            ``pretrained_cfg_overlay``, ...). ``num_classes`` other than 0 and ``features_only`` are refused:
            heads live in :mod:`mimcl_hub.models.heads`.

    Raises:
        ValueError: unknown name (with close matches), bad ``img_size``, or arguments that would not give a
            pooled (B, D) output. ``OfflineWeightsError`` (a ValueError) when weights are not available locally.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"Backbone name must be a non-empty string, got {name!r}")
    size = _check_img_size(name, img_size)
    if timm_kwargs.get("num_classes", 0) not in (0, None):
        raise ValueError(f"create_backbone('{name}') builds headless backbones (num_classes=0); "
                         f"got num_classes={timm_kwargs['num_classes']}. Put a head on top instead.")
    if timm_kwargs.get("features_only") or timm_kwargs.get("global_pool", "x") == "":
        raise ValueError(f"create_backbone('{name}') returns pooled (B, D) features; features_only=True and "
                         "global_pool='' are not supported (use timm.create_model directly for feature maps).")
    timm_kwargs = {k: v for k, v in timm_kwargs.items() if k != "num_classes"}

    from timm.models import parse_model_name

    try:
        source, model_id = parse_model_name(name)
    except ValueError as e:
        raise ValueError(f"Bad backbone name '{name}': {e}") from e
    if source == "hf-hub":
        name, source = _local_hf_hub_dir(name, model_id), "local-dir"
    elif source is None:
        base, _ = split_model_name_tag(model_id)
        if not is_model(base):
            raise _unknown_model(model_id)
        if pretrained:
            overlay = _local_weights_overlay(model_id, timm_kwargs)
            if overlay:
                timm_kwargs["pretrained_cfg_overlay"] = {**(timm_kwargs.get("pretrained_cfg_overlay") or {}), **overlay}
    elif source == "local-dir" and not os.path.isfile(os.path.join(model_id, "config.json")):
        raise ValueError(f"Backbone folder '{model_id}' has no config.json (expected a saved timm model folder).")

    kwargs = dict(timm_kwargs, num_classes=0, drop_path_rate=drop_path_rate)
    try:
        try:
            model = timm.create_model(name, pretrained=pretrained, **(dict(kwargs, img_size=size) if size else kwargs))
        except TypeError as e:
            if not size or "img_size" not in str(e):
                raise
            # size-agnostic model (e.g. ResNet): record the size in its pretrained_cfg instead
            overlay = dict(kwargs.get("pretrained_cfg_overlay") or {})
            overlay.update(input_size=(kwargs.get("in_chans", 3), size, size), pool_size=None)
            model = timm.create_model(name, pretrained=pretrained, **dict(kwargs, pretrained_cfg_overlay=overlay))
    except RuntimeError as e:
        if "Unknown model" in str(e):
            arch = str(e).split("(")[-1].rstrip(")")
            raise ValueError(f"Backbone '{name}' names an unknown architecture '{arch}'.") from e
        if pretrained:
            raise _weights_error(name, kwargs, e) from e
        raise
    except (OSError, KeyError) as e:
        if pretrained:
            raise _weights_error(name, kwargs, e) from e
        raise

    patch_embed = getattr(model, "patch_embed", None)
    patch = getattr(patch_embed, "patch_size", None)
    if size and patch is not None:
        ph, pw = (patch, patch) if isinstance(patch, int) else tuple(patch)
        if size % ph or size % pw:
            raise ValueError(f"img_size={size} for model '{name}' is not a multiple of its patch size {ph}x{pw}")
    if getattr(model, "num_features", None) is None:
        raise ValueError(f"timm model '{name}' has no num_features attribute; it cannot be used as a backbone")
    if sync_batchnorm:
        model = convert_sync_batchnorm(model)
    return model


# --------------------------------------------------------------------------------------------------
# config export / data config
# --------------------------------------------------------------------------------------------------


def _jsonable(key: str, value: Any) -> Any:
    if isinstance(value, tuple):
        value = list(value)
    try:
        json.dumps(value)
    except (TypeError, ValueError) as e:
        raise ValueError(f"model_args[{key!r}]={value!r} is not JSON-serializable; it cannot go into config.json") from e
    return value


def timm_config_for(name_or_model: str | nn.Module) -> dict[str, Any]:
    """The ``architecture`` + ``model_args`` pair a timm ``config.json`` needs to rebuild this backbone.

    For the ViT variants the architecture is the *standard* timm name (``vit_tiny_patch4_32`` ->
    ``vit_tiny_patch16_224`` with ``img_size=32, patch_size=4``), so the saved folder loads with
    ``timm.create_model("local-dir:DIR")`` and ``transformers.AutoModel.from_pretrained(DIR)`` in a
    process that never imported mimcl_hub. Names in :data:`REQUIRES_MIMCL_HUB` (the CIFAR ResNets)
    keep their registered name: they load only after ``import mimcl_hub.models``.

    ``model_args`` never contains ``num_classes`` (transformers' TimmWrapper passes ``num_classes=0``
    itself and fails on a duplicate), nor drop rates (training-only). Given a model, the arguments it
    was created with (timm records them) are included, e.g. ``in_chans``, ``global_pool``, ``img_size``.

    Raises:
        ValueError: unknown name, a module that is not a timm model, or non-serializable arguments.
    """
    if isinstance(name_or_model, str):
        base, _ = split_model_name_tag(name_or_model)
        if base in _VIT_VARIANTS:
            architecture, args = _VIT_VARIANTS[base]
            return {"architecture": architecture, "model_args": dict(args)}
        if not is_model(base):
            raise _unknown_model(name_or_model)
        return {"architecture": base, "model_args": {}}

    model = name_or_model
    cfg = getattr(model, "pretrained_cfg", None) or {}
    arch = cfg.get("architecture")
    if not arch:
        raise ValueError(f"{type(model).__name__} is not a timm model (no pretrained_cfg['architecture'])")
    from timm.models import get_model_args  # public since timm 1.0.31 (the declared floor)

    args = get_model_args(model)
    drop = {"num_classes", "pretrained_cfg", "pretrained_cfg_overlay", "cache_dir", "device", "dtype"}
    args = {k: v for k, v in args.items() if k not in drop and "drop" not in k}
    if isinstance(args.get("img_size"), (tuple, list)) and len(set(args["img_size"])) == 1:
        args["img_size"] = int(args["img_size"][0])
    if arch in _VIT_VARIANTS:
        arch, variant_args = _VIT_VARIANTS[arch]
        args = dict(variant_args, **args)
    return {"architecture": arch, "model_args": {k: _jsonable(k, v) for k, v in sorted(args.items())}}


def backbone_data_config(model: nn.Module) -> dict[str, Any]:
    """Preprocessing for ``model`` from timm's resolver: ``input_size``, ``mean``, ``std``, ``interpolation``
    (plus ``crop_pct`` and ``crop_mode``, so the dict can go straight into ``timm.data.create_transform``).

    Uses the model's current input size (e.g. a ``vit_tiny_patch16_224`` built with ``img_size=32`` reports
    (3, 32, 32)), not the size of the checkpoint it came from.
    """
    if not hasattr(model, "pretrained_cfg"):
        raise ValueError(f"{type(model).__name__} is not a timm model (no pretrained_cfg); cannot resolve its data config")
    from timm.data import resolve_input_data_config      # public since timm 1.0.31 (the declared floor)
    from timm.models import get_model_input_config

    # the model's current nominal size (e.g. img_size given at creation), not its checkpoint's
    cfg = resolve_input_data_config(model, args={"input_size": tuple(get_model_input_config(model)["input_size"])})
    return {
        "input_size": tuple(cfg["input_size"]),
        "mean": tuple(float(v) for v in cfg["mean"]),
        "std": tuple(float(v) for v in cfg["std"]),
        "interpolation": cfg["interpolation"],
        "crop_pct": float(cfg["crop_pct"]),
        "crop_mode": cfg.get("crop_mode", "center"),
    }
