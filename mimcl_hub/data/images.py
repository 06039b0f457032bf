"""The one conversion of pixels to uint8 RGB, used by every reader of images in mimcl_hub: clip frames
(:func:`mimcl_hub.data.sources.frames_to_uint8_rgb`), the contrastive image datasets and the kNN sets.

The rule is decided by the *type* of the data (a dataset's feature type, an array's dtype, a PIL image's
mode), never by looking at one image's values, so one dark image is never read differently from the
others of its dataset:

=====================================================  ====================================================
input                                                  becomes
=====================================================  ====================================================
uint8                                                  as is
uint16; PIL modes ``I;16*``; PIL mode ``I``            ``round(x * 255 / 65535)`` (mode ``I`` is how Pillow
                                                       holds 16-bit data: values must lie in 0..65535)
float (any width); PIL mode ``F``                      must lie in [0, 1]: ``round(x * 255)``
other integers (int8..int64, uint32, uint64)           accepted when every value is in 0..255
bool, complex, object, strings                         refused
PIL 8-bit modes (RGB, L, RGBA, P, CMYK, LA, 1, ...)    ``image.convert("RGB")`` (RGB / L / RGBA read as is)
=====================================================  ====================================================

PIL's 16-bit modes never go through ``convert("RGB")``: it clips every value above 255, so a 16-bit PNG
(opened by Pillow 13 in mode ``I;16``) would come out almost white.

Channels: grey (H, W) / (H, W, 1) are repeated to RGB, RGBA drops alpha (not composited), 3 channels are
kept. ``strict_format=True`` refuses grey, RGBA, 16-bit and non-RGB PIL modes instead of converting them.

Every refusal is an :class:`ImageError` (a ``ValueError``) whose message starts with ``what`` (e.g.
``"row 3 of column 'image'"`` or ``"clip bikes.mp4@0+16"``) and whose ``reason`` is one of the
:data:`mimcl_hub.errors.CLIP_ERROR_REASONS` codes (``bad_dtype``, ``non_finite``, ``bad_shape``,
``bad_format``, ``empty_frames``).
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

__all__ = ["PIL_16BIT_MODES", "ImageError", "image_dtype", "pixel_array", "pixels_to_uint8", "channels_to_rgb", "to_uint8_rgb"]

#: PIL modes holding 16-bit data (``I`` is what Pillow uses for 16-bit PNGs in older versions and for 32-bit
#: integer images; its values must still lie in 0..65535).
PIL_16BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
#: PIL modes read as they are (uint8 arrays with 3, 1 and 4 channels); other 8-bit modes go through convert("RGB").
_PIL_AS_IS = ("RGB", "L", "RGBA")


class ImageError(ValueError):
    """Pixels that cannot be read as uint8 RGB; ``reason`` is a ``CLIP_ERROR_REASONS`` code."""

    def __init__(self, message: str = "", reason: str = "bad_dtype"):
        super().__init__(message)
        self.reason = reason

    def __reduce__(self):  # keep the reason across processes (Dataset.map, DataLoader workers)
        return (type(self), (str(self), self.reason))


def _is_pil(value: Any) -> bool:
    return hasattr(value, "mode") and hasattr(value, "convert") and hasattr(value, "getbands")


def image_dtype(feature: Any) -> Optional[np.dtype]:
    """The pixel dtype a dataset column declares: the ``dtype`` of an ``Array2D..Array5D`` feature or of the
    innermost ``Value`` of nested ``Sequence`` / ``List`` features; ``None`` for ``datasets.Image`` (PIL images,
    read by mode) and for anything else. Pass it as ``dtype`` to :func:`to_uint8_rgb` so a whole column is read
    by one rule, also when its rows come back as nested Python lists (``float32`` lists are floats, ``uint16``
    lists are 16-bit, whatever one row's values)."""
    import datasets

    while True:
        if isinstance(feature, (datasets.Array2D, datasets.Array3D, datasets.Array4D, datasets.Array5D)):
            return np.dtype(feature.dtype)
        if isinstance(feature, datasets.Value):
            try:
                return np.dtype(feature.dtype)
            except TypeError:  # string, binary, ...
                return None
        inner = getattr(feature, "feature", None)  # Sequence / List / LargeList
        if inner is None or isinstance(feature, dict):
            return None
        feature = inner


def pixel_array(value: Any, what: str = "image", *, dtype: Optional[np.dtype] = None,
                strict_format: bool = False) -> np.ndarray:
    """An image as an array of its *stored* type, before any value conversion.

    PIL images by mode: RGB / L / RGBA as uint8, ``I;16*`` as uint16, ``I`` as uint16 after checking
    0..65535, ``F`` as float32, any other mode through ``convert("RGB")`` (refused with ``strict_format``).
    Anything else through ``np.asarray``; with ``dtype`` (see :func:`image_dtype`) the array is cast to the
    column's dtype, refused when that would change a value.
    """
    if _is_pil(value):
        mode = value.mode
        if mode in _PIL_AS_IS:
            return np.asarray(value)
        if mode in PIL_16BIT_MODES:
            array = np.asarray(value)
            if mode == "I":
                lo, hi = (int(array.min()), int(array.max())) if array.size else (0, 0)
                if lo < 0 or hi > 65535:
                    raise ImageError(f"{what}: a PIL image in mode 'I' (read as 16-bit) has values in [{lo}, {hi}], "
                                     "outside 0..65535", "bad_dtype")
            return array.astype(np.uint16)
        if mode == "F":
            return np.asarray(value, dtype=np.float32)
        if strict_format:
            raise ImageError(f"{what}: a PIL image in mode {mode!r}; strict_format needs RGB", "bad_format")
        try:
            return np.asarray(value.convert("RGB"))  # palette, CMYK, YCbCr, LA, 1-bit ... (PIL's own conversion)
        except (ValueError, OSError) as exc:
            raise ImageError(f"{what}: a PIL image in mode {mode!r} cannot be converted to RGB: {exc}",
                             "bad_format") from exc
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as exc:  # e.g. ragged nested lists
        raise ImageError(f"{what}: cannot be read as an array: {exc}", "bad_shape") from exc
    if dtype is not None and array.dtype != dtype:
        dtype = np.dtype(dtype)
        if array.dtype.kind not in "biuf" or dtype.kind not in "biuf":
            raise ImageError(f"{what}: values of dtype {array.dtype} in a column of dtype {dtype}", "bad_dtype")
        with np.errstate(invalid="ignore", over="ignore"):
            cast = array.astype(dtype)
            exact = np.array_equal(cast, array, equal_nan=dtype.kind == "f")
        if not exact:
            raise ImageError(f"{what}: values do not fit the column's dtype {dtype}", "bad_dtype")
        array = cast
    return array


def pixels_to_uint8(array: np.ndarray, what: str = "image", strict_format: bool = False) -> np.ndarray:
    """The dtype rule of the module docstring, applied to an array of any shape: uint8, same shape."""
    dtype = array.dtype
    if dtype == np.uint8:
        return array
    kind = dtype.kind
    if kind not in "uif":
        raise ImageError(f"{what}: unsupported dtype {dtype} (pixels must be uint8, uint16, floats in [0, 1] or "
                         "integers in 0..255)", "bad_dtype")
    if array.size == 0:
        raise ImageError(f"{what}: no pixels (shape {array.shape})", "empty_frames")
    if kind == "u" and dtype.itemsize == 2:  # 16-bit: always scaled, whatever the values
        if strict_format:
            raise ImageError(f"{what}: 16-bit pixels ({dtype}); strict_format needs uint8", "bad_format")
        return ((array.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if kind == "f":
        if not np.isfinite(array).all():
            which = "NaN" if np.isnan(array).any() else "infinite"
            raise ImageError(f"{what}: pixel values include {which} values", "non_finite")
        lo, hi = array.min(), array.max()
        if lo < 0 or hi > 1:
            raise ImageError(
                f"{what}: float pixels range over [{lo:g}, {hi:g}], outside [0, 1]; float images must hold "
                "intensities in [0, 1], not integer grey levels in 0..255 (cast those to uint8 first)", "bad_dtype")
        return np.rint(array.astype(np.float32) * np.float32(255)).astype(np.uint8)
    lo, hi = array.min(), array.max()
    if lo < 0 or hi > 255:
        raise ImageError(f"{what}: integer pixels (dtype {dtype}) range over [{lo}, {hi}], outside 0..255; "
                         "convert them to uint8 explicitly", "bad_dtype")
    return array.astype(np.uint8)


def channels_to_rgb(array: np.ndarray, what: str = "image", leading: int = 0,
                    strict_format: bool = False) -> np.ndarray:
    """(..., H, W[, C]) with ``leading`` dimensions before H (0: one image, 1: frames (T, H, W[, C])) ->
    (..., H, W, 3): grey repeated, RGBA without alpha."""
    layout = "(T, H, W" if leading == 1 else "(" + "N, " * leading + "H, W"
    if array.ndim == leading + 2:
        if strict_format:
            raise ImageError(f"{what}: grey {layout}) {array.shape}; strict_format needs {layout}, 3)", "bad_format")
        return np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != leading + 3:
        raise ImageError(f"{what}: pixels must have shape {layout}, 3) (or {layout}) grey / {layout}, 4) RGBA), "
                         f"got {array.ndim} dimensions {array.shape}", "bad_shape")
    channels = array.shape[-1]
    if channels == 3:
        return array
    if channels in (1, 4):
        if strict_format:
            kind = "grey" if channels == 1 else "RGBA"
            raise ImageError(f"{what}: {kind} {array.shape}; strict_format needs {layout}, 3)", "bad_format")
        return np.repeat(array, 3, axis=-1) if channels == 1 else array[..., :3]
    hint = f" (channels-first? transpose to {layout}, C))" if array.shape[leading] in (1, 3, 4) else ""
    raise ImageError(f"{what}: {channels} channels in shape {array.shape}; expected 3{hint}", "bad_shape")


def to_uint8_rgb(value: Any, what: str = "image", *, dtype: Optional[np.dtype] = None,
                 strict_format: bool = False) -> np.ndarray:
    """One image (a PIL image, an (H, W[, C]) array, a CPU tensor or nested lists) -> C-contiguous
    (H, W, 3) uint8 RGB, by the rule of the module docstring. ``dtype``: the column's pixel dtype
    (:func:`image_dtype`), so every row of a dataset is read by the same rule. Raises :class:`ImageError`
    naming ``what``."""
    array = pixel_array(value, what, dtype=dtype, strict_format=strict_format)
    array = pixels_to_uint8(array, what, strict_format)
    array = channels_to_rgb(array, what, 0, strict_format)
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageError(f"{what}: empty image (shape {array.shape})", "empty_frames")
    return np.ascontiguousarray(array)
