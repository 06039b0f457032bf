"""The dataset card (``README.md``) of a mined dataset: ``huggingface_hub.DatasetCardData`` YAML plus a text saying
where the clips came from, how they were mined, what failed and why, and how to load the folder.

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
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import datasets

from .._markdown import md_cell, md_code
from ..errors import CLIP_ERROR_REASONS
from .sources import _printable

__all__ = ["CARD_NAME", "VIDEO_PATHS", "REPORT_FIELDS", "mined_dataset_card", "read_mined_card"]

#: File name of the card inside the dataset folder (the Hub's dataset card).
CARD_NAME = "README.md"
#: How the ``video`` column of a mined dataset stores paths: absolute (``mimcl_hub.data.sources``), so the folder
#: trains from any working directory on the machine that holds the videos.
VIDEO_PATHS = "absolute"
#: The ``mining_report`` counts the card's YAML records (the per-row messages go to the text only).
REPORT_FIELDS = ("clips", "mined", "failed", "failed_by_reason", "bad_files", "patches", "valid_patches", "twins")
#: Failed rows listed one by one in the card's text.
_LISTED_ROWS = 100


def _source_path(source: str) -> Optional[str]:
    """The absolute path of a local SOURCE (``..`` and links resolved), None for ``bundled``, ``scenes:N`` or a Hub
    id that is not a local path."""
    path = os.path.expanduser(source)
    return _printable(os.path.realpath(path)) if os.path.exists(path) else None


def mined_dataset_card(mined: datasets.Dataset, source: Union[str, os.PathLike], report: Mapping[str, Any],
                       clip_options: Optional[Mapping[str, Any]] = None):
    """The ``huggingface_hub.DatasetCard`` of a mined dataset.

    Args:
        mined: the mined dataset (its ``clip_id`` / ``mine_error`` / ``mine_reason`` name the failed rows).
        source: SOURCE as given to ``mimcl mine`` (a path is also recorded absolute, ``source_path``).
        report: ``mining_report(mined)``.
        clip_options: how the source was cut into clips (``window``, ``limit``, ``split``, ...), recorded as given.

    The YAML is described in the module docstring; the text repeats it for people: source, ``video`` paths
    (absolute), clip and twin options, the report, failed rows by reason (with each code's meaning) and the first
    ``_LISTED_ROWS`` failed rows with their messages, and how to load and train on the folder.
    """
    from huggingface_hub import DatasetCard, DatasetCardData

    from .. import __version__

    source = _printable(os.fsdecode(source))
    source_path = _source_path(source)
    counts = {key: report[key] for key in REPORT_FIELDS if key in report}
    data = DatasetCardData(
        pretty_name=f"mimcl_hub twin patches mined from {source}",
        tags=["mimcl_hub", "infoaug", "twin-patches", "video", "contrastive-learning"],
        mimcl_mine={
            "source": source,
            "source_path": source_path,
            "video_paths": VIDEO_PATHS,
            "clip_options": dict(clip_options or {}),
            "twin_options": list(report.get("twin_options", [])),
            "report": counts,
            "mimcl_hub_version": __version__,
        },
    )
    text = _card_text(mined, source, source_path, report, dict(clip_options or {}))
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n{text}")


def _card_text(mined: datasets.Dataset, source: str, source_path: Optional[str], report: Mapping[str, Any],
               clip_options: dict) -> str:
    lines = [
        f"# Twin patches mined from {md_code(source)}",
        "",
        "Written by `mimcl mine` ([mimcl_hub](https://arxiv.org/abs/2511.00028): mutual-information-guided "
        "contrastive learning, InfoAug). One row per clip window: the clip is described lazily (`video`, `start`, "
        "`num_frames`), the twin columns (`twin_boxes`, `twin`, `twin_mi`, `twin_valid`, `twin_tracks`, ...) hold "
        "the mined twin patches, `twin_options` how each row was mined, `mine_error` / `mine_reason` why a row "
        "could not be mined (empty when it was).",
        "",
        "## Source",
        "",
        f"- SOURCE: {md_code(source)}" + (f" (absolute path {md_code(source_path)})" if source_path else ""),
    ]
    lines += [f"- {md_cell(key)}: {md_code(value)}" for key, value in clip_options.items()]
    lines += [
        "",
        "## Video paths",
        "",
        f"The `video` column holds **{VIDEO_PATHS}** paths of the video files (YAML `mimcl_mine.video_paths`), so "
        "the folder loads and trains from any working directory on the machine that holds the videos. Frames are "
        "not stored: training decodes each window from its file. Mine again after moving the videos.",
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
        errors = report.get("errors") or {}
        reasons = mined["mine_reason"] if "mine_reason" in mined.column_names else [""] * len(mined)
        ids = mined["clip_id"] if "clip_id" in mined.column_names else [""] * len(mined)
        for row in list(errors)[:_LISTED_ROWS]:
            i = int(row)
            lines.append(f"| {i} | {md_cell(ids[i])} | {md_cell(reasons[i] or 'bad_clip')} | {md_cell(errors[row])} |")
        if len(errors) > _LISTED_ROWS:
            lines.append(f"\n... and {len(errors) - _LISTED_ROWS} more: `datasets.load_from_disk(DIR).filter(lambda r: "
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
    lines += [
        "",
        "## Use",
        "",
        "```python",
        "import datasets",
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
