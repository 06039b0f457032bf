"""Save a trained backbone as a Hub-ready encoder folder.

``save_encoder(backbone, folder, card_data)`` writes, atomically (a temporary sibling folder renamed
into place, so a crash never leaves a half-written ``folder``):

* ``config.json`` — timm's format (``timm.models.save_config_for_hf`` builds ``pretrained_cfg``),
  with ``architecture`` / ``model_args`` from :func:`mimcl_hub.models.timm_config_for`: a standard timm
  architecture + arguments for the ViT variants (loads without mimcl_hub), never ``num_classes``
  inside ``model_args`` (transformers' ``TimmWrapper`` passes ``num_classes=0`` itself); top level
  ``num_classes: 0`` and ``num_features``;
* ``model.safetensors`` — the backbone's state dict only;
* ``heads/`` (optional) — ``model.safetensors`` + ``config.json`` of the training heads;
* ``README.md`` — the model card rendered from ``model_cards/model_card_template.md`` with
  ``huggingface_hub.ModelCard.from_template``: YAML metadata (``library_name: timm``, tags,
  ``pipeline_tag: image-feature-extraction``, license, datasets) and ``model-index`` results
  (``ModelCardData(eval_results=[EvalResult(...)])``) from the kNN monitor;
* ``training_metrics.json`` and, when given, the twin picture (``twins.png``).

The folder loads with ``timm.create_model("local-dir:DIR", pretrained=True)`` and
``transformers.AutoModel.from_pretrained(DIR)``; ``ModelCard.load(DIR / "README.md").data.eval_results``
returns the kNN metric.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from .._atomic import atomic_folder

__all__ = ["TEMPLATE_PATH", "atomic_folder", "build_card", "encoder_config", "run_metadata", "save_encoder"]

#: The model card template (Jinja2, rendered by ``ModelCard.from_template``).
TEMPLATE_PATH = Path(__file__).resolve().parents[2] / "model_cards" / "model_card_template.md"

# used only when the package runs from a wheel without the repository's model_cards/ folder
_FALLBACK_TEMPLATE = """---
{{ card_data }}
---

# {{ model_id }}

Self-supervised {{ architecture }} encoder trained with {{ objective_title }} by mimcl_hub
(InfoAug, arXiv 2511.00028). Backbone only: `timm.create_model(..., pretrained=True)` returns pooled
{{ num_features }}-d features.

{% if knn_top1 is not none %}kNN top-1 accuracy on {{ knn_dataset_name }}: {{ "%.4f" | format(knn_top1) }}{% endif %}

```json
{{ training_config_json }}
```

Citation: Chen & Yang, "Mutual Information guided Visual Contrastive Learning", arXiv:2511.00028.
"""

_OBJECTIVE_TITLES = {
    "simclr": "SimCLR (arXiv 2002.05709)", "moco": "MoCo v2 (arXiv 2003.04297)", "byol": "BYOL (arXiv 2006.07733)",
    "simsiam": "SimSiam (arXiv 2011.10566)", "barlow_twins": "Barlow Twins (arXiv 2103.03230)",
    "vicreg": "VICReg (arXiv 2105.04906)", "dino": "DINO (arXiv 2104.14294)", "nnclr": "NNCLR (arXiv 2104.14548)",
}


def _plain_state_dict(module: nn.Module, drop_prefixes: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in module.state_dict().items():
        if any(k.startswith(p) for p in drop_prefixes):
            continue
        # own storage (no shared / strided views), standard layout (channels_last weights), on CPU
        out[k] = v.detach().cpu().contiguous().clone()
    return out


def encoder_config(backbone: nn.Module) -> dict[str, Any]:
    """The ``config.json`` dict for ``backbone`` (see module docstring)."""
    from timm.models._hub import save_config_for_hf

    from ..models import timm_config_for

    arch = timm_config_for(backbone)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "config.json")
        save_config_for_hf(backbone, path)
        with open(path) as f:
            config = json.load(f)
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
    pretrained_cfg.pop("tag", None)     # the source tag names pretrained weights these are not
    # the order timm writes: architecture, num_classes, num_features, global_pool, model_args, pretrained_cfg
    order = ["architecture", "num_classes", "num_features", "global_pool", "model_args", "pretrained_cfg"]
    return {**{k: config[k] for k in order if k in config}, **{k: v for k, v in config.items() if k not in order}}


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def run_metadata(config: Mapping[str, Any], card_data: Mapping[str, Any]) -> dict[str, Any]:
    """The card's ``mimcl_hub:`` YAML block — what a leaderboard row needs, without parsing the card body.

    ``{"backbone", "objective", "mi_objective", "twin_mode", "mi_weight", "epochs", "steps", "img_size",
    "batch_size", "seed"}``; fields the run did not record are left out.
    """
    training = dict(card_data.get("training_config") or {})
    metrics = dict(card_data.get("train_metrics") or {})
    input_size = (config.get("pretrained_cfg") or {}).get("input_size") or [None]
    twin_mode = str(card_data.get("twin_mode", "none"))
    meta: dict[str, Any] = {
        "backbone": training.get("model_name") or config.get("architecture"),
        "architecture": config.get("architecture"),
        "objective": str(card_data.get("objective", "simclr")),
        "mi_objective": card_data.get("mi_objective") or card_data.get("objective", "simclr"),
        "twin_mode": twin_mode,
        "mi_weight": float(card_data.get("mi_weight", 0.0)) if twin_mode != "none" else 0.0,
        "epochs": metrics.get("epoch"),
        "steps": metrics.get("global_step", training.get("max_steps_resolved")),
        "img_size": input_size[-1],
        "batch_size": training.get("per_device_train_batch_size"),
        "seed": training.get("seed"),
    }
    out = {}
    for key, value in meta.items():
        if value is None:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            continue
        out[key] = value
    return out


def build_card(config: Mapping[str, Any], card_data: Mapping[str, Any], has_heads: bool, twin_figure: str | None):
    """Render the model card (a ``huggingface_hub.ModelCard``) from ``card_data`` (see :func:`save_encoder`)."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    from ..models import REQUIRES_MIMCL_HUB

    objective = str(card_data.get("objective", "simclr"))
    mi_objective = card_data.get("mi_objective") or objective
    twin_mode = str(card_data.get("twin_mode", "none"))
    mi_weight = float(card_data.get("mi_weight", 0.0))
    uses_mi = twin_mode != "none" and mi_weight > 0
    model_id = str(card_data.get("model_id") or card_data.get("hub_model_id") or "mimcl_hub encoder")
    knn = dict(card_data.get("knn") or {})
    top1 = knn.get("top1")
    if top1 is not None and not (isinstance(top1, (int, float)) and math.isfinite(top1)):
        top1 = None
    knn_dataset = str(knn.get("dataset", "digits"))
    knn_dataset_name = str(knn.get("dataset_name") or knn_dataset)

    eval_results = None
    if top1 is not None:
        eval_results = [EvalResult(
            task_type="image-classification", task_name="kNN classification (frozen features)",
            dataset_type=knn_dataset, dataset_name=knn_dataset_name, dataset_split=knn.get("split", "test"),
            metric_type="accuracy", metric_name="kNN top-1 accuracy", metric_value=round(float(top1), 4),
            metric_config=f"k={knn.get('k', 20)},T={knn.get('T', 0.07)}",
        )]
        if knn.get("top5") is not None:
            eval_results.append(EvalResult(
                task_type="image-classification", task_name="kNN classification (frozen features)",
                dataset_type=knn_dataset, dataset_name=knn_dataset_name, dataset_split=knn.get("split", "test"),
                metric_type="top_5_accuracy", metric_name="kNN top-5 accuracy",
                metric_value=round(float(knn["top5"]), 4), metric_config=f"k={knn.get('k', 20)},T={knn.get('T', 0.07)}",
            ))
    tags = ["mimcl_hub", "self-supervised", "infoaug", objective]
    if uses_mi and mi_objective != objective:
        tags.append(mi_objective)
    tags += [t for t in card_data.get("tags", []) if t not in tags]
    datasets = card_data.get("datasets")
    if isinstance(datasets, str):
        datasets = [datasets]
    data = ModelCardData(
        library_name="timm",
        license=card_data.get("license", "apache-2.0"),
        tags=tags,
        pipeline_tag="image-feature-extraction",
        datasets=[d for d in (datasets or []) if d] or None,
        metrics=["accuracy"] if eval_results else None,
        eval_results=eval_results,
        model_name=model_id,
        mimcl_hub=run_metadata(config, card_data),
    )
    architecture = config["architecture"]
    template = TEMPLATE_PATH.read_text(encoding="utf-8") if TEMPLATE_PATH.is_file() else _FALLBACK_TEMPLATE
    training_config = card_data.get("training_config") or {}
    input_size = (config.get("pretrained_cfg") or {}).get("input_size") or [3, "?", "?"]
    return ModelCard.from_template(
        data,
        template_str=template,
        model_id=model_id,
        repo_or_path=card_data.get("hub_model_id") or "path/to/encoder",
        timm_name=(f"hf-hub:{card_data['hub_model_id']}" if card_data.get("hub_model_id")
                   else "local-dir:path/to/encoder"),
        architecture=architecture,
        requires_mimcl_hub=architecture in REQUIRES_MIMCL_HUB,
        num_features=config.get("num_features"),
        img_size=input_size[-1],
        objective=objective,
        objective_title=_OBJECTIVE_TITLES.get(objective, objective),
        mi_objective=mi_objective,
        mi_weight=mi_weight,
        twin_mode=twin_mode,
        uses_mi_branch=uses_mi,
        has_heads=has_heads,
        knn_top1=top1,
        knn_top5=knn.get("top5") if top1 is not None else None,
        knn_k=knn.get("k", 20),
        knn_T=knn.get("T", 0.07),
        knn_dataset_name=knn_dataset_name,
        train_metrics={k: _fmt(v) for k, v in (card_data.get("train_metrics") or {}).items()},
        train_data=card_data.get("train_data", "offline default clips"),
        mining={k: _fmt(v) for k, v in (card_data.get("mining") or {}).items()},
        twin_figure=twin_figure,
        training_config_json=json.dumps(training_config, indent=2, sort_keys=True, default=str),
    )


def save_encoder(backbone: nn.Module, folder: str | os.PathLike, card_data: Mapping[str, Any] | None = None,
                 heads: nn.Module | None = None, heads_config: Mapping[str, Any] | None = None,
                 metrics: Mapping[str, Any] | None = None, twin_figure: str | os.PathLike | None = None) -> str:
    """Write the encoder folder (see module docstring) atomically; returns its absolute path.

    Args:
        backbone: a plain (unwrapped) timm backbone created with ``num_classes=0``.
        folder: destination; replaced atomically if it exists.
        card_data: model-card fields — ``model_id`` / ``hub_model_id``, ``objective``, ``mi_objective``,
            ``mi_weight``, ``twin_mode``, ``license``, ``datasets`` (Hub ids), ``tags``, ``knn`` (``top1``,
            ``top5``, ``dataset``, ``dataset_name``, ``split``, ``k``, ``T``), ``train_metrics``,
            ``train_data`` (text), ``mining`` (settings), ``training_config`` (dict).
        heads: optional module whose state dict goes to ``heads/model.safetensors`` (target backbones of
            momentum objectives are left out: they are backbone copies).
        heads_config: JSON-able description written to ``heads/config.json``.
        metrics: written to ``training_metrics.json``.
        twin_figure: a PNG copied to ``twins.png`` and shown in the card.

    Raises:
        ValueError: ``backbone`` is not a headless timm model.
    """
    from safetensors.torch import save_file

    card_data = dict(card_data or {})
    if getattr(backbone, "num_classes", 0) not in (0, None):
        raise ValueError(f"save_encoder expects a headless backbone (num_classes=0), got num_classes={backbone.num_classes}")
    if hasattr(backbone, "module") or hasattr(backbone, "_orig_mod"):
        raise ValueError("save_encoder expects the plain backbone; unwrap DDP / torch.compile first "
                         "(accelerator.unwrap_model)")
    config = encoder_config(backbone)
    if twin_figure is not None and not os.path.isfile(twin_figure):
        raise FileNotFoundError(f"twin figure {twin_figure} does not exist")
    metadata = {"format": "pt", "producer": "mimcl_hub"}
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
            json.dump(dict(metrics or card_data.get("train_metrics") or {}), f, indent=2, default=str)
        card = build_card(config, card_data, has_heads, figure_name)
        card.save(str(tmp / "README.md"))
    return str(Path(folder).absolute())


def _target_prefixes(module: nn.Module) -> tuple[str, ...]:
    return tuple(f"{name}." for name, sub in module.named_modules()
                 if name and name.split(".")[-1] == "target_backbone")
