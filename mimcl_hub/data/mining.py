"""Twin-patch mining as an HF Datasets map function.

``mine_twin_patches`` is a *batched* ``Dataset.map`` function: it reads each row's clip (a lazy
video window or a ``frames`` column, see ``load_clip_frames``), runs ``mimcl_hub.mi.find_twins``
and adds the twin columns. A bad row never crashes the map: it gets empty twin columns, its message in
``mine_error`` and a reason code in ``mine_reason`` (``mimcl_hub.errors.CLIP_ERROR_REASONS``, e.g.
``too_few_frames``, ``corrupt_video``, ``non_finite``; ``unexpected_error`` for anything that is not a
``ClipError``); ``mining_report`` counts them by reason. ``strict=True`` raises instead, naming the row.
A row of a file that gave no clip when the clip dataset was built (``scan_error`` / ``scan_reason`` set, see
``mimcl_hub.data.sources``) becomes a failed row with that message and reason, without being decoded again
(``strict=True``: the error, naming the file); so does a row whose file changed size since then
(``video_size``; reason ``bad_clip``).

    ds = bundled_clips(window=24)
    mined = ds.map(mine_twin_patches, batched=True, batch_size=4, num_proc=2,
                   fn_kwargs={"max_side": 320, "grid": 8}, features=mined_features(ds.features))

``mine_dataset`` does exactly that with the right features.

Every row records how it was mined: ``twin_options`` is a JSON object of the ``TwinOptions`` fields used plus
``max_side`` (failed rows too), so any row, shard or Parquet export says which settings produced its twins;
``mining_report`` lists the distinct option sets. :class:`MinedTwins` reads a row's twin columns back (the
twin picture is drawn from them, never by mining again).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Optional

import datasets
import numpy as np

from .._progress import datasets_progress, show_progress_bars
from .._safety import check_number
from ..errors import ClipError
from ..mi.twins import STATUS_NAMES, TwinOptions, find_twins
from .crops import CROP_FEATURES, check_crop_options, empty_crops, patch_crops
from .decoding import close_reader, intra_op_threads, load_frames, usable_cores

logger = logging.getLogger(__name__)

__all__ = ["MinedTwins", "TWIN_FEATURES", "error_reason", "mined_features", "mine_twin_patches", "mine_dataset",
           "mining_report", "options_json", "row_result", "with_lossless_frames"]

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
        "twin_options": datasets.Value("string"),  # JSON: the TwinOptions fields used + max_side (every row)
        "mine_error": datasets.Value("string"),  # "" when the row was mined
        "mine_reason": datasets.Value("string"),  # "" when mined, else a code of mimcl_hub.errors.CLIP_ERROR_REASONS
    }
)


def mined_features(features: datasets.Features, crops: bool = False) -> datasets.Features:
    """The input features plus ``TWIN_FEATURES`` (and ``CROP_FEATURES`` with ``crops``; for
    ``Dataset.map(features=...)``)."""
    added = {**TWIN_FEATURES, **(CROP_FEATURES if crops else {})}
    clash = set(features) & set(added)
    if clash:
        raise ValueError(f"dataset already has twin columns {sorted(clash)}; remove them before mining again")
    out = datasets.Features(dict(features))
    out.update(added)
    return out


def options_json(options: TwinOptions, max_side: Optional[int]) -> str:
    """The ``twin_options`` value of a row: ``{field: value, ..., "max_side": max_side}`` as sorted-key JSON."""
    return json.dumps({**asdict(options), "max_side": max_side}, sort_keys=True)


def _empty_row(error: str, reason: str, options: str) -> dict[str, Any]:
    return {
        "twin_boxes": [], "twin": [], "twin_mi": [], "twin_valid": [], "twin_status": [], "twin_tracks": [],
        "twin_frame_size": [0, 0], "twin_threshold": float("nan"), "twin_options": options, "mine_error": error,
        "mine_reason": reason,
    }


def error_reason(error: BaseException) -> str:
    """The reason code of a failed row: ``error.reason`` for a :class:`ClipError` (see
    ``mimcl_hub.errors.CLIP_ERROR_REASONS``), ``"unexpected_error"`` for anything else (a bug or a
    resource problem such as ``MemoryError``, reported with its type in ``mine_error``)."""
    if isinstance(error, ClipError):
        return error.reason or "bad_clip"
    return "unexpected_error"


def row_result(result, max_side: Optional[int] = None) -> dict[str, Any]:
    """Convert a ``TwinPatches`` (mined with ``max_side``) into one row of the twin columns."""
    return {
        "twin_boxes": result.boxes.astype(np.int32).tolist(),
        "twin": result.twin.astype(np.int32).tolist(),
        "twin_mi": result.mi.astype(np.float32).tolist(),
        "twin_valid": result.valid.tolist(),
        "twin_status": [STATUS_NAMES[s] for s in result.status],
        "twin_tracks": result.tracks.astype(np.float32).tolist(),
        "twin_frame_size": [int(result.frame_size[0]), int(result.frame_size[1])],
        "twin_threshold": float(result.threshold),
        "twin_options": options_json(result.options, max_side),
        "mine_error": "",
        "mine_reason": "",
    }


@dataclass
class MinedTwins:
    """The twins of one mined row, read back from its twin columns (:meth:`from_row`): what ``TwinPatches`` holds
    except the P×P ``mi_matrix``, ``motion``, ``gate`` and ``noise``, which rows do not store.

    Attributes:
        boxes: (P, 4) int xyxy patch boxes in pixels of the mined frames (row-major G×G grid, P = G²).
        twin: (P,) int twin index, −1 for none.
        mi: (P,) float best-partner MI (nats), NaN for invalid patches.
        valid: (P,) bool; status: (P,) int codes of ``mimcl_hub.mi.twins.STATUS_NAMES``.
        tracks: (P, T, 2) float32 patch centres per frame.
        frame_size: (H, W) of the mined frames; threshold: the MI threshold used.
        options: the ``twin_options`` the row was mined with (``TwinOptions`` fields + ``max_side``; empty for a
            row mined before they were recorded).
        clip_id: the row's ``clip_id`` (or ``"row I"``).
    """

    boxes: np.ndarray
    twin: np.ndarray
    mi: np.ndarray
    valid: np.ndarray
    status: np.ndarray
    tracks: np.ndarray
    frame_size: tuple[int, int]
    threshold: float
    options: dict[str, Any]
    clip_id: str = ""

    @property
    def pairs(self) -> list[tuple[int, int, float]]:
        """(anchor, twin, mi) for every patch that has a twin (as ``TwinPatches.pairs``)."""
        return [(int(i), int(self.twin[i]), float(self.mi[i])) for i in np.flatnonzero(self.twin >= 0)]

    def status_names(self) -> list[str]:
        return [STATUS_NAMES[s] for s in self.status]

    @classmethod
    def from_row(cls, row: Mapping[str, Any], index: Optional[int] = None) -> "MinedTwins":
        """Read a mined row (a dict of its columns). Raises ``ClipError`` naming the row when it failed mining or
        its twin columns do not fit together."""
        name = row.get("clip_id") or f"row {index}"
        where = f"row {index} ({name})" if index is not None else f"clip {name!r}"
        if row.get("mine_error"):
            raise ClipError(f"{where} was not mined ({row['mine_error']})", reason=row.get("mine_reason") or "bad_clip")
        boxes = np.asarray(row["twin_boxes"], np.int64).reshape(-1, 4)
        p = boxes.shape[0]
        size = [int(v) for v in (row.get("twin_frame_size") or [])]
        tracks = np.asarray(row["twin_tracks"], np.float32)
        twins = cls(boxes=boxes, twin=np.asarray(row["twin"], np.int64), mi=np.asarray(row["twin_mi"], np.float64),
                    valid=np.asarray(row["twin_valid"], bool),
                    status=np.asarray([STATUS_NAMES.index(s) if s in STATUS_NAMES else -1
                                       for s in row["twin_status"]], np.int64),
                    tracks=tracks.reshape(p, -1, 2) if tracks.size else tracks.reshape(p, 0, 2),
                    frame_size=tuple(size), threshold=float(row["twin_threshold"]),
                    options=json.loads(row["twin_options"]) if row.get("twin_options") else {}, clip_id=str(name))
        shapes = {"twin": twins.twin.shape, "twin_mi": twins.mi.shape, "twin_valid": twins.valid.shape,
                  "twin_status": twins.status.shape}
        bad = [f"{k} {v}" for k, v in shapes.items() if v != (p,)]
        if bad or len(size) != 2 or min(size) <= 0 or (twins.status < 0).any() \
                or ((twins.twin < -1) | (twins.twin >= p)).any():
            raise ClipError(f"{where}: its twin columns do not fit together ({p} boxes; {', '.join(bad) or 'ok'}; "
                            f"frame size {size}; status {sorted(set(row['twin_status']))}; twin indices must be in "
                            f"-1..{p - 1})", reason="bad_field")
        return twins


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
    num_threads: Optional[int] = None,
    crop_size: Optional[int] = None,
    crop_frames: int = 3,
    crop_context: float = 2.0,
    device: Optional[str] = None,
    row_offset: int = 0,
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
        num_threads: at most this many numba / torch / OpenCV / video-decoder threads while mining
            this batch (None: as they are). Pass cores // num_proc with ``num_proc`` > 1
            (``mine_dataset`` does), or N processes each run one thread per core and oversubscribe
            the machine. In a forked map worker the lowered counts stay lowered (see
            ``intra_op_threads``).
        crop_size, crop_frames, crop_context: with ``crop_size`` set, also the materialised patch crops
            (``CROP_FEATURES``, see :mod:`mimcl_hub.data.crops`: every valid patch at ``crop_frames`` frames, a
            window of ``crop_context`` x its side resized to ``crop_size`` px), cut from the frames just mined, so
            training reads twin pairs without decoding videos (``mined_features(..., crops=True)``).
        device: torch device of the MI engine (``find_twins(..., device=device)``; None: ``find_twins``' default).
        row_offset: added to ``indices`` in messages (a shard of a larger clip dataset names the row of the whole).
        **twin_options: ``TwinOptions`` fields (grid, k, mi_threshold, ...).

    Consecutive lazy windows of one video are decoded in one pass (the decoder stays open between
    rows and batches of a process; see ``mimcl_hub.data.decoding``), so mine clip datasets in their natural
    order: shuffled windows decode the video again from its start for every backward jump.

    Returns:
        The twin columns for the batch (``map`` keeps the input columns).
    """
    options = options_json(TwinOptions.from_kwargs(**twin_options), max_side)
    check_number("num_threads", num_threads, 1, None, integer=True, allow_none=True)
    check_crop_options(crop_size, crop_frames, crop_context)
    check_number("row_offset", row_offset, 0, None, integer=True)
    crops = dict(crop_size=crop_size, crop_frames=crop_frames, crop_context=crop_context) if crop_size else None
    if row_offset and batch:
        rows = indices if indices is not None else range(len(next(iter(batch.values()))))
        indices = [i + row_offset for i in rows]
    find_options = dict(twin_options, device=device) if device is not None else twin_options
    with intra_op_threads(num_threads):
        return _mine_batch(batch, indices, max_side, strict_format, strict, depth_fn, num_threads, find_options,
                           options, crops)


def _check_unchanged(row: Mapping[str, Any]) -> None:
    """A lazy path row whose file has another size than when its windows were cut (``video_size``) is refused,
    naming the file: its windows and shot cuts belong to other content."""
    size, path = row.get("video_size"), row.get("video")
    if size is None or not isinstance(path, str) or row.get("video_bytes") is not None or row.get("frames") is not None:
        return
    try:
        now = os.stat(path).st_size
    except OSError:
        return  # gone: load_clip_frames names it (missing_video)
    if now != size:
        raise ClipError(f"video file {path}: changed since its clip windows were cut ({size} bytes then, {now} "
                        "now); build the clip dataset again", reason="bad_clip")


def _mine_batch(batch, indices, max_side, strict_format, strict, depth_fn, num_threads, twin_options,
                options, crops=None) -> dict[str, list]:
    n = len(next(iter(batch.values()))) if batch else 0
    out: dict[str, list] = {name: [] for name in {**TWIN_FEATURES, **(CROP_FEATURES if crops else {})}}
    for i in range(n):
        row = _row(batch, i)
        index = indices[i] if indices is not None else i
        name = row.get("clip_id") or f"row {index}"
        try:
            if row.get("scan_error"):  # the file gave no clip when the source was built: its reason, no 2nd decode
                raise ClipError(row["scan_error"], reason=row.get("scan_reason") or "bad_clip")
            _check_unchanged(row)
            frames = load_frames(row, max_side, strict_format, num_threads)
            result = find_twins(frames, depth_fn=depth_fn, clip_id=name, **twin_options)
            values = row_result(result, max_side)
            if crops:
                values.update(patch_crops(frames, result.boxes, result.tracks, result.valid, **crops))
        except Exception as error:  # a bad row is reported, never the end of the whole map
            reason = error_reason(error)
            if strict:
                if isinstance(error, ClipError):  # one line, naming the row and the file
                    raise ClipError(" ".join(f"row {index}: {error} [{reason}]".splitlines()), reason=reason) from error
                raise ClipError(f"row {index} ({name}): {type(error).__name__}: {error} [{reason}]",
                                reason="bad_clip") from error
            message = f"{type(error).__name__}: {error}"
            logger.warning("twin mining skipped row %s (%s): %s", index, reason, message)
            values = _empty_row(message, reason, options)
            if crops:
                values.update(empty_crops())
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
    num_threads: Optional[int] = None,
    crop_size: Optional[int] = None,
    crop_frames: int = 3,
    crop_context: float = 2.0,
    device: Optional[str] = None,
    row_offset: int = 0,
    cache_file_name: Optional[str] = None,
    **twin_options,
) -> datasets.Dataset:
    """Run ``mine_twin_patches`` over a clip dataset with ``Dataset.map`` (cached by fingerprint).

    ``crop_size`` (None: no crops): also write the materialised patch crops (``CROP_FEATURES``, see
    ``mine_twin_patches``); ``crop_frames`` / ``crop_context`` as there. ``device`` (the MI engine's torch device)
    and ``row_offset`` (row numbers in messages) as there. ``cache_file_name``: the Arrow file the map writes
    (``Dataset.map(cache_file_name=...)``; None: Datasets' default cache), e.g. a temporary file the caller deletes.

    ``num_threads``: numba / torch / OpenCV / video-decoder threads per process (see
    ``mine_twin_patches``). Default: with ``num_proc`` > 1, ``cores // num_proc`` (at least 1), so the
    workers share the cores instead of oversubscribing them; with ``num_proc`` None or 1 the thread
    settings are left as they are (all cores for the MI kernel).
    The map streams: each batch is decoded inside the worker and written to the Arrow cache file,
    so memory does not grow with the number of clips (``bench/mine_throughput.py`` measures it).

    Raises ``ClipError`` for an empty dataset. Returns the dataset with ``TWIN_FEATURES`` added.
    """
    if not isinstance(dataset, datasets.Dataset):
        raise TypeError(f"mine_dataset expects a datasets.Dataset, got {type(dataset).__name__}")
    if len(dataset) == 0:
        raise ClipError("the clip dataset is empty: nothing to mine", reason="too_few_frames")
    check_number("batch_size", batch_size, 1, None, integer=True)
    check_number("num_proc", num_proc, 1, None, integer=True, allow_none=True)
    check_number("max_side", max_side, 2, None, integer=True, allow_none=True)
    check_number("num_threads", num_threads, 1, None, integer=True, allow_none=True)
    TwinOptions.from_kwargs(**twin_options)
    check_crop_options(crop_size, crop_frames, crop_context)
    _check_clip_columns(dataset)
    dataset = with_lossless_frames(dataset)
    check_number("row_offset", row_offset, 0, None, integer=True)
    fn_kwargs = dict(max_side=max_side, strict=strict, strict_format=strict_format, **twin_options)
    if crop_size:       # only then: the fingerprint (cache) of a mine without crops stays as it was
        fn_kwargs.update(crop_size=crop_size, crop_frames=crop_frames, crop_context=crop_context)
    if device is not None:      # the same: a default mine keeps its fingerprint
        fn_kwargs["device"] = device
    if row_offset:
        fn_kwargs["row_offset"] = row_offset
    workers = min(num_proc or 1, len(dataset))
    if num_threads is None and workers > 1:
        num_threads = max(1, usable_cores() // workers)
    if num_threads is not None:  # only then: the fingerprint (cache) of a default one-process map stays as it was
        fn_kwargs["num_threads"] = num_threads
    bars = show_progress_bars()
    if not bars:        # no bar (CI, a log file): say what runs and how long it took
        logger.info("%s: %d clips in %d process(es)", desc, len(dataset), workers)
    t0 = time.monotonic()
    try:
        # workers > 1: lowered here, before the workers fork (see decoding.intra_op_threads), restored after
        with intra_op_threads(fn_kwargs.get("num_threads")), datasets_progress():
            mined = dataset.map(
                mine_twin_patches,
                batched=True,
                batch_size=batch_size,
                with_indices=True,
                num_proc=num_proc,
                features=mined_features(dataset.features, crops=bool(crop_size)),
                fn_kwargs=fn_kwargs,
                desc=desc,
                cache_file_name=cache_file_name,
            )
    finally:
        close_reader()  # the decoder a one-process map left open in this thread
    if not bars:
        logger.info("%s: %d clips done in %.1f s", desc, len(dataset), time.monotonic() - t0)
    return mined.with_format(None)


def _check_clip_columns(dataset: datasets.Dataset) -> None:
    """A dataset no row of which can be a clip fails here, naming the columns, instead of once per row."""
    columns = set(dataset.column_names)
    if not columns & {"frames", "video", "video_bytes"}:
        raise ClipError(f"the clip dataset has no 'frames', 'video' or 'video_bytes' column (columns: "
                        f"{sorted(columns)}); see mimcl_hub.data.load_clip_frames for the accepted rows",
                        reason="missing_column")


def _leaf_dtype(feature) -> Optional[str]:
    """The numeric dtype stored under a (nested) ``Sequence`` / ``List`` / ``ArrayND`` feature, or None."""
    while True:
        if isinstance(feature, datasets.Value):
            return feature.dtype
        if hasattr(feature, "shape") and hasattr(feature, "dtype") and isinstance(getattr(feature, "dtype"), str):
            return feature.dtype  # Array2D..Array5D
        inner = getattr(feature, "feature", None)
        if inner is None:
            return None
        feature = inner


def with_lossless_frames(dataset: datasets.Dataset) -> datasets.Dataset:
    """``dataset`` formatted so that its ``frames`` column arrives as numpy arrays of the *stored* dtype.

    ``with_format("numpy", dtype=np.uint8)`` would silently wrap 16-bit frames modulo 256 and turn NaN into
    0; this keeps uint16 as uint16 and floats as floats, so :func:`mimcl_hub.data.load_clip_frames` converts
    them (16-bit → 8-bit scaling) or rejects them (NaN, out of range) with a reason. Image columns stay
    PIL images (their mode is checked per frame)."""
    if "frames" not in dataset.column_names:
        return dataset
    leaf = _leaf_dtype(dataset.features["frames"])
    if leaf is None:
        return dataset
    try:
        dtype = np.dtype(leaf)
    except TypeError:
        return dataset
    if dtype.kind not in "uifb":
        return dataset
    return dataset.with_format("numpy", columns=["frames"], dtype=dtype, output_all_columns=True)


def mining_report(dataset: datasets.Dataset) -> dict[str, Any]:
    """Counts over a mined dataset: clips (rows), clips mined / failed, the failed rows by reason code
    (``failed_by_reason``, see ``mimcl_hub.errors.CLIP_ERROR_REASONS``; ``unexpected_error`` for anything
    that was not a ``ClipError``) and their messages by row (``errors``), ``bad_files`` (failed rows that are
    files which gave no clip at all: ``scan_error`` set), patches, valid patches, twins, and the
    distinct ``twin_options`` the rows were mined with (parsed, in order of first appearance; empty for a dataset
    mined before they were recorded)."""
    errors = dataset["mine_error"]
    failed = {i: e for i, e in enumerate(errors) if e}
    reasons = dataset["mine_reason"] if "mine_reason" in dataset.column_names else ["bad_clip"] * len(dataset)
    by_reason: dict[str, int] = {}
    for i in failed:
        key = reasons[i] or "bad_clip"
        by_reason[key] = by_reason.get(key, 0) + 1
    valid = dataset["twin_valid"]
    twins = dataset["twin"]
    options = dataset["twin_options"] if "twin_options" in dataset.column_names else []
    scan_errors = dataset["scan_error"] if "scan_error" in dataset.column_names else []
    return {
        "clips": len(dataset),
        "mined": len(dataset) - len(failed),
        "failed": len(failed),
        "failed_by_reason": dict(sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0]))),
        "errors": failed,
        "bad_files": sum(1 for e in scan_errors if e),
        "patches": int(sum(len(v) for v in valid)),
        "valid_patches": int(sum(int(np.sum(v)) for v in valid)),
        "twins": int(sum(int(np.sum(np.asarray(t) >= 0)) for t in twins)),
        "twin_options": [json.loads(o) for o in dict.fromkeys(options) if o],
    }
