"""Materialised patch crops: what mining stores so that training reads twin pairs without any video.

While a clip is mined its frames are decoded anyway; :func:`patch_crops` cuts, from those frames, a square
window around every *valid* patch (the only patches that can be an anchor, a twin or a random partner) at
``crop_frames`` frames spread evenly over the frames where the patch is tracked, with a context margin
(``crop_context`` x the patch side), resized to ``crop_size`` px and stored JPEG-encoded (4:4:4) in a
``datasets.Image`` list. The training twin crop (:meth:`mimcl_hub.data.augment.Augmenter.twin`: a window of
``twin_context`` x side x (1 +- ``twin_scale_jitter``), 1.2 x side by default) lies inside the stored window
(2 x side by default), so reading the crop loses nothing the augmentation could reach, except where the window
was clamped at the frame border (then both hold the same clamped pixels).

Columns (:data:`CROP_FEATURES`, per clip row; C crops, sorted by patch then frame)::

    crop_patch   (C,)    int32    patch index p (into twin_boxes / twin / twin_valid of the row)
    crop_frame   (C,)    int32    frame index t of the mined clip
    crop_center  (C, 2)  float32  the tracked patch centre (x, y) at t, in crop pixels
    crop_side    (C,)    float32  the patch side (geometric mean of its box's width and height), in crop pixels
    crop_window  (C, 4)  float32  the cut window xyxy in pixels of the mined frames (provenance)
    crop_image   (C,)    Image    crop_size x crop_size RGB, JPEG (quality ``CROP_JPEG_QUALITY``)

A failed row (``mine_error`` set) has empty lists. Everything is deterministic: the same clip and options give
the same bytes, so a sharded mine equals a one-process mine.
"""

from __future__ import annotations

import io
import math
from typing import Any, Optional

import datasets
import numpy as np

from .._safety import check_number
from .augment import _clamp_window

__all__ = ["CROP_FEATURES", "CROP_JPEG_QUALITY", "DEFAULT_CROP_SIZE", "DEFAULT_CROP_FRAMES", "DEFAULT_CROP_CONTEXT",
           "check_crop_options", "crop_frame_indices", "crop_window", "patch_crops", "empty_crops", "has_crops",
           "decode_crop"]

#: Side of a stored crop (px), frames per patch and window side / patch side, as ``mimcl mine`` writes them.
DEFAULT_CROP_SIZE = 64
DEFAULT_CROP_FRAMES = 3
DEFAULT_CROP_CONTEXT = 2.0
#: JPEG quality of the stored crops (libjpeg, full 4:4:4 chroma; deterministic). Pillow's default 4:2:0 chroma
#: was ~15 grey levels off on the procedural scenes' per-pixel colour texture, 4:4:4 ~3, for ~1.3x the bytes.
CROP_JPEG_QUALITY = 95

CROP_FEATURES = datasets.Features(
    {
        "crop_patch": datasets.Sequence(datasets.Value("int32")),
        "crop_frame": datasets.Sequence(datasets.Value("int32")),
        "crop_center": datasets.Sequence(datasets.Sequence(datasets.Value("float32"), length=2)),
        "crop_side": datasets.Sequence(datasets.Value("float32")),
        "crop_window": datasets.Sequence(datasets.Sequence(datasets.Value("float32"), length=4)),
        "crop_image": datasets.Sequence(datasets.Image()),
    }
)


def check_crop_options(crop_size: Optional[int], crop_frames: int = DEFAULT_CROP_FRAMES,
                       crop_context: float = DEFAULT_CROP_CONTEXT) -> None:
    """``crop_size`` None (no crops) or an int >= 8; ``crop_frames`` an int >= 1; ``crop_context`` a number in
    [1, 16] (a window smaller than the patch would cut the patch itself). ``ValueError`` naming the option."""
    check_number("crop_size", crop_size, 8, 1024, integer=True, allow_none=True)
    check_number("crop_frames", crop_frames, 1, 1024, integer=True)
    check_number("crop_context", crop_context, 1, 16)


def has_crops(column_names) -> bool:
    """True when a dataset with these columns holds materialised crops (every :data:`CROP_FEATURES` column)."""
    return all(name in column_names for name in CROP_FEATURES)


def empty_crops() -> dict[str, list]:
    """The crop columns of a row that has no crops (a failed row)."""
    return {name: [] for name in CROP_FEATURES}


def crop_frame_indices(tracked: np.ndarray, crop_frames: int) -> np.ndarray:
    """``crop_frames`` frame indices spread evenly over the True entries of ``tracked`` (T,) bool: the first, the
    last and evenly spaced ones between (``round(linspace)``), without repeats (fewer when fewer are tracked)."""
    frames = np.flatnonzero(tracked)
    if len(frames) == 0:
        return frames.astype(np.int64)
    picks = np.unique(np.round(np.linspace(0, len(frames) - 1, min(crop_frames, len(frames)))).astype(np.int64))
    return frames[picks]


def crop_window(cx: float, cy: float, patch_side: float, context: float, height: int, width: int) -> tuple[int, int, int]:
    """(top, left, side) of the square window of side ``round(context * patch_side)`` (at least 2) centred on
    (cx, cy) and clamped into the H x W frame as the training crop is (``augment._clamp_window``)."""
    side = max(2, int(round(context * patch_side)))
    return _clamp_window(cy - side / 2.0, side, height), _clamp_window(cx - side / 2.0, side, width), side


def _cut(frame: np.ndarray, top: int, left: int, side: int, size: int) -> np.ndarray:
    """The window of ``frame`` (H, W, 3) uint8 (zero-padded where it leaves the frame) resized to size x size."""
    import cv2

    height, width = frame.shape[:2]
    window = np.zeros((side, side, 3), np.uint8)
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + side, height), min(left + side, width)
    window[y0 - top:y1 - top, x0 - left:x1 - left] = frame[y0:y1, x0:x1]
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(window, (size, size), interpolation=interpolation)


def _jpeg(image: np.ndarray) -> dict[str, Any]:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image, "RGB").save(buffer, format="JPEG", quality=CROP_JPEG_QUALITY, subsampling=0)
    return {"bytes": buffer.getvalue(), "path": None}


def patch_crops(frames: np.ndarray, boxes: np.ndarray, tracks: np.ndarray, valid: np.ndarray,
                crop_size: int = DEFAULT_CROP_SIZE, crop_frames: int = DEFAULT_CROP_FRAMES,
                crop_context: float = DEFAULT_CROP_CONTEXT) -> dict[str, list]:
    """The crop columns (:data:`CROP_FEATURES`) of one mined clip.

    Args:
        frames: (T, H, W, 3) uint8, the frames the twins were mined on (``twin_frame_size``).
        boxes: (P, 4) xyxy patch boxes; tracks: (P, T, 2) patch centres per frame (NaN where lost);
        valid: (P,) bool, the patches that get crops.
        crop_size, crop_frames, crop_context: see the module docstring (:func:`check_crop_options`).

    Returns:
        ``{column: list}`` for one row; images as ``{"bytes": JPEG, "path": None}``.
    """
    check_crop_options(crop_size, crop_frames, crop_context)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"patch_crops: frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    t_len, height, width = frames.shape[:3]
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    tracks = np.asarray(tracks, np.float64)
    valid = np.asarray(valid, bool).reshape(-1)
    p = boxes.shape[0]
    if tracks.shape != (p, t_len, 2) or valid.shape != (p,):
        raise ValueError(f"patch_crops: {p} boxes and {t_len} frames need tracks ({p}, {t_len}, 2) and valid ({p},), "
                         f"got {tracks.shape} and {valid.shape}")
    out = empty_crops()
    sides = np.sqrt(np.maximum(boxes[:, 2] - boxes[:, 0], 1) * np.maximum(boxes[:, 3] - boxes[:, 1], 1))
    tracked = np.isfinite(tracks).all(-1)
    for patch in np.flatnonzero(valid):
        for t in crop_frame_indices(tracked[patch], crop_frames):
            cx, cy = tracks[patch, t]
            top, left, side = crop_window(cx, cy, sides[patch], crop_context, height, width)
            scale = crop_size / side
            out["crop_patch"].append(int(patch))
            out["crop_frame"].append(int(t))
            out["crop_center"].append([float((cx - left) * scale), float((cy - top) * scale)])
            out["crop_side"].append(float(sides[patch] * scale))
            out["crop_window"].append([float(left), float(top), float(left + side), float(top + side)])
            out["crop_image"].append(_jpeg(_cut(frames[t], top, left, side, crop_size)))
    return out


def decode_crop(value: Any) -> np.ndarray:
    """One stored crop (``{"bytes": ..., "path": ...}`` as read with ``datasets.Image(decode=False)``, raw JPEG
    bytes, or a PIL image) -> (S, S, 3) uint8 RGB.

    Bytes are decoded with OpenCV (libjpeg-turbo, the same pixels as Pillow's decoder): ~70 us for a 64 px crop
    against ~100 us with Pillow, and interleaved with the twin augmentation Pillow's decode costs ~2x more again
    (measured: 380 vs 200 us per decode + crop); bytes OpenCV cannot read go through Pillow."""
    from PIL import Image

    if isinstance(value, dict):
        data = value.get("bytes")
        if data is None and value.get("path"):
            with open(value["path"], "rb") as f:
                data = f.read()
        value = data
    if isinstance(value, (bytes, bytearray, memoryview)):
        import cv2

        image = cv2.imdecode(np.frombuffer(value, np.uint8), cv2.IMREAD_COLOR)
        if image is not None:
            return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        with Image.open(io.BytesIO(bytes(value))) as image:
            return np.asarray(image.convert("RGB"))
    if hasattr(value, "convert"):
        return np.asarray(value.convert("RGB"))
    raise ValueError(f"decode_crop: expected JPEG bytes, an image dict or a PIL image, got {type(value).__name__}")
