"""The dataset card (``README.md``) of a mined dataset: ``huggingface_hub.DatasetCardData`` YAML plus a text saying
where the clips came from, how they were mined, what failed and why, and how to load the folder.

Two layouts: the Hub-style Parquet folder ``mimcl mine`` writes (:func:`parquet_dataset_card`; ``data/*.parquet``
shards, read by ``datasets.load_dataset(DIR, split="train")``, see :mod:`mimcl_hub.data.shards`) and a folder
written by ``save_to_disk`` (:func:`mined_dataset_card`, used by ``save_mined_dataset``; read by
``datasets.load_from_disk``).

The YAML holds one ``mimcl_mine`` block (read it back with ``DatasetCard.load(DIR / "README.md").data.mimcl_mine``
or :func:`read_mined_card`)::

    mimcl_mine:
      source: vids                 # SOURCE as given to `mimcl mine`
      source_path: /data/vids      # its absolute path when SOURCE is a local file or folder, else null
      video_paths: absolute        # the `video` column holds absolute paths (see VIDEO_PATHS)
      clip_options: {window: 24, limit: null, ...}
      twin_options: [{grid: 8, k: 5, ..., max_side: 320}]   # the distinct option sets of the rows
      report: {clips: 7, mined: 4, failed: 3, failed_by_reason: {corrupt_video: 2, too_few_frames: 1},
               bad_files: 3, patches: 256, valid_patches: 40, twins: 31}
      mimcl_hub_version: 0.1.0
      # the Parquet layout adds:
      layout: parquet              # LAYOUT_PARQUET (a save_to_disk card has no layout key)
      crop_options: {crop_size: 64, crop_frames: 3, crop_context: 2.0}   # crop_size null: no crop columns
      window: 24                   # copies of clip_options.window and of the twin options' grid, k, max_side
      grid: 8
      k: 5
      max_side: 320
      streaming: false             # mined with --streaming (shards hold every K-th example / source file)
      num_shards: 4                # data/train-{i:05d}-of-{num_shards:05d}.parquet, i = 0..num_shards-1
      shard_rows: [64, 64, 64, 63] # rows of each shard, in order
      shard_bytes: [...]           # size of each shard file

The Parquet card has no ``configs`` entry on purpose: the shards' names (``data/train-*.parquet``, the Hub's
convention) already make them the ``train`` split, and with a ``configs`` entry ``datasets`` (5.x) keys its cache
of a local folder on the card alone — not on the data files —, so two mine folders with the same name (or one folder
mined again) would load each other's rows from the cache. Without it the cache key includes every shard's path and
modification time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import datasets

from .._markdown import md_cell, md_code
from ..errors import CLIP_ERROR_REASONS
from .sources import _printable

__all__ = ["CARD_NAME", "VIDEO_PATHS", "REPORT_FIELDS", "LAYOUT_PARQUET", "FailedRow",
           "failed_rows", "local_source_path", "mined_dataset_card", "parquet_dataset_card", "read_mined_card"]

#: File name of the card inside the dataset folder (the Hub's dataset card).
CARD_NAME = "README.md"
#: How the ``video`` column of a mined dataset stores paths: absolute (``mimcl_hub.data.sources``), so the folder
#: trains from any working directory on the machine that holds the videos.
VIDEO_PATHS = "absolute"
#: The ``mining_report`` counts the card's YAML records (the per-row messages go to the text only).
REPORT_FIELDS = ("clips", "mined", "failed", "failed_by_reason", "bad_files", "patches", "valid_patches", "twins")
#: ``mimcl_mine.layout`` of a Hub-style Parquet folder written by ``mimcl mine``.
LAYOUT_PARQUET = "parquet"
#: Failed rows listed one by one in the card's text.
_LISTED_ROWS = 100
#: (row, clip_id, reason, message) of a row that could not be mined.
FailedRow = tuple[int, str, str, str]


def local_source_path(source: str) -> Optional[str]:
    """The absolute path of a local SOURCE (``..`` and links resolved), None for ``bundled``, ``scenes:N`` or a Hub
    id that is not a local path."""
    path = os.path.expanduser(source)
    return _printable(os.path.realpath(path)) if os.path.exists(path) else None


def failed_rows(mined: datasets.Dataset, report: Mapping[str, Any], limit: Optional[int] = None) -> list[FailedRow]:
    """The failed rows of ``mined`` (``report["errors"]`` of ``mining_report(mined)``) as
    ``(row, clip_id, reason, message)``, the first ``limit`` (None: all)."""
    errors = report.get("errors") or {}
    rows = [int(row) for row in errors][:limit]
    if not rows:
        return []
    picked = mined.select(rows)
    reasons = picked["mine_reason"] if "mine_reason" in picked.column_names else [""] * len(rows)
    ids = picked["clip_id"] if "clip_id" in picked.column_names else [""] * len(rows)
    by_row = {int(row): message for row, message in errors.items()}
    return [(row, ids[i] or "", reasons[i] or "bad_clip", by_row[row]) for i, row in enumerate(rows)]


def _mine_block(source: str, report: Mapping[str, Any], clip_options: Optional[Mapping[str, Any]],
                source_path: Optional[str] = None) -> dict:
    from .. import __version__

    return {
        "source": source,
        "source_path": local_source_path(source) if source_path is None else source_path,
        "video_paths": VIDEO_PATHS,
        "clip_options": dict(clip_options or {}),
        "twin_options": list(report.get("twin_options", [])),
        "report": {key: report[key] for key in REPORT_FIELDS if key in report},
        "mimcl_hub_version": __version__,
    }


def _card(block: dict, text: str):
    from huggingface_hub import DatasetCard, DatasetCardData

    data = DatasetCardData(
        pretty_name=f"mimcl_hub twin patches mined from {block['source']}",
        tags=["mimcl_hub", "infoaug", "twin-patches", "video", "contrastive-learning"],
        mimcl_mine=block,
    )
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n{text}")


def mined_dataset_card(mined: datasets.Dataset, source: Union[str, os.PathLike], report: Mapping[str, Any],
                       clip_options: Optional[Mapping[str, Any]] = None):
    """The ``huggingface_hub.DatasetCard`` of a mined dataset saved with ``save_to_disk``.

    Args:
        mined: the mined dataset (its ``clip_id`` / ``mine_error`` / ``mine_reason`` name the failed rows).
        source: SOURCE as given to ``mimcl mine`` (a path is also recorded absolute, ``source_path``).
        report: ``mining_report(mined)``.
        clip_options: how the source was cut into clips (``window``, ``limit``, ``split``, ...), recorded as given.

    The YAML is described in the module docstring; the text repeats it for people: source, ``video`` paths
    (absolute), clip and twin options, the report, failed rows by reason (with each code's meaning) and the first
    ``_LISTED_ROWS`` failed rows with their messages, and how to load and train on the folder.
    """
    source = _printable(os.fsdecode(source))
    block = _mine_block(source, report, clip_options)
    text = _card_text(block, report, failed_rows(mined, report, _LISTED_ROWS))
    return _card(block, text)


def parquet_dataset_card(source: Union[str, os.PathLike], report: Mapping[str, Any],
                         failed: Sequence[FailedRow], clip_options: Optional[Mapping[str, Any]] = None,
                         crop_options: Optional[Mapping[str, Any]] = None, shard_rows: Sequence[int] = (),
                         shard_bytes: Sequence[int] = (), streaming: bool = False,
                         source_path: Optional[str] = None):
    """The ``huggingface_hub.DatasetCard`` of a Hub-style Parquet folder written by ``mimcl mine``
    (:mod:`mimcl_hub.data.shards`): the YAML of :func:`mined_dataset_card` plus the Parquet layout keys (module
    docstring; no ``configs`` entry, see there). ``datasets.load_dataset(DIR, split="train")`` reads the shards.

    Args:
        source, report, clip_options: as for :func:`mined_dataset_card` (``report`` aggregated over the shards, its
            ``errors`` keyed by row of the whole dataset).
        failed: the failed rows to list in the text (``(row, clip_id, reason, message)``; the first
            ``_LISTED_ROWS`` are shown).
        crop_options: ``crop_size`` (None: no crops), ``crop_frames``, ``crop_context``.
        shard_rows, shard_bytes: rows and file size of each shard, in shard order (``num_shards`` = their count).
        streaming: the source was read with ``--streaming``.
        source_path: the absolute path of a local SOURCE as recorded when the mine started (default: resolved now,
            :func:`local_source_path`).
    """
    source = _printable(os.fsdecode(source))
    block = _mine_block(source, report, clip_options, source_path)
    options = (block["twin_options"] or [{}])[0]
    block.update({
        "layout": LAYOUT_PARQUET,
        "crop_options": dict(crop_options or {}),
        "window": block["clip_options"].get("window"),
        "grid": options.get("grid"),
        "k": options.get("k"),
        "max_side": options.get("max_side"),
        "streaming": bool(streaming),
        "num_shards": len(shard_rows),
        "shard_rows": [int(n) for n in shard_rows],
        "shard_bytes": [int(n) for n in shard_bytes],
    })
    text = _card_text(block, report, list(failed)[:_LISTED_ROWS])
    return _card(block, text)


def _card_text(block: Mapping[str, Any], report: Mapping[str, Any], failed: Sequence[FailedRow]) -> str:
    source, source_path = block["source"], block["source_path"]
    clip_options = block["clip_options"]
    parquet = block.get("layout") == LAYOUT_PARQUET
    crops = parquet and bool((block.get("crop_options") or {}).get("crop_size"))
    lines = [
        f"# Twin patches mined from {md_code(source)}",
        "",
        "Written by `mimcl mine` ([mimcl_hub](https://arxiv.org/abs/2511.00028): mutual-information-guided "
        "contrastive learning, InfoAug). One row per clip window: the clip is described lazily (`video`, `start`, "
        "`num_frames`), the twin columns (`twin_boxes`, `twin`, `twin_mi`, `twin_valid`, `twin_tracks`, ...) hold "
        "the mined twin patches, `twin_options` how each row was mined, `mine_error` / `mine_reason` why a row "
        "could not be mined (empty when it was).",
        "",
    ]
    if parquet:
        crop = block["crop_options"]
        lines += [
            "## Files",
            "",
            f"{block['num_shards']} Parquet shards `data/train-XXXXX-of-{block['num_shards']:05d}.parquet` "
            f"({sum(block['shard_rows'])} rows; YAML `mimcl_mine.shard_rows` / `shard_bytes`), the `train` split "
            "by their names" + (", mined with `--streaming`" if block.get("streaming") else "") + ".",
            "",
        ]
        if crops:
            lines += [
                f"Patch crops (`crop_image` and the other `crop_*` columns): every valid patch at up to "
                f"{crop.get('crop_frames')} frames, a window of {crop.get('crop_context')} x the patch side resized "
                f"to {crop.get('crop_size')} px (JPEG), so training reads twin pairs without decoding any video.",
                "",
            ]
    lines += [
        "## Source",
        "",
        f"- SOURCE: {md_code(source)}" + (f" (absolute path {md_code(source_path)})" if source_path else ""),
    ]
    lines += [f"- {md_cell(key)}: {md_code(value)}" for key, value in clip_options.items()]
    frames_note = ("The crop columns hold what training needs; the `video` windows are decoded only to train on "
                   "whole clips (`--video_dataset`)." if crops else
                   "Frames are not stored: training decodes each window from its file.")
    lines += [
        "",
        "## Video paths",
        "",
        f"The `video` column holds **{VIDEO_PATHS}** paths of the video files (YAML `mimcl_mine.video_paths`), so "
        f"the folder loads and trains from any working directory on the machine that holds the videos. {frames_note} "
        "Mine again after moving the videos.",
        "",
        "## Mining report",
        "",
        "| clips | mined | failed | files without a clip | patches | valid patches | twins |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        "| " + " | ".join(str(report.get(key, "")) for key in ("clips", "mined", "failed", "bad_files", "patches",
                                                              "valid_patches", "twins")) + " |",
        "",
    ]
    by_reason = report.get("failed_by_reason") or {}
    if by_reason:
        lines += ["### Failed rows by reason", "", "| reason | rows | meaning |", "|---|---:|---|"]
        lines += [f"| {md_cell(reason)} | {count} | {md_cell(CLIP_ERROR_REASONS.get(reason, 'not a ClipError'))} |"
                  for reason, count in by_reason.items()]
        lines += ["", "### Failed rows", "", "| row | clip | reason | error |", "|---:|---|---|---|"]
        for row, clip_id, reason, message in failed[:_LISTED_ROWS]:
            lines.append(f"| {row} | {md_cell(clip_id)} | {md_cell(reason or 'bad_clip')} | {md_cell(message)} |")
        total = report.get("failed", len(failed))
        if total > _LISTED_ROWS:
            loader = ('datasets.load_dataset(DIR, split="train")' if parquet else "datasets.load_from_disk(DIR)")
            lines.append(f"\n... and {total - _LISTED_ROWS} more: `{loader}.filter(lambda r: "
                         "r['mine_error'] != '')` lists them all.")
        lines.append("")
    options = report.get("twin_options") or []
    lines += ["## Mining options (`twin_options`)", ""]
    if options:
        keys = sorted({key for option in options for key in option})
        lines += ["| option | " + " | ".join(f"set {k + 1}" for k in range(len(options))) + " |",
                  "|---|" + "---|" * len(options)]
        lines += [f"| {md_cell(key)} | " + " | ".join(md_cell(option.get(key, "")) for option in options) + " |"
                  for key in keys]
    else:
        lines.append("No row was mined, so no option set is recorded.")
    lines += ["", "## Use", "", "```python", "import datasets"]
    if parquet:
        lines += [
            "",
            'mined = datasets.load_dataset("path/to/this/folder", split="train")   # or the Hub id of this repo',
            "```",
            "",
            "Train on it: `mimcl train --twin_dataset path/to/this/folder` (the MI branch), or "
            "`mimcl train --video_dataset path/to/this/folder` (both branches from the clips). "
            "`mimcl_hub.data.mined_folder_problem(path)` says whether a local folder is a complete mine.",
            "",
        ]
    else:
        lines += [
            "from mimcl_hub.data import load_twin_clips",
            "",
            'mined = datasets.load_from_disk("path/to/this/folder")',
            "bank = load_twin_clips(mined)   # decodes the mined clips (rows with a mine_error are skipped)",
            "```",
            "",
            "Train on it: `mimcl train --video_dataset path/to/this/folder`.",
            "",
        ]
    return "\n".join(lines)


def read_mined_card(folder: Union[str, os.PathLike]) -> dict[str, Any]:
    """The ``mimcl_mine`` block of the card of a mined dataset folder (``FileNotFoundError`` without a card,
    ``ValueError`` for a card without the block)."""
    from huggingface_hub import DatasetCard

    path = Path(folder) / CARD_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no dataset card (a folder written by `mimcl mine` has one)")
    block = DatasetCard.load(path).data.to_dict().get("mimcl_mine")
    if not isinstance(block, dict):
        raise ValueError(f"{path}: the card has no mimcl_mine block (not written by `mimcl mine`)")
    return block
