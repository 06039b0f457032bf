"""Exceptions shared across mimcl_hub, and the exit status the command line gives each kind of failure.

Bad input raises ``ValueError`` subclasses (``ClipError``, ``ConfigError``, ``CheckpointError``, ...) or ``OSError``
(a missing / unreadable / wrong-kind file); a run that stopped for a known reason raises a :class:`RunStopped`
(a non-finite loss, a busy or full output folder, processes out of sync). :func:`exit_code` maps them to 2 and 1."""

from __future__ import annotations

from typing import Optional

__all__ = ["ClipError", "CLIP_ERROR_REASONS", "MAX_FRAME_PIXELS", "RunStopped", "exit_code", "failure_message"]

#: Largest frame (H x W pixels) a clip may have before it is downscaled: 8192 x 8192 (far above 8K UHD,
#: 7680 x 4320). Bigger frames are refused with reason ``frames_too_large``
#: instead of exhausting memory; video files are decoded frame by frame and downscaled with ``max_side``.
MAX_FRAME_PIXELS = 8192 * 8192

#: Short reason codes of :class:`ClipError` (``error.reason``), counted by ``mining_report``.
CLIP_ERROR_REASONS = {
    "missing_column": "the row has no 'frames', 'video' or 'video_bytes' field",
    "bad_field": "a row field (start, num_frames, ...) has the wrong type or value",
    "missing_video": "the video file does not exist or is not a regular file",
    "corrupt_video": "the video cannot be opened or decoded (not a video, corrupt or truncated)",
    "window_out_of_range": "the clip window lies beyond the end of the video",
    "too_few_frames": "zero or one frame, or fewer than KSG needs",
    "bad_dtype": "frames are not uint8 and cannot be converted losslessly (bool, complex, object, out-of-range values)",
    "non_finite": "frames contain NaN or infinite values",
    "bad_shape": "frames are not (T, H, W, 3) (wrong ndim, channel count, or frames of different sizes)",
    "bad_format": "grey / RGBA / 16-bit frames refused by strict_format",
    "empty_frames": "frames of zero height or width",
    "frames_too_small": "frames too small for the patch grid",
    "frames_too_large": "frames larger than MAX_FRAME_PIXELS (pass max_side to downscale)",
    "invalid_argument": "a bad argument (max_side, start, ...)",
    "bad_clip": "any other problem with the clip",
}


class ClipError(ValueError):
    """A clip (frames array, video file or dataset row) cannot be used.

    The message always names the clip (its ``clip_id``, file path or row index) and what was wrong;
    ``reason`` is a short code from :data:`CLIP_ERROR_REASONS` (``"bad_clip"`` when none was given).
    """

    def __init__(self, message: str = "", reason: Optional[str] = None):
        super().__init__(message)
        self.reason = reason if reason in CLIP_ERROR_REASONS else "bad_clip"

    def __reduce__(self):  # keep the reason across processes (Dataset.map with num_proc)
        return (type(self), (str(self), self.reason))


class RunStopped(Exception):
    """Mixed into the errors of a run that stopped for a known reason (not bad input, not a bug): the command
    line answers exit status 1 with one line."""


def _known(error: BaseException) -> Optional[int]:
    if isinstance(error, RunStopped):
        return 1
    if isinstance(error, (ValueError, OSError, ImportError)):
        return 2
    return None


def _known_cause(error: BaseException) -> Optional[BaseException]:
    """``error`` when :func:`_known` knows it; else, for another library's wrapper, the first known error in its
    explicit ``raise ... from`` chain (``datasets``' ``DatasetGenerationError`` from a full disk's ``OSError``).
    Never through mimcl_hub's own errors or a builtin one (``raise RuntimeError(...) from e``): a bug keeps its
    traceback."""
    seen = 0
    while error is not None and seen < 8:
        if _known(error) is not None:
            return error
        if type(error).__module__.split(".")[0] in ("mimcl_hub", "builtins"):
            return None
        error, seen = error.__cause__, seen + 1
    return None


def exit_code(error: BaseException) -> Optional[int]:
    """The exit status of the ``mimcl`` command and the recipes for ``error``: 1 for a :class:`RunStopped`, 2 for
    bad input (``ValueError``, ``OSError``, ``ImportError`` of a missing optional package) — also when another
    library wrapped one of those (``raise Wrapper(...) from OSError(...)``) —, None for anything else (a bug, whose
    traceback is shown)."""
    known = _known_cause(error)
    return None if known is None else _known(known)


def failure_message(error: BaseException) -> str:
    """The one line the command line prints for a known ``error`` (see :func:`exit_code`): its message, followed by
    the wrapped cause's when a library wrapped it (its own message alone says nothing: "An error occurred while
    generating the dataset")."""
    known = _known_cause(error)
    if known is None or known is error:
        return str(error)
    return f"{error} ({type(known).__name__}: {known})"
