"""Save a trained backbone as a Hub-ready encoder folder.

``save_encoder(backbone, folder, card)`` writes, atomically (a temporary sibling folder renamed into place, so a
crash never leaves a half-written ``folder``):

* ``config.json`` — timm's format (the layout of timm's ``save_config_for_hf``, written here from public
  attributes),
  with ``architecture`` / ``model_args`` from :func:`mimcl_hub.models.timm_config_for`: a standard timm
  architecture + arguments for the ViT variants (loads without mimcl_hub), never ``num_classes``
  inside ``model_args`` (transformers' ``TimmWrapper`` passes ``num_classes=0`` itself); top level
  ``num_classes: 0`` and ``num_features``;
* ``model.safetensors`` — the backbone's state dict only;
* ``heads/`` (optional) — ``model.safetensors`` + ``config.json`` of the training heads;
* ``README.md`` — the :class:`~mimcl_hub.hub.card.RunCard` rendered with
  ``huggingface_hub.ModelCard.from_template`` from the package template ``mimcl_hub/hub/templates/model_card.md``
  (read with ``importlib.resources``, so an installed wheel renders the same card): YAML metadata (``library_name``
  — ``timm``, or ``mimcl_hub`` for the CIFAR ResNets that need ``import mimcl_hub``, see :mod:`.card` —, tags,
  ``pipeline_tag: image-feature-extraction``, license, training datasets, the ``mimcl_hub:`` block) and
  ``model-index`` results; a "How to use" section whose Python blocks (``mimcl_hub``, timm, 🤗 Transformers) run as
  written with the card's ``hub_model_id`` and give the same features;
* ``training_metrics.json`` and, when given, the twin picture (``twins.png``).

The folder loads with ``timm.create_model("local-dir:DIR", pretrained=True)`` and
``transformers.AutoModel.from_pretrained(DIR)``; ``RunCard.from_model_card(DIR)`` gives the card back.
"""

from __future__ import annotations

import json
import os
import shutil
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import torch
from torch import nn

from .._atomic import atomic_folder
from .._markdown import md_cell
from .card import RunCard, objective_title

__all__ = ["CARD_TEMPLATE", "as_run_card", "atomic_folder", "build_card", "card_template", "encoder_config",
           "save_encoder"]

#: The model card template (Jinja2, rendered by ``ModelCard.from_template``): package data of ``mimcl_hub.hub``.
CARD_TEMPLATE = "templates/model_card.md"


def card_template() -> str:
    """The text of the model card template (``mimcl_hub/hub/templates/model_card.md``, package data)."""
    return resources.files(__package__).joinpath(CARD_TEMPLATE).read_text(encoding="utf-8")


def _plain_state_dict(module: nn.Module, drop_prefixes: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in module.state_dict().items():
        if any(k.startswith(p) for p in drop_prefixes):
            continue
        # own storage (no shared / strided views), standard layout (channels_last weights), on CPU
        out[k] = v.detach().cpu().contiguous().clone()
    return out


#: ``pretrained_cfg`` fields that name where the source weights came from (not these weights): dropped, as timm's
#: ``filter_pretrained_cfg(remove_source=True)`` does; null fields are dropped too, except these timm keeps.
_SOURCE_FIELDS = frozenset({"url", "file", "hf_hub_id", "hf_hub_filename", "source", "state_dict", "tag"})
_KEEP_NULL = frozenset({"pool_size", "first_conv", "classifier"})
#: fields about the source checkpoint's classifier / test-time sizes, which a headless encoder does not have
_SOURCE_ONLY = ("label_names", "label_descriptions", "label_offset")
_TEST_SIZES = ("test_input_size", "test_pool_size", "test_crop_pct")


def _timm_hf_config(backbone: nn.Module) -> dict[str, Any]:
    """timm's ``config.json`` layout for a headless ``backbone``, built here from public attributes (timm's own
    writer, ``timm.models._hub.save_config_for_hf``, is private and changed its output across 1.0.x releases):
    ``global_pool`` and ``pretrained_cfg`` = the model's pretrained_cfg without source fields and nulls, with the
    preprocessing of :func:`mimcl_hub.models.backbone_data_config` (the size it was built at)."""
    from ..models import backbone_data_config

    source = dict(getattr(backbone, "pretrained_cfg", None) or {})
    data = backbone_data_config(backbone)
    pretrained_cfg = {k: v for k, v in source.items()
                      if k not in _SOURCE_FIELDS and k not in _SOURCE_ONLY and (v is not None or k in _KEEP_NULL)}
    pretrained_cfg.update(custom_load=False, input_size=list(data["input_size"]), interpolation=data["interpolation"],
                          crop_pct=data["crop_pct"], crop_mode=data["crop_mode"], mean=list(data["mean"]),
                          std=list(data["std"]), num_classes=0)
    pretrained_cfg.pop("architecture", None)     # top level in timm's layout (set by encoder_config)
    from timm.models import get_model_input_config

    current = get_model_input_config(backbone)  # the model as built (e.g. a ViT made dynamic-size), as timm writes
    pretrained_cfg.update(fixed_input_size=bool(current["fixed_input_size"]), first_conv=current["first_conv"])
    if tuple(source.get("input_size", ())[1:]) != tuple(data["input_size"][1:]):
        pretrained_cfg["pool_size"] = None      # the source's pool size belongs to the source's input size
        for key in _TEST_SIZES:
            pretrained_cfg.pop(key, None)
    for key, value in list(pretrained_cfg.items()):
        if isinstance(value, tuple):
            pretrained_cfg[key] = list(value)
    config: dict[str, Any] = {"pretrained_cfg": pretrained_cfg}
    pool = getattr(backbone, "global_pool", None)
    pool = getattr(pool, "pool_type", pool)     # CNNs hold a SelectAdaptivePool2d, ViTs a string
    if isinstance(pool, str) and pool:
        config["global_pool"] = pool
    return config


def encoder_config(backbone: nn.Module) -> dict[str, Any]:
    """The ``config.json`` dict for ``backbone`` (see module docstring)."""
    from ..models import backbone_data_config, timm_config_for

    arch = timm_config_for(backbone)
    config = _timm_hf_config(backbone)
    model_args = {k: v for k, v in arch["model_args"].items() if k != "num_classes"}
    config["architecture"] = arch["architecture"]
    config["num_classes"] = 0
    config["num_features"] = int(backbone.num_features)
    if model_args:
        config["model_args"] = model_args
    else:
        config.pop("model_args", None)
    pretrained_cfg = config.setdefault("pretrained_cfg", {})
    pretrained_cfg["num_classes"] = 0
    # the size the encoder was built (and trained) at, as the training data used it: timm keeps the source
    # checkpoint's size for models with a dynamic input size (test_vit built at 16 px would say 160)
    pretrained_cfg["input_size"] = list(backbone_data_config(backbone)["input_size"])
    pretrained_cfg.pop("tag", None)     # the source tag names pretrained weights these are not
    # the order timm writes: architecture, num_classes, num_features, global_pool, model_args, pretrained_cfg
    order = ["architecture", "num_classes", "num_features", "global_pool", "model_args", "pretrained_cfg"]
    return {**{k: config[k] for k in order if k in config}, **{k: v for k, v in config.items() if k not in order}}


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def as_run_card(card: Union[RunCard, Mapping[str, Any], None]) -> RunCard:
    """``card`` itself, ``RunCard.from_dict(card)`` for a mapping of its fields, ``RunCard()`` for None."""
    if card is None:
        return RunCard()
    if isinstance(card, RunCard):
        return card
    if isinstance(card, Mapping):
        return RunCard.from_dict(card)
    raise TypeError(f"expected a RunCard (or a mapping of its fields), got {type(card).__name__}")


def build_card(config: Mapping[str, Any], card: RunCard, has_heads: bool, twin_figure: Optional[str]):
    """Render ``card`` (completed with ``config``, see :meth:`RunCard.completed`) into a
    ``huggingface_hub.ModelCard``; ``twin_figure`` is the picture's file name inside the folder."""
    from huggingface_hub import ModelCard

    from ..objectives import RELEASED_WEIGHTS

    run = card.completed(config)
    architecture = config["architecture"]
    hub_id = run.hub_model_id
    model_args = config.get("model_args") or {}
    return ModelCard.from_template(
        run.to_card_data(),
        template_str=card_template(),
        model_id=run.model_id,
        # the How-to-use snippets: the pushed repo id, else a placeholder for the local folder
        repo_or_path=hub_id or "path/to/encoder",
        timm_name=f"hf-hub:{hub_id}" if hub_id else "local-dir:path/to/encoder",
        backbone=run.backbone or architecture,
        architecture=architecture,
        model_args=json.dumps(model_args, sort_keys=True) if model_args else None,
        requires_mimcl_hub=run.requires_mimcl_hub,
        released=RELEASED_WEIGHTS.get(run.released_weights, run.released_weights),
        num_features=config.get("num_features"),
        img_size=run.img_size or "?",
        objective=run.objective,
        objective_title=objective_title(run.objective),
        mi_objective=run.mi_objective,
        mi_weight=run.mi_weight,
        twin_mode=run.twin_mode,
        uses_mi_branch=run.uses_mi_branch,
        has_heads=has_heads,
        results=[{"dataset_name": md_cell(r.dataset_name), "title": md_cell(r.title), "value": r.value,
                  "config": md_cell(r.config) if r.config else None} for r in run.results],
        train_metrics={md_cell(k): md_cell(_fmt(v)) for k, v in run.train_metrics.items()},
        train_data=md_cell(run.train_data),
        mining={md_cell(k): md_cell(_fmt(v)) for k, v in run.mining.items()},
        twin_figure=twin_figure,
        training_config_json=json.dumps(run.training_config, indent=2, sort_keys=True, default=str),
    )


def save_encoder(backbone: nn.Module, folder: str | os.PathLike, card: Union[RunCard, Mapping[str, Any], None] = None,
                 heads: nn.Module | None = None, heads_config: Mapping[str, Any] | None = None,
                 metrics: Mapping[str, Any] | None = None, twin_figure: str | os.PathLike | None = None) -> str:
    """Write the encoder folder (see module docstring) atomically; returns its absolute path.

    Args:
        backbone: a plain (unwrapped) timm backbone created with ``num_classes=0``.
        folder: destination; replaced atomically if it exists.
        card: the :class:`~mimcl_hub.hub.card.RunCard` to render into ``README.md`` (a mapping of its fields is
            accepted too; None: an empty card). ``architecture`` / ``img_size`` come from the backbone.
        heads: optional module whose state dict goes to ``heads/model.safetensors`` (target backbones of
            momentum objectives are left out: they are backbone copies).
        heads_config: JSON-able description written to ``heads/config.json``.
        metrics: written to ``training_metrics.json`` (default: ``card.train_metrics``).
        twin_figure: a PNG copied to ``twins.png`` and shown in the card.

    Raises:
        ValueError: ``backbone`` is not a headless timm model, or a bad card field (named).
    """
    from safetensors.torch import save_file

    card = as_run_card(card)
    if getattr(backbone, "num_classes", 0) not in (0, None):
        raise ValueError(f"save_encoder expects a headless backbone (num_classes=0), got num_classes={backbone.num_classes}")
    if hasattr(backbone, "module") or hasattr(backbone, "_orig_mod"):
        raise ValueError("save_encoder expects the plain backbone; unwrap DDP / torch.compile first "
                         "(accelerator.unwrap_model)")
    config = encoder_config(backbone)
    if twin_figure is not None and not os.path.isfile(twin_figure):
        raise FileNotFoundError(f"twin figure {twin_figure} does not exist")
    # one key: safetensors writes __metadata__ in hash order, so two keys could give other bytes for the same weights
    # (and a push of an unchanged encoder would then commit again)
    metadata = {"format": "pt"}
    with atomic_folder(folder) as tmp:
        save_file(_plain_state_dict(backbone), str(tmp / "model.safetensors"), metadata=metadata)
        with open(tmp / "config.json", "w") as f:
            json.dump(config, f, indent=2)
        has_heads = False
        if heads is not None:
            state = _plain_state_dict(heads, drop_prefixes=_target_prefixes(heads))
            if state:
                (tmp / "heads").mkdir()
                save_file(state, str(tmp / "heads" / "model.safetensors"), metadata=metadata)
                with open(tmp / "heads" / "config.json", "w") as f:
                    json.dump(dict(heads_config or {}), f, indent=2, default=str)
                has_heads = True
        figure_name = None
        if twin_figure is not None:
            shutil.copyfile(twin_figure, tmp / "twins.png")
            figure_name = "twins.png"
        with open(tmp / "training_metrics.json", "w") as f:
            json.dump(dict(metrics or card.train_metrics), f, indent=2, default=str)
        build_card(config, card, has_heads, figure_name).save(str(tmp / "README.md"))
    return str(Path(folder).absolute())


def _target_prefixes(module: nn.Module) -> tuple[str, ...]:
    return tuple(f"{name}." for name, sub in module.named_modules()
                 if name and name.split(".")[-1] == "target_backbone")
