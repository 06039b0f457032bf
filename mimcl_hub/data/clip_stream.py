"""``--streaming``: a clip ``IterableDataset`` from a source that is not downloaded first.

:func:`open_streaming_clips` opens a Hub dataset id or a local folder of data files with
``datasets.load_dataset(..., streaming=True)`` (a single data file and a ``save_to_disk`` folder too). Rows that are
clips are mined as they are; a video column is cut into shot windows video by video while streaming
(``hf_video_clips`` of each row). :mod:`mimcl_hub.data.shards` splits the stream into shards with
``split_dataset_by_node`` and mines each with ``IterableDataset.map(mine_twin_patches)``.
"""

from __future__ import annotations

import os
from typing import Optional

import datasets

from .._safety import check_number, looks_like_hub_id
from ..errors import ClipError

__all__ = ["open_streaming_clips"]

#: Data-file suffixes opened as one file (builder name by suffix).
_DATA_FILES = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".csv": "csv", ".arrow": "arrow"}


def _data_file_builder(path: str) -> Optional[str]:
    lower = path.lower()
    for suffix, builder in _DATA_FILES.items():
        if lower.endswith(suffix) or lower.endswith(suffix + ".gz"):
            return builder
    return None


def _find_video_feature(features: Optional[datasets.Features], video_column: Optional[str]) -> Optional[str]:
    if not features:
        return None
    if video_column and video_column in features:
        feature = features[video_column]
        if isinstance(feature, datasets.Video) or (isinstance(feature, datasets.Value)
                                                   and feature.dtype in ("string", "large_string")):
            return video_column
    for name, feature in features.items():
        if isinstance(feature, datasets.Video):
            return name
    return None


def _window_streamed_videos(batch: dict, *, video_column: str, feature, window: int) -> dict:
    """Batched map over streamed video rows: each video -> its shot windows (``hf_video_clips`` of a one-row
    dataset), clip ids named by the video's path; a video without a window is one row with its reason."""
    from .sources import HF_CLIP_FEATURES, hf_video_clips

    out: dict[str, list] = {name: [] for name in HF_CLIP_FEATURES}
    for value in batch[video_column]:
        name = (value.get("path") if isinstance(value, dict) else value) or "video"
        one = datasets.Dataset.from_dict({video_column: [value]}, features=datasets.Features({video_column: feature}))
        try:
            rows = hf_video_clips(one, video_column=video_column, window=window, on_error="mark").to_list()
        except ClipError as e:        # the only video of the batch gives no clip: one marked row
            rows = [{"clip_id": "row0/x@0+0", "video": None, "start": 0, "num_frames": 0, "video_size": None,
                     "scan_error": " ".join(str(e).split()), "scan_reason": e.reason, "video_bytes": None}]
        for row in rows:
            row["clip_id"] = f"{name}@{row['clip_id'].rsplit('@', 1)[-1]}"
            row["source_row"] = None
            for key in out:
                out[key].append(row.get(key))
    return out


def open_streaming_clips(source: str, split: str = "train", video_column: str = "video", window: int = 24,
                         limit: Optional[int] = None) -> datasets.IterableDataset:
    """A clip ``IterableDataset`` for ``--streaming`` (nothing is downloaded first).

    ``source``: a Hub dataset id or a local folder of data files (``datasets.load_dataset(source, split=split,
    streaming=True)``), one data file (Parquet / JSON / CSV / Arrow), or a ``save_to_disk`` folder
    (``to_iterable_dataset``, one shard per Arrow file). Rows that are clips (``frames``, ``video_bytes`` or
    ``video`` + ``start`` + ``num_frames``) are mined as they are; a ``datasets.Video`` column (or ``video_column``
    of paths) is cut into shot windows of ``window`` frames video by video, clip ids named by the video's path.
    ``limit``: the first clips only. Raises ``ValueError`` / ``ClipError`` naming the source or its columns.
    """
    from .resolve import is_saved_dataset

    check_number("window", window, 2, None, integer=True)
    check_number("limit", limit, 1, None, integer=True, allow_none=True)
    path = os.path.expanduser(source)
    label = f"--streaming source {source!r}"
    try:
        if is_saved_dataset(path):
            saved = datasets.load_from_disk(path)
            if isinstance(saved, datasets.DatasetDict):
                if split not in saved:
                    raise ValueError(f"{label}: no split {split!r} (splits: {sorted(saved)})")
                saved = saved[split]
            ids = saved.to_iterable_dataset(num_shards=max(1, len(saved.cache_files)))
        elif os.path.isdir(path):
            ids = datasets.load_dataset(path, split=split, streaming=True)
        elif os.path.isfile(path) and _data_file_builder(path):
            ids = datasets.load_dataset(_data_file_builder(path), data_files=path, split="train", streaming=True)
        elif os.path.exists(path):
            raise ValueError(f"{label}: --streaming reads a Hub dataset id, a folder of data files, a Parquet / JSON / "
                             "CSV / Arrow file or a saved dataset; mine a video file without --streaming")
        elif looks_like_hub_id(source) and source not in ("bundled",) and not source.startswith("scenes"):
            ids = datasets.load_dataset(source, split=split, streaming=True)
        else:
            raise ValueError(f"{label}: --streaming reads a Hub dataset id, a folder of data files or a saved "
                             "dataset ('bundled' and 'scenes:N' are mined without --streaming)")
    except (ValueError, ClipError):
        raise
    except Exception as e:       # no data files, offline, unknown id, no such split ...
        raise ValueError(f"{label}: datasets cannot stream it ({type(e).__name__}: {e})") from e
    if ids.features is None:
        ids = ids._resolve_features()
    columns = set(ids.features or {})
    if not ("frames" in columns or "video_bytes" in columns or {"video", "start", "num_frames"} <= columns):
        column = _find_video_feature(ids.features, video_column)
        if column is None:
            raise ClipError(f"{label}: no clip columns (frames, or video/start/num_frames, or video_bytes) and no "
                            f"video column {video_column!r}; columns are {sorted(columns)} (set --video_column)",
                            reason="missing_column")
        from .sources import HF_CLIP_FEATURES

        feature = ids.features[column]
        if isinstance(feature, datasets.Video):
            feature = datasets.Video(decode=False)
            ids = ids.cast_column(column, feature)
        ids = ids.map(_window_streamed_videos, batched=True, batch_size=1, remove_columns=sorted(columns),
                      features=HF_CLIP_FEATURES, fn_kwargs=dict(video_column=column, feature=feature, window=window))
    if limit is not None:
        ids = ids.take(limit)
    return ids
