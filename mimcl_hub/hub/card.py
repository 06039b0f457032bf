"""The typed run card: everything one training run says about its encoder, in one dataclass.

One type travels through the upper floors:

* training builds a :class:`RunCard` (``train/loop.py``);
* :func:`mimcl_hub.hub.save.save_encoder` renders it into the folder's ``README.md`` (YAML metadata + the
  body from the package template ``mimcl_hub/hub/templates/model_card.md``);
* ``mimcl eval`` parses the card back (:meth:`RunCard.from_model_card`), merges new :class:`EvalEntry` results
  into it and writes the card's managed parts from it;
* the leaderboard parses every card into a :class:`RunCard` and reads its row from it.

The YAML of a rendered card holds the Hub fields (``library_name``, ``license``, ``tags``, ``datasets``,
``model-index`` with ``model_name`` and the results) and the ``mimcl_hub:`` block (:data:`META_FIELDS`: backbone,
architecture, objective, mi_objective, twin_mode, mi_weight, released_weights, epochs, steps, img_size, batch_size,
seed). The other fields
(:data:`BODY_FIELDS`: hub_model_id, train_data, mining, training_config, train_metrics) are shown in the card's
body only, so ``RunCard.from_model_card(rendered)`` gives back the rendered card with those fields at their
defaults: ``from_model_card(card) == rendered.yaml_view()``.

Objective titles and papers come from the objective registry (``mimcl_hub.objectives.OBJECTIVES``, each class's
``paper`` attribute); the metric names of the model-index from :data:`METRICS`.

What the Hub reads from the YAML, and how it stays honest:

* ``datasets:`` — the *training* data, as Hub ids (the Hub lists the model under those datasets as trained on
  them); an evaluation set is named only by its results.
* ``model-index`` results name their dataset by ``dataset.type``: the Hub id where there is one
  (``uoft-cs/cifar10``), otherwise a local name ``SOURCE:NAME`` (:func:`model_index_dataset`: ``sklearn:digits`` for
  the bundled scikit-learn digits, ``local:FOLDER`` for a local folder). A Hub id never contains ``:``
  (``huggingface_hub.utils.validate_repo_id`` refuses it), so a local name can never be read as, or link to, a Hub
  dataset. Cards written before this naming say ``digits``; :func:`dataset_column` puts both spellings into one
  leaderboard column (``digits/knn_top1``) and one merge key.
* ``library_name`` — ``timm`` when plain timm loads the encoder (the ViT variants: a standard timm architecture +
  ``model_args``), so the Hub's "Use this model" timm snippet works as shown. The CIFAR-stem ResNets
  (``mimcl_hub.models.REQUIRES_MIMCL_HUB``) are timm models that only load after ``import mimcl_hub``: their cards
  say ``library_name: mimcl_hub`` (a library the Hub has no snippet for, so it shows none rather than a timm
  snippet that fails with "Unknown model") and keep ``timm`` as a tag; the card's text says first that
  ``import mimcl_hub`` is needed.
* tags name the objective(s), the twin mode (``twin-mode-mi``), the trained variant (``vit_tiny_patch4_32``) and
  ``timm``; ``mimcl_hub.released_weights`` names the network whose weights the card's folder holds
  (``mimcl_hub.objectives.RELEASED_WEIGHTS``: DINO's teacher, BYOL's online network, MoCo's query encoder, the one
  backbone of the others).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from .._safety import check_number
from .._markdown import md_cell

__all__ = ["BODY_FIELDS", "LOCAL_DATASETS", "META_FIELDS", "METRICS", "EvalEntry", "RunCard", "dataset_column",
           "load_model_card", "metric_key", "model_index_dataset", "objective_title"]

#: The model-index names of the metrics ``mimcl_hub`` writes: short name -> (task name, metric type, metric name).
METRICS = {
    "knn_top1": ("kNN classification (frozen features)", "accuracy", "kNN top-1 accuracy"),
    "knn_top5": ("kNN classification (frozen features)", "top_5_accuracy", "kNN top-5 accuracy"),
    "linear_top1": ("Linear probe (frozen features)", "accuracy", "Linear probe top-1 accuracy"),
}

#: Fields of the card's ``mimcl_hub:`` YAML block, in the order they are written.
META_FIELDS = ("backbone", "architecture", "objective", "mi_objective", "twin_mode", "mi_weight", "released_weights",
               "epochs", "steps", "img_size", "batch_size", "seed")

#: Fields shown in the card's body only (not in its YAML): they come back as defaults from a parsed card.
BODY_FIELDS = ("hub_model_id", "train_data", "mining", "training_config", "train_metrics")

_AUTO_TAGS = ("mimcl_hub", "self-supervised", "infoaug")
_DEFAULT_TITLE = "mimcl_hub encoder"

#: Evaluation datasets that are not on the Hub, by the name ``--eval_dataset`` / ``mimcl eval --dataset`` take:
#: (model-index ``dataset.type``, display name). ``SOURCE:NAME``: a Hub id never contains ``:``.
LOCAL_DATASETS = {"digits": ("sklearn:digits", "scikit-learn digits")}
#: ``dataset.type`` prefix of an evaluation set read from a local folder (``local:FOLDER_NAME``).
LOCAL_PREFIX = "local:"
_COLUMN_NAMES = {dataset_type: name for name, (dataset_type, _) in LOCAL_DATASETS.items()}


def model_index_dataset(name: str) -> str:
    """The model-index ``dataset.type`` of an evaluation dataset as the user named it: a Hub id as is
    (``uoft-cs/cifar10``); a built-in dataset as ``SOURCE:NAME`` (:data:`LOCAL_DATASETS`: ``digits`` ->
    ``sklearn:digits``); a local folder as ``local:FOLDER_NAME`` (its last path part: no local path goes on a card);
    any other name (not a folder here: a model-index name such as ``sklearn:digits``, or one from elsewhere) as is."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"evaluation dataset name must be a non-empty string, got {name!r}")
    if name in LOCAL_DATASETS:
        return LOCAL_DATASETS[name][0]
    path = os.path.expanduser(name)
    if not os.path.exists(path):
        return name
    return LOCAL_PREFIX + (os.path.basename(os.path.normpath(os.path.abspath(path))) or "dataset")


def dataset_column(dataset_type: str) -> str:
    """The leaderboard's (and the merge key's) name of a model-index ``dataset.type``: the name users pass for a
    built-in dataset (``sklearn:digits`` -> ``digits``, so cards written before the ``SOURCE:NAME`` naming, which
    say ``digits``, share its column), every other one as is."""
    return _COLUMN_NAMES.get(dataset_type, dataset_type)


def metric_key(result) -> str:
    """Short metric name of a ``huggingface_hub.EvalResult``: ``knn_top1``, ``knn_top5``, ``linear_top1`` for
    the results ``mimcl_hub`` writes, otherwise the metric type (e.g. ``accuracy``, ``f1``)."""
    # the metric's own name first: the Hub's model-index groups results by dataset, so a card's linear-probe
    # metric may come back under the kNN task's name
    kind = (result.metric_name or result.task_name or "").lower()
    mtype = (result.metric_type or "").lower()
    family = "knn" if "knn" in kind else "linear" if "linear" in kind else None
    if family and mtype in ("accuracy", "top_1_accuracy", "top1_accuracy"):
        return f"{family}_top1"
    if family and mtype in ("top_5_accuracy", "top5_accuracy"):
        return f"{family}_top5"
    return re.sub(r"[^a-z0-9_]+", "_", mtype or (result.metric_name or "metric").lower()).strip("_") or "metric"


def objective_title(name: Optional[str]) -> str:
    """``"SimCLR (Chen et al. 2020, arXiv 2002.05709)"`` for a registered objective (its class's ``paper``),
    the name itself otherwise."""
    from ..objectives import OBJECTIVES

    cls = OBJECTIVES.get(name) if name else None
    return getattr(cls, "paper", None) or str(name)


def _check_text(name: str, value: Any, allow_none: bool = True) -> Optional[str]:
    if value is None and allow_none:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string{' (or unset)' if allow_none else ''}, got {value!r}")
    return value


def _check_float(name: str, value: Any, low: Optional[float] = None) -> Optional[float]:
    return None if value is None else float(check_number(name, value, low, None, allow_none=True))


def _check_int(name: str, value: Any, low: int) -> Optional[int]:
    return None if value is None else int(check_number(name, value, low, None, integer=True, allow_none=True))


def _check_texts(name: str, value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{name} must be a list of strings, got {value!r}")
    return list(dict.fromkeys(v for v in value if v))


def _check_mapping(name: str, value: Any) -> dict:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must be a mapping, got {type(value).__name__}")
    return dict(value)


# --------------------------------------------------------------------------------------------- results
@dataclass
class EvalEntry:
    """One result of the card's ``model-index``.

    Args:
        dataset: the result's model-index ``dataset.type``, as written: a Hub id (``uoft-cs/cifar10``) or a local
            name (``sklearn:digits``, ``local:FOLDER``; :func:`model_index_dataset` names them). A card from before
            that naming may say ``digits``: :attr:`column` and :attr:`key` treat it as ``sklearn:digits``.
        metric: ``knn_top1``, ``knn_top5``, ``linear_top1`` (:data:`METRICS`) or another metric type (``f1``).
        value: a finite number (as written, e.g. rounded to 4 decimals by the producer).
        dataset_name: the dataset's display name (default: ``dataset``).
        split: the evaluated split.
        config: the metric's settings, e.g. ``"k=20,T=0.07"``.
    """

    dataset: str
    metric: str
    value: float
    dataset_name: Optional[str] = None
    split: Optional[str] = "test"
    config: Optional[str] = None

    def __post_init__(self) -> None:
        for name in ("dataset", "metric"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"EvalEntry.{name} must be a non-empty string, got {getattr(self, name)!r}")
        self.value = float(check_number(f"metric {self.column!r}", self.value))
        self.dataset_name = _check_text("EvalEntry.dataset_name", self.dataset_name) or self.dataset
        self.split = _check_text("EvalEntry.split", self.split)
        self.config = _check_text("EvalEntry.config", self.config)

    @property
    def column(self) -> str:
        """The leaderboard column, ``DATASET/METRIC`` (DATASET: :func:`dataset_column`, e.g. ``digits/knn_top1``)."""
        return f"{dataset_column(self.dataset)}/{self.metric}"

    @property
    def key(self) -> tuple:
        """What a newer result replaces: (dataset, split, metric); the dataset as :func:`dataset_column` names it,
        so a ``sklearn:digits`` result replaces a ``digits`` one of an older card."""
        return (dataset_column(self.dataset), self.split, self.metric)

    @property
    def title(self) -> str:
        """``"kNN top-1 accuracy"`` for the metrics of :data:`METRICS`, the metric itself otherwise."""
        return METRICS[self.metric][2] if self.metric in METRICS else self.metric

    def to_eval_result(self):
        """The ``huggingface_hub.EvalResult`` of the model-index."""
        from huggingface_hub import EvalResult

        task_name, metric_type, metric_name = METRICS.get(self.metric, (None, self.metric, self.metric))
        return EvalResult(task_type="image-classification", task_name=task_name, dataset_type=self.dataset,
                          dataset_name=self.dataset_name, dataset_split=self.split, metric_type=metric_type,
                          metric_name=metric_name, metric_value=self.value, metric_config=self.config)

    @classmethod
    def from_eval_result(cls, result) -> "EvalEntry":
        """Read a ``huggingface_hub.EvalResult``. Raises ``ValueError`` naming the metric when its value is not a
        finite number."""
        dataset = str(result.dataset_type or result.dataset_name or "unknown")
        metric = metric_key(result)
        value = result.metric_value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"model-index metric '{dataset_column(dataset)}/{metric}' has value {value!r}, not a "
                             "finite number")
        config = result.metric_config
        return cls(dataset=dataset, metric=metric, value=value,
                   dataset_name=None if result.dataset_name is None else str(result.dataset_name),
                   split=None if result.dataset_split is None else str(result.dataset_split),
                   config=None if config is None else str(config))


# --------------------------------------------------------------------------------------------- the card
@dataclass
class RunCard:
    """What one run says about its encoder; rendered into / parsed from the model card (module docstring).

    Args:
        model_id: the card's title and model-index name (default: ``hub_model_id``, else "mimcl_hub encoder").
        hub_model_id: the Hub repo the encoder is pushed to (used in the card's loading snippets).
        backbone: the timm name trained (``vit_tiny_patch4_32``); default: ``training_config["model_name"]``,
            else ``architecture``.
        architecture: the timm architecture of ``config.json`` (filled in by ``save_encoder``).
        objective, mi_objective: view-branch and MI-branch objectives (``mi_objective`` defaults to ``objective``).
        twin_mode: ``mi``, ``random`` or ``none``; ``mi_weight``: λ of the MI branch (0 when ``twin_mode`` is
            ``none``). A card from elsewhere may leave these unset (None).
        released_weights: which network's backbone the folder holds, a key of
            ``mimcl_hub.objectives.RELEASED_WEIGHTS`` (``teacher``, ``online``, ``query``, ``shared``); training
            fills it in from the objective (``Objective.released``); None when not known.
        epochs, steps, img_size, batch_size, seed: the run's size and settings.
        license, datasets (Hub ids), tags (beyond the automatic ``mimcl_hub``, ``self-supervised``, ``infoaug``
            and objective tags, which :attr:`all_tags` adds).
        train_data: what the encoder was trained on (text).
        mining: the twin-mining settings and counts (the ``TwinOptions`` used, clips, pairs ...).
        training_config, train_metrics: the run's configuration and final metrics (shown in the card's body).
        results: the model-index (:class:`EvalEntry`), one entry per (dataset, split, metric).

    Raises:
        ValueError: a field of the wrong type, a non-finite or negative number (the message names the field).
    """

    model_id: Optional[str] = None
    hub_model_id: Optional[str] = None
    backbone: Optional[str] = None
    architecture: Optional[str] = None
    objective: Optional[str] = "simclr"
    mi_objective: Optional[str] = None
    twin_mode: Optional[str] = "none"
    mi_weight: Optional[float] = 0.0
    released_weights: Optional[str] = None
    epochs: Optional[float] = None
    steps: Optional[int] = None
    img_size: Optional[int] = None
    batch_size: Optional[int] = None
    seed: Optional[int] = None
    license: Optional[str] = "apache-2.0"
    datasets: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    train_data: str = "offline default clips"
    mining: dict[str, Any] = field(default_factory=dict)
    training_config: dict[str, Any] = field(default_factory=dict)
    train_metrics: dict[str, Any] = field(default_factory=dict)
    results: list[EvalEntry] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in ("model_id", "hub_model_id", "backbone", "architecture", "objective", "mi_objective", "twin_mode",
                     "released_weights", "license"):
            setattr(self, name, _check_text(name, getattr(self, name)))
        self.train_data = _check_text("train_data", self.train_data, allow_none=False)
        self.mi_weight = _check_float("mi_weight", self.mi_weight, 0)
        self.epochs = _check_float("epochs", self.epochs, 0)
        self.steps = _check_int("steps", self.steps, 0)
        self.img_size = _check_int("img_size", self.img_size, 1)
        self.batch_size = _check_int("batch_size", self.batch_size, 1)
        self.seed = _check_int("seed", self.seed, 0)
        self.datasets = _check_texts("datasets", self.datasets)
        for name in ("mining", "training_config", "train_metrics"):
            setattr(self, name, _check_mapping(name, getattr(self, name)))
        if not isinstance(self.results, (list, tuple)):
            raise ValueError(f"results must be a list of EvalEntry, got {type(self.results).__name__}")
        self.results = [r if isinstance(r, EvalEntry) else EvalEntry(**_check_mapping("results entry", r))
                        for r in self.results]
        keys = [r.key for r in self.results]
        if len(set(keys)) != len(keys):
            raise ValueError(f"results has more than one entry for {sorted(k for k in keys if keys.count(k) > 1)[0]}"
                             " (dataset, split, metric)")
        # one spelling of each fact: the MI objective defaults to the view objective, no MI branch means λ = 0,
        # and the automatic tags are not repeated among the extra ones
        self.mi_objective = self.mi_objective or self.objective
        if self.twin_mode == "none":
            self.mi_weight = 0.0
        auto = set(self.auto_tags())
        self.tags = [t for t in _check_texts("tags", self.tags) if t not in auto]

    # ------------------------------------------------------------------------------------------ derived
    @property
    def uses_mi_branch(self) -> bool:
        return self.twin_mode not in (None, "none") and (self.mi_weight or 0.0) > 0

    @property
    def requires_mimcl_hub(self) -> bool:
        """True when the encoder's architecture is registered by ``mimcl_hub`` only (the CIFAR-stem ResNets,
        ``mimcl_hub.models.REQUIRES_MIMCL_HUB``): timm / transformers load it after ``import mimcl_hub``."""
        from ..models import REQUIRES_MIMCL_HUB

        return bool({self.architecture, self.backbone} & REQUIRES_MIMCL_HUB)

    @property
    def library_name(self) -> str:
        """The card's ``library_name``: ``timm`` when plain timm loads the encoder, ``mimcl_hub`` when timm needs
        ``import mimcl_hub`` first (module docstring: the Hub then shows no timm snippet that would fail)."""
        return "mimcl_hub" if self.requires_mimcl_hub else "timm"

    def auto_tags(self) -> list[str]:
        """The tags every mimcl_hub card carries: ``mimcl_hub``, ``self-supervised``, ``infoaug``, the objective
        (and the MI-branch objective when it differs and is used), the twin mode (``twin-mode-mi``), the trained
        variant (``vit_tiny_patch4_32``) and ``timm``."""
        tags = [*_AUTO_TAGS, *([self.objective] if self.objective else [])]
        if self.uses_mi_branch and self.mi_objective and self.mi_objective not in tags:
            tags.append(self.mi_objective)
        if self.twin_mode:
            tags.append(f"twin-mode-{self.twin_mode}")
        for tag in (self.backbone, "timm"):
            if tag and tag not in tags:
                tags.append(tag)
        return tags

    @property
    def all_tags(self) -> list[str]:
        return [*self.auto_tags(), *self.tags]

    def metadata(self) -> dict[str, Any]:
        """The card's ``mimcl_hub:`` YAML block: :data:`META_FIELDS` that are set."""
        return {name: getattr(self, name) for name in META_FIELDS if getattr(self, name) is not None}

    def yaml_view(self) -> "RunCard":
        """A copy with :data:`BODY_FIELDS` at their defaults: what a rendered card's YAML gives back."""
        defaults = RunCard()
        return dataclasses.replace(self, **{name: getattr(defaults, name) for name in BODY_FIELDS})

    def completed(self, config: Mapping[str, Any]) -> "RunCard":
        """A copy with what the saved encoder knows filled in (``config``: its ``config.json`` dict):
        ``architecture`` and ``img_size`` from it, ``model_id`` from ``hub_model_id``, and the run facts left
        unset from ``training_config`` / ``train_metrics`` (backbone = ``model_name``, steps = ``global_step``,
        epochs = ``epoch``, batch_size = ``per_device_train_batch_size``, seed). Non-finite values stay unset."""
        training, metrics = self.training_config, self.train_metrics
        input_size = (config.get("pretrained_cfg") or {}).get("input_size") or [None]

        def first(*values):
            for v in values:
                if v is not None and not (isinstance(v, float) and not math.isfinite(v)):
                    return v
            return None

        return dataclasses.replace(
            self,
            model_id=first(self.model_id, self.hub_model_id, _DEFAULT_TITLE),
            architecture=first(config.get("architecture"), self.architecture),
            backbone=first(self.backbone, training.get("model_name"), config.get("architecture"), self.architecture),
            img_size=first(input_size[-1], self.img_size),
            epochs=first(self.epochs, metrics.get("epoch")),
            steps=first(self.steps, metrics.get("global_step"), training.get("max_steps_resolved")),
            batch_size=first(self.batch_size, training.get("per_device_train_batch_size")),
            seed=first(self.seed, training.get("seed")),
        )

    def merge_results(self, entries: list[EvalEntry]) -> "RunCard":
        """A copy whose results are this card's with ``entries`` merged in: an entry replaces the one with the same
        (dataset, split, metric) in place, new ones are appended."""
        merged = list(self.results)
        for entry in entries:
            keys = [r.key for r in merged]
            if entry.key in keys:
                merged[keys.index(entry.key)] = entry
            else:
                merged.append(entry)
        return dataclasses.replace(self, results=merged)

    # ------------------------------------------------------------------------------------------ YAML
    def to_card_data(self):
        """The card's YAML as a ``huggingface_hub.ModelCardData``: :attr:`library_name`, tags, pipeline
        ``image-feature-extraction``, license, datasets, the ``mimcl_hub:`` block and the ``model-index``."""
        from huggingface_hub import ModelCardData

        eval_results = [r.to_eval_result() for r in self.results] or None
        return ModelCardData(
            library_name=self.library_name, license=self.license, tags=self.all_tags, pipeline_tag="image-feature-extraction",
            datasets=self.datasets or None, metrics=["accuracy"] if eval_results else None, eval_results=eval_results,
            model_name=self.model_id or self.hub_model_id or _DEFAULT_TITLE, mimcl_hub=self.metadata(),
        )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "RunCard":
        """``RunCard(**values)``; a key that is not a field is an error naming it."""
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown run card field(s) {unknown}; the fields are "
                             f"{', '.join(f.name for f in dataclasses.fields(cls))}")
        return cls(**values)

    @classmethod
    def from_model_card(cls, card: Union[str, os.PathLike, Any], config: Optional[Mapping[str, Any]] = None
                        ) -> "RunCard":
        """Parse a model card (a ``huggingface_hub.ModelCard``, its ``.data``, a ``README.md`` path or the folder
        holding it) back into a RunCard. ``config``: the encoder's ``config.json`` dict, for a card from elsewhere
        without a ``mimcl_hub:`` block (backbone / architecture from it; the objective from the card's tags).

        Raises:
            ValueError: the card does not parse, its ``mimcl_hub:`` block or a model-index value is invalid (the
                message names the field or metric).
        """
        from huggingface_hub import RepoCard

        if isinstance(card, (str, os.PathLike)):
            card = load_model_card(card)
        data = card.data if isinstance(card, RepoCard) else card       # a card's YAML may have its own `data:` key
        results = [EvalEntry.from_eval_result(r) for r in (data.eval_results or [])]
        block = data.get("mimcl_hub")
        if block is not None and not isinstance(block, dict):
            raise ValueError(f"the model card's mimcl_hub: block must be a mapping, got {type(block).__name__}")
        meta = {k: v for k, v in (block or {}).items() if k in META_FIELDS and v is not None}
        tags = [str(t) for t in (data.tags or [])]
        if "objective" not in meta:
            from ..objectives import OBJECTIVES

            meta["objective"] = next((t for t in tags if t in OBJECTIVES), None)
        if block is None:                         # a card from elsewhere: nothing is known about the MI branch
            meta.setdefault("twin_mode", None)
            meta.setdefault("mi_weight", None)
        architecture = (config or {}).get("architecture")
        if architecture is not None:
            meta.setdefault("architecture", architecture)
            meta.setdefault("backbone", architecture)
        datasets = [data.datasets] if isinstance(data.datasets, str) else data.datasets or []
        if not isinstance(datasets, list) or not isinstance(data.tags or [], list):
            raise ValueError(f"the model card's datasets and tags must be lists, got {data.datasets!r} and "
                             f"{data.tags!r}")
        try:
            return cls(model_id=None if data.model_name is None else str(data.model_name),
                       license=None if data.license is None else str(data.license),
                       datasets=[str(d) for d in datasets], tags=tags, results=results, **meta)
        except ValueError as e:
            raise ValueError(f"the model card's mimcl_hub: block is invalid: {e}") from e


def load_model_card(path: Union[str, os.PathLike]):
    """``huggingface_hub.ModelCard.load`` of a ``README.md`` (or the folder holding one), never a Hub download.

    Raises:
        FileNotFoundError: no such file.
        ValueError: ``"the model card could not be parsed: REASON"`` — YAML that does not parse (a
            ``!!python/object`` tag is refused, never executed: the YAML is read with ``yaml.safe_load``),
            a malformed model-index.
    """
    from huggingface_hub import ModelCard

    path = Path(path)
    if path.is_dir():
        path = path / "README.md"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: no model card")
    try:
        return ModelCard.load(path)
    except Exception as e:  # YAML errors, malformed model-index (ValueError), unreadable file
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        reason = reason.split(". Pass `ignore_metadata_errors", 1)[0].replace("<class 'KeyError'>", "missing key")
        raise ValueError(f"the model card could not be parsed: {reason}") from e
