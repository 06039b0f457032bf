"""What a checkpoint must agree on to be resumed, and reading its small pickles safely.

A checkpoint's marker (``mimcl_checkpoint.json``) records the *resolved* configuration of the run that wrote it
(:func:`resume_settings`: every :class:`~mimcl_hub.train.config.TrainConfig` field except the ones a resumed run
may change, with paths made absolute and defaults filled in) and the identity of its training data
(:func:`data_identity`: source, ``datasets`` fingerprint, number of items; for ``--train_dataset`` +
``--twin_dataset`` both sources' fingerprints and sizes). A resumed run refuses any other
value — naming the setting and both values — because a changed data source would be mixed in at the saved batch
position of the other data, and a changed head width, optimizer or precision would not fit the saved state.

May change on resume (:data:`RESUMABLE`): where and how long to run (``output_dir``, ``max_steps``,
``num_train_epochs``, the learning-rate schedule: ``learning_rate``, ``warmup_*``, ``min_lr_ratio``, and
``max_grad_norm``), logging, checkpoint cadence, the kNN monitor, Hub settings, DataLoader workers (the data
order does not depend on them) and debugging checks.
"""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path
from typing import Any, Optional

import torch

from .checkpoint import CheckpointError, read_marker

__all__ = ["RESUMABLE", "check_custom_pickles", "check_resume_config", "check_resume_data", "data_identity",
           "resume_settings"]

#: TrainConfig fields a resumed run may change.
RESUMABLE = frozenset({
    "output_dir", "overwrite_output_dir", "resume_from_checkpoint", "max_steps", "num_train_epochs",
    "learning_rate", "warmup_steps", "warmup_ratio", "min_lr_ratio", "max_grad_norm", "logging_steps", "report_to",
    "save_steps", "save_total_limit", "disable_tqdm", "eval_dataset", "eval_image_column", "eval_label_column",
    "knn_every", "knn_k", "knn_temperature", "knn_max_train", "knn_max_test", "push_to_hub", "hub_model_id",
    "hub_private_repo", "license", "save_heads", "check_sync_every", "dataloader_num_workers",
})


def _resolved_source(value: Optional[str]) -> Optional[str]:
    if value is not None and os.path.exists(os.path.expanduser(value)):
        return os.path.realpath(os.path.expanduser(value))
    return value


def resume_settings(config) -> dict[str, Any]:
    """The settings a checkpoint records and a resumed run must match (see the module docstring)."""
    out = {f.name: getattr(config, f.name) for f in fields(config) if f.name not in RESUMABLE}
    out["mi_objective"] = config.mi_objective_name
    out["twin_batch_size"] = config.twin_batch_size or config.per_device_train_batch_size
    for name in ("video_dataset", "train_dataset", "twin_dataset"):
        out[name] = _resolved_source(getattr(config, name))
    view_kwargs, mi_kwargs = config.objective_kwargs()
    out["objective_args"], out["mi_objective_args"] = view_kwargs, mi_kwargs
    return out


def data_identity(dataset) -> dict[str, Any]:
    """What a resumed run's training data must match: the dataset's own ``data_identity()`` when it has one (a
    :class:`~mimcl_hub.data.two_sources.TwoSourceDataset`: the view images' fingerprint and count, the twin
    source's fingerprint, rows and pairs, twin_mode and pairs per item), else ``{"fingerprint", "items"}``: the
    ``datasets`` fingerprint of what it reads (the ``fingerprint`` attribute of the contrastive datasets) and its
    number of items."""
    own = getattr(dataset, "data_identity", None)
    if callable(own):
        return dict(own())
    return {"fingerprint": getattr(dataset, "fingerprint", None), "items": len(dataset)}


def _differences(saved: dict, now: dict) -> list[str]:
    return [f"{key}: checkpoint {saved[key]!r} vs now {now[key]!r}"
            for key in sorted(now) if key in saved and saved[key] != now[key]]


def _refuse(path: Path, diffs: list[str]) -> None:
    if diffs:
        raise CheckpointError(f"cannot resume from {path}: it was written by a run with another configuration "
                              "(these settings change the data or the saved state's shapes):\n  " + "\n  ".join(diffs))


def check_resume_config(path: Path, config, num_processes: int) -> None:
    """Refuse a checkpoint whose recorded settings or process count differ from this run's (cheap: before any
    model or data is built)."""
    marker = read_marker(path) or {}
    diffs = _differences(marker.get("config") or {}, resume_settings(config))
    if marker.get("num_processes") not in (None, num_processes):
        diffs.append(f"num_processes: checkpoint {marker['num_processes']} vs now {num_processes} (the data position "
                     "and per-process RNG states depend on it)")
    _refuse(path, diffs)


def check_resume_data(path: Path, identity: dict[str, Any]) -> None:
    """Refuse a checkpoint written on other training data (after the data is built, before the state is loaded)."""
    saved = (read_marker(path) or {}).get("data") or {}
    _refuse(path, [f"training data {d}" for d in _differences(saved, identity)])


def check_custom_pickles(path: Path) -> None:
    """Refuse a checkpoint folder whose small pickles hold more than plain data, before Accelerate reads them.

    Accelerate reads registered objects (``custom_checkpoint_<i>.pkl``, here the ``TrainingState``) with
    ``torch.load(weights_only=False)``, which would run any code a foreign folder hides in them, and it reads
    ``random_states_<i>.pkl`` with ``weights_only=True`` but silently skips one it cannot read (the run then
    continues with other random numbers). Both are read here with ``weights_only=True`` (plus Accelerate's own
    allow-list for the RNG states) and a failure is a :class:`CheckpointError`. Weights are safetensors; the
    optimizer and scheduler files Accelerate reads with ``weights_only=True`` and fails loudly on its own."""
    import pickle

    from accelerate.utils import load as accelerate_load

    files = sorted(path.glob("custom_checkpoint_*.pkl")) + sorted(path.glob("random_states_*.pkl"))
    for file in files:
        try:
            if file.name.startswith("custom_checkpoint_"):
                torch.load(str(file), map_location="cpu", weights_only=True)
            else:
                accelerate_load(str(file), map_location="cpu")
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError) as e:
            raise CheckpointError(f"cannot resume from {path}: {file.name} holds more than plain data (objects or code "
                                  f"that torch.load(weights_only=True) refuses), so it is not loaded: "
                                  f"{str(e).splitlines()[0]}") from e
