"""A clip row -> its frames: :func:`load_clip_frames` (lazy video windows or a ``frames`` column) and
:func:`frames_to_uint8_rgb` (the package's one image conversion applied to a clip; :mod:`mimcl_hub.data.images`)."""

from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np

from ..errors import MAX_FRAME_PIXELS, ClipError
from .images import ImageError, channels_to_rgb, pixel_array, pixels_to_uint8
from .video import VideoSource, decode_video, resize_max_side

__all__ = ["frames_to_uint8_rgb", "load_clip_frames"]


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
