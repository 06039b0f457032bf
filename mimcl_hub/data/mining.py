"""Twin-patch mining as an HF Datasets map function.

``mine_twin_patches`` is a *batched* ``Dataset.map`` function: it reads each row's clip (a lazy
video window or a ``frames`` column, see ``load_clip_frames``), runs ``mimcl_hub.mi.find_twins``
and adds the twin columns. A bad row never crashes the map: it gets empty twin columns and its
reason in ``mine_error`` (``strict=True`` raises instead, naming the row).

    ds = bundled_clips(window=24)
    mined = ds.map(mine_twin_patches, batched=True, batch_size=4, num_proc=2,
                   fn_kwargs={"max_side": 320, "grid": 8}, features=mined_features(ds.features))

``mine_dataset`` does exactly that with the right features.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Optional

import datasets
import numpy as np

from ..errors import ClipError
from ..mi.twins import STATUS_NAMES, TwinOptions, find_twins
from .sources import load_clip_frames

logger = logging.getLogger(__name__)

__all__ = ["TWIN_FEATURES", "mined_features", "mine_twin_patches", "mine_dataset", "mining_report", "row_result"]

#: Columns added by ``mine_twin_patches``. Per clip, P = grid² patches and T frames; boxes and
#: tracks are in pixels of the mined frames (``twin_frame_size`` = (H, W), after ``max_side``).
TWIN_FEATURES = datasets.Features(
    {
        "twin_boxes": datasets.Sequence(datasets.Sequence(datasets.Value("int32"), length=4)),  # (P, 4) xyxy
        "twin": datasets.Sequence(datasets.Value("int32")),  # (P,) twin index, -1 none
        "twin_mi": datasets.Sequence(datasets.Value("float32")),  # (P,) best-partner MI, NaN if invalid
        "twin_valid": datasets.Sequence(datasets.Value("bool")),  # (P,)
        "twin_status": datasets.Sequence(datasets.Value("string")),  # (P,) ok/no_texture/lost/static
        "twin_tracks": datasets.Sequence(datasets.Sequence(datasets.Sequence(datasets.Value("float32"), length=2))),  # (P, T, 2)
        "twin_frame_size": datasets.Sequence(datasets.Value("int32"), length=2),  # (H, W)
        "twin_threshold": datasets.Value("float32"),
        "mine_error": datasets.Value("string"),  # "" when the row was mined
    }
)


def mined_features(features: datasets.Features) -> datasets.Features:
    """The input features plus ``TWIN_FEATURES`` (for ``Dataset.map(features=...)``)."""
    clash = set(features) & set(TWIN_FEATURES)
    if clash:
        raise ValueError(f"dataset already has twin columns {sorted(clash)}; remove them before mining again")
    out = datasets.Features(dict(features))
    out.update(TWIN_FEATURES)
    return out


def _empty_row(error: str) -> dict[str, Any]:
    return {
        "twin_boxes": [], "twin": [], "twin_mi": [], "twin_valid": [], "twin_status": [], "twin_tracks": [],
        "twin_frame_size": [0, 0], "twin_threshold": float("nan"), "mine_error": error,
    }


def row_result(result) -> dict[str, Any]:
    """Convert a ``TwinPatches`` into one row of the twin columns."""
    return {
        "twin_boxes": result.boxes.astype(np.int32).tolist(),
        "twin": result.twin.astype(np.int32).tolist(),
        "twin_mi": result.mi.astype(np.float32).tolist(),
        "twin_valid": result.valid.tolist(),
        "twin_status": [STATUS_NAMES[s] for s in result.status],
        "twin_tracks": result.tracks.astype(np.float32).tolist(),
        "twin_frame_size": [int(result.frame_size[0]), int(result.frame_size[1])],
        "twin_threshold": float(result.threshold),
        "mine_error": "",
    }


def _row(batch: Mapping[str, list], i: int) -> dict[str, Any]:
    return {name: values[i] for name, values in batch.items()}


def mine_twin_patches(
    batch: Mapping[str, list],
    indices: Optional[list[int]] = None,
    *,
    max_side: Optional[int] = 320,
    strict_format: bool = False,
    strict: bool = False,
    depth_fn=None,
    **twin_options,
) -> dict[str, list]:
    """Batched ``Dataset.map`` function adding twin-patch columns (``TWIN_FEATURES``) to a clip dataset.

    Args:
        batch: a batch of clip rows (lazy video windows or a ``frames`` column).
        indices: row indices (pass ``with_indices=True`` to ``map``); used in error messages.
        max_side: frames are downscaled so their longer side is at most this (None: full size).
        strict_format: passed to ``load_clip_frames`` (True: grey/RGBA/16-bit frames are errors
            instead of being converted).
        strict: raise on the first bad row (a ``ClipError`` naming it) instead of marking it.
        depth_fn: optional per-frame depth model for ``find_twins``.
        **twin_options: ``TwinOptions`` fields (grid, k, mi_threshold, ...).

    Returns:
        The twin columns for the batch (``map`` keeps the input columns).
    """
    TwinOptions.from_kwargs(**twin_options)
    n = len(next(iter(batch.values()))) if batch else 0
    out: dict[str, list] = {name: [] for name in TWIN_FEATURES}
    for i in range(n):
        row = _row(batch, i)
        index = indices[i] if indices is not None else i
        name = row.get("clip_id") or f"row {index}"
        try:
            frames = load_clip_frames(row, max_side=max_side, strict_format=strict_format)
            values = row_result(find_twins(frames, depth_fn=depth_fn, clip_id=name, **twin_options))
        except Exception as error:  # a bad row is reported, never the end of the whole map
            if strict:
                if isinstance(error, ClipError):
                    raise ClipError(f"row {index}: {error}") from error
                raise ClipError(f"row {index} ({name}): {type(error).__name__}: {error}") from error
            reason = f"{type(error).__name__}: {error}"
            logger.warning("twin mining skipped row %s: %s", index, reason)
            values = _empty_row(reason)
        for key, value in values.items():
            out[key].append(value)
    return out


def mine_dataset(
    dataset: datasets.Dataset,
    num_proc: Optional[int] = None,
    batch_size: int = 4,
    max_side: Optional[int] = 320,
    strict: bool = False,
    strict_format: bool = False,
    desc: str = "mining twin patches",
    **twin_options,
) -> datasets.Dataset:
    """Run ``mine_twin_patches`` over a clip dataset with ``Dataset.map`` (cached by fingerprint).

    Raises ``ClipError`` for an empty dataset. Returns the dataset with ``TWIN_FEATURES`` added.
    """
    if not isinstance(dataset, datasets.Dataset):
        raise TypeError(f"mine_dataset expects a datasets.Dataset, got {type(dataset).__name__}")
    if len(dataset) == 0:
        raise ClipError("the clip dataset is empty: nothing to mine")
    TwinOptions.from_kwargs(**twin_options)
    if "frames" in dataset.column_names:
        # numpy batches: frames arrive as arrays, not nested Python lists
        dataset = dataset.with_format("numpy", columns=["frames"], dtype=np.uint8, output_all_columns=True)
    mined = dataset.map(
        mine_twin_patches,
        batched=True,
        batch_size=batch_size,
        with_indices=True,
        num_proc=num_proc,
        features=mined_features(dataset.features),
        fn_kwargs=dict(max_side=max_side, strict=strict, strict_format=strict_format, **twin_options),
        desc=desc,
    )
    return mined.with_format(None)


def mining_report(dataset: datasets.Dataset) -> dict[str, Any]:
    """Counts over a mined dataset: clips, clips mined / failed (with reasons), patches, valid
    patches and twins."""
    errors = dataset["mine_error"]
    failed = {i: e for i, e in enumerate(errors) if e}
    valid = dataset["twin_valid"]
    twins = dataset["twin"]
    return {
        "clips": len(dataset),
        "mined": len(dataset) - len(failed),
        "failed": len(failed),
        "errors": failed,
        "patches": int(sum(len(v) for v in valid)),
        "valid_patches": int(sum(int(np.sum(v)) for v in valid)),
        "twins": int(sum(int(np.sum(np.asarray(t) >= 0)) for t in twins)),
    }
