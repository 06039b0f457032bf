"""The Hub-style Parquet folder ``mimcl mine`` writes: its layout, its run state, whether it is complete, its card.

Layout of a mine output folder DIR (``datasets.load_dataset(DIR, split="train")`` reads it: the shard names make them
the ``train`` split, and ``datasets`` ignores hidden names)::

    DIR/README.md                                  the dataset card (``parquet_dataset_card``), written last
    DIR/data/train-00000-of-00004.parquet          shard 0 of K = 4 (the Hub's naming, :func:`shard_file`)
    DIR/.mimcl/mine.json                           the run state: what defines this mine (:func:`read_run_state`)
    DIR/.mimcl/shards/train-00000-of-00004.json    the record of each finished shard
    DIR/.mimcl/clips/                              the clip list of a source cut from video files (save_to_disk)
    DIR/.mimcl/cache/                              Arrow files of the shards being mined (deleted after each)

``mine.json`` holds ``format``, ``source``, ``source_path``, ``streaming``, ``clip_options``, ``twin_options`` (the
``TwinOptions`` fields and ``max_side``), ``crop_options``, ``num_shards``, ``num_clips`` and ``clips_digest``
(sha256 of the clip ids; None with ``--streaming``). A shard record holds ``index``, ``num_shards``, ``file``,
``rows``, ``bytes``, ``schema`` (sha256 of the Parquet schema), ``seconds``, ``first_row`` (None with
``--streaming``), ``report`` (``mining_report`` of the shard without ``errors``) and ``failed`` (``[row in the
shard, clip_id, reason, message]`` per failed row).

A shard counts as mined only when its file is in ``data/`` *and* matches its record (size, a readable Parquet
footer, row count, schema): the writer records it before the atomic rename that puts the file there
(:mod:`mimcl_hub.data.shards`), so a kill never leaves a half shard that counts, and a file that does not match
is an error naming it (:func:`finished_shard`), never counted and never deleted.

- :func:`finish_folder` — once every shard is done, the dataset card (idempotent: the same card whoever writes it).
- :func:`mined_folder_problem` / :func:`is_mined_folder` — is DIR a complete mine (from the card alone, so a copy
  downloaded from the Hub without the hidden run state is checked too)? :func:`load_mined_folder` loads one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Optional, Union

import datasets

from .._atomic import atomic_write_text
from ..errors import ClipError
from .dataset_card import CARD_NAME, LAYOUT_PARQUET, parquet_dataset_card, read_mined_card

__all__ = ["DATA_DIR", "STATE_DIR", "RUN_FILE", "FORMAT", "MinedFolderError", "shard_name", "shard_file",
           "state_path", "record_path", "read_run_state", "read_json", "clips_digest", "run_state_differences",
           "schema_digest", "finished_shard",
           "remove_folder", "finish_folder", "mined_folder_problem", "is_mined_folder", "load_mined_folder"]

#: Folder of the shards, and the hidden folder of the run state (``datasets`` ignores hidden names).
DATA_DIR = "data"
STATE_DIR = ".mimcl"
#: The run state file inside ``STATE_DIR``.
RUN_FILE = "mine.json"
#: Version of the run state / folder layout.
FORMAT = 1


class MinedFolderError(ValueError):
    """A mine output folder that cannot be used as it is: another mine's settings, a corrupt or foreign shard file,
    a missing record. The message names the folder / file and what to do; nothing is deleted."""


def shard_name(index: int, num_shards: int) -> str:
    """``train-00001-of-00004``: the stem of shard ``index`` of ``num_shards``."""
    return f"train-{index:05d}-of-{num_shards:05d}"


def shard_file(index: int, num_shards: int) -> str:
    """The path of shard ``index`` of ``num_shards`` inside the folder: ``data/train-00001-of-00004.parquet``."""
    return f"{DATA_DIR}/{shard_name(index, num_shards)}.parquet"


def state_path(output: Path, *parts: str) -> Path:
    """A path inside the hidden run-state folder ``output/.mimcl``."""
    return Path(output).joinpath(STATE_DIR, *parts)


def record_path(output: Path, index: int, num_shards: int) -> Path:
    """``output/.mimcl/shards/train-00001-of-00004.json``: the record of a finished shard."""
    return state_path(output, "shards", shard_name(index, num_shards) + ".json")


def read_json(path: Path, what: str) -> dict:
    """A JSON object written by ``mimcl mine`` (``what`` names it in errors: ``MinedFolderError``)."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise MinedFolderError(f"{path}: the {what} cannot be read ({type(e).__name__}: {e}); it was written by "
                               "`mimcl mine` and should not be edited — rerun with --overwrite (or a new --output) "
                               "to mine again") from e
    if not isinstance(value, dict):
        raise MinedFolderError(f"{path}: the {what} is not a JSON object; rerun with --overwrite to mine again")
    return value


def read_run_state(output: Union[str, os.PathLike]) -> Optional[dict]:
    """The run state (``DIR/.mimcl/mine.json``, see the module docstring) of a mine output folder, None when
    ``output`` holds none. ``MinedFolderError`` for an unreadable one."""
    path = state_path(Path(output), RUN_FILE)
    if not path.is_file():
        return None
    return read_json(path, "run state")


#: Option names -> the ``mimcl mine`` flag that sets them (for "what differs" messages); else ``--name``.
_FLAGS = {"compensate_camera": "--no_camera_compensation", "source": "SOURCE"}


def clips_digest(clips: datasets.Dataset) -> Optional[str]:
    """sha256 of the ``clip_id`` column (None without one): the run state's ``clips_digest``."""
    if "clip_id" not in clips.column_names:
        return None
    digest = hashlib.sha256()
    for batch in clips.select_columns(["clip_id"]).iter(batch_size=4096):
        digest.update("\n".join(str(c) for c in batch["clip_id"]).encode() + b"\n")
    return digest.hexdigest()


def _flag(key: str) -> str:
    return _FLAGS.get(key, f"--{key}")


def run_state_differences(state: dict, spec: dict) -> list[str]:
    """``--flag A (this run: B)`` for each setting of ``spec`` (``source``, ``source_path``, ``streaming``,
    ``clip_options``, ``twin_options``, ``crop_options``) that the run state ``state`` recorded otherwise."""
    out = []
    if state.get("format") != FORMAT:
        out.append(f"folder format {state.get('format')} (this version writes {FORMAT})")
    theirs, ours = state.get("source_path") or state.get("source"), spec["source_path"] or spec["source"]
    if theirs != ours:
        out.append(f"SOURCE {state.get('source')!r} (this run: {spec['source']!r})")
    if bool(state.get("streaming")) != spec["streaming"]:
        out.append(f"--streaming {'on' if state.get('streaming') else 'off'} (this run: "
                   f"{'on' if spec['streaming'] else 'off'})")
    for group in ("clip_options", "twin_options", "crop_options"):
        recorded, given = state.get(group) or {}, spec[group]
        for key in sorted(set(recorded) | set(given)):
            if recorded.get(key) != given.get(key):
                out.append(f"{_flag(key)} {recorded.get(key)!r} (this run: {given.get(key)!r})")
    return out


def schema_digest(schema) -> str:
    """sha256 of a ``pyarrow`` schema without its metadata (what a shard record keeps)."""
    return hashlib.sha256(str(schema.remove_metadata()).encode()).hexdigest()


def _corrupt(output: Path, index: int, num_shards: int, why: str) -> MinedFolderError:
    path = output / shard_file(index, num_shards)
    record = record_path(output, index, num_shards)
    return MinedFolderError(
        f"{path}: {why}; it does not count as mined. Move it (and {record}) away and rerun the same command to mine "
        "that shard again (the other shards are kept), or rerun with --overwrite to mine everything again")


def finished_shard(output: Path, index: int, num_shards: int, schema: Optional[str] = None) -> Optional[dict]:
    """The record of shard ``index`` when its file is in ``data/`` and matches the record (size, Parquet footer,
    rows, schema; and ``schema``, a :func:`schema_digest`, when given); None when the shard is not done.
    ``MinedFolderError`` naming the file when it is there but does not match (corrupt, truncated, replaced, or a
    file this mine did not write)."""
    import pyarrow.parquet as pq

    path = output / shard_file(index, num_shards)
    if not path.is_file():
        return None
    recorded = record_path(output, index, num_shards)
    if not recorded.is_file():
        raise _corrupt(output, index, num_shards, f"this mine has no record of it ({recorded} is missing): it was "
                                                  "not written by this mine")
    record = read_json(recorded, "shard record")
    size = path.stat().st_size
    if size != record.get("bytes"):
        raise _corrupt(output, index, num_shards, f"it has {size} bytes, the run state recorded {record.get('bytes')} "
                                                  "(truncated or replaced)")
    try:
        meta = pq.read_metadata(path)
        digest = schema_digest(pq.read_schema(path))
    except Exception as e:   # not Parquet, a broken footer
        raise _corrupt(output, index, num_shards, f"not readable as Parquet ({type(e).__name__}: {e})") from e
    if meta.num_rows != record.get("rows"):
        raise _corrupt(output, index, num_shards, f"it has {meta.num_rows} rows, the run state recorded "
                                                  f"{record.get('rows')}")
    if digest != record.get("schema") or (schema is not None and digest != schema):
        raise _corrupt(output, index, num_shards, "its columns differ from the ones this mine writes")
    return record


def remove_folder(output: Path) -> None:
    """Delete a folder (``--overwrite``; a mine where nothing could be mined): move it aside (one rename), then
    delete it; nothing to do when it is gone already."""
    aside = output.parent / f".old-{output.name}-{os.getpid()}"
    shutil.rmtree(aside, ignore_errors=True)
    try:
        os.replace(output, aside)
    except FileNotFoundError:
        return
    shutil.rmtree(aside, ignore_errors=True)


def _aggregate(records: list[Optional[dict]]) -> tuple[dict, list]:
    """The mining report over the finished shards (in shard order; rows numbered as in the whole folder) and the
    failed rows ``(row, clip_id, reason, message)``."""
    total = {"clips": 0, "mined": 0, "failed": 0, "failed_by_reason": {}, "errors": {}, "bad_files": 0,
             "patches": 0, "valid_patches": 0, "twins": 0, "twin_options": []}
    failed = []
    row = 0
    for record in records:
        if record is None:
            continue
        report = record["report"]
        for key in ("clips", "mined", "failed", "bad_files", "patches", "valid_patches", "twins"):
            total[key] += int(report.get(key, 0))
        for reason, count in report.get("failed_by_reason", {}).items():
            total["failed_by_reason"][reason] = total["failed_by_reason"].get(reason, 0) + int(count)
        for option in report.get("twin_options", []):
            if option not in total["twin_options"]:
                total["twin_options"].append(option)
        for local, clip_id, reason, message in record.get("failed", []):
            total["errors"][row + int(local)] = message
            failed.append((row + int(local), clip_id, reason, message))
        row += int(record["rows"])
    total["failed_by_reason"] = dict(sorted(total["failed_by_reason"].items(), key=lambda kv: (-kv[1], kv[0])))
    return total, failed


def finish_folder(output: Union[str, os.PathLike]) -> dict:
    """Check every shard of the mine in ``output`` and, when all are done, write its dataset card (``README.md``,
    atomically; the same card whoever writes it, so every process or job that finds the mine complete may).

    Returns the mining report over the shards done so far (rows numbered as in the whole folder) plus ``output``,
    ``num_shards``, ``shards_done``, ``shards_missing`` and ``complete``. Raises ``MinedFolderError`` for a corrupt
    or foreign shard file (naming it; nothing is deleted) and ``ClipError`` when the mine is complete but not one clip
    could be mined (the folder is then removed: it holds nothing usable)."""
    output = Path(output).absolute()
    state = read_run_state(output)
    if state is None:
        raise MinedFolderError(f"{output}: not a mimcl mine output folder (no {STATE_DIR}/{RUN_FILE})")
    num_shards = int(state["num_shards"])
    expected = {Path(shard_file(i, num_shards)).name for i in range(num_shards)}
    strays = sorted(p.name for p in (output / DATA_DIR).glob("*.parquet") if p.name not in expected)
    if strays:
        raise MinedFolderError(f"{output / DATA_DIR} holds Parquet files that are not shards of this mine of "
                               f"{num_shards} shards: {', '.join(strays[:5])}; move them away (load_dataset would read "
                               "them as rows of this dataset)")
    records: list[Optional[dict]] = []
    digest = None
    for index in range(num_shards):
        record = finished_shard(output, index, num_shards, digest)
        digest = digest or (record or {}).get("schema")
        records.append(record)
    report, failed = _aggregate(records)
    done = [i for i, r in enumerate(records) if r is not None]
    missing = [i for i, r in enumerate(records) if r is None]
    report.update(output=str(output), num_shards=num_shards, shards_done=len(done), shards_missing=missing,
                  complete=not missing)
    if missing:
        return report
    if report["mined"] == 0:
        reasons = ", ".join(f"{reason} {count}" for reason, count in report["failed_by_reason"].items())
        first = "; ".join(f"row {row}: {message} [{reason}]" for row, _, reason, message in failed[:8])
        remove_folder(output)
        raise ClipError(" ".join(f"none of the {report['clips']} clips could be mined ({reasons or 'no clips'}): "
                                 f"{first}; nothing was written to {output}".split()),
                        reason=next(iter(report["failed_by_reason"]), "too_few_frames"))
    card = parquet_dataset_card(state["source"], report, failed, clip_options=state.get("clip_options"),
                                crop_options=state.get("crop_options"),
                                shard_rows=[r["rows"] for r in records], shard_bytes=[r["bytes"] for r in records],
                                streaming=bool(state.get("streaming")), source_path=state.get("source_path"))
    text = str(card)
    path = output / CARD_NAME
    if not path.is_file() or path.read_text() != text:
        atomic_write_text(path, text)
    return report


def mined_folder_problem(path: Union[str, os.PathLike]) -> Optional[str]:
    """None when ``path`` is a complete Hub-style Parquet folder written by ``mimcl mine`` (a card with the Parquet
    ``mimcl_mine`` block, exactly its ``num_shards`` shard files in ``data/``, each with the size and row count
    the card records and a readable Parquet footer); else one sentence saying what is wrong: not a folder, no card
    (with the shards still missing when a mine is under way), a card of another kind (e.g. a ``save_to_disk``
    folder: load it with ``datasets.load_from_disk``), shards missing (named), extra shard files (a shard count
    mismatch), a shard of another size or row count or not readable. Reads only file sizes and Parquet footers;
    works on a copy downloaded from the Hub (the hidden run state is not needed)."""
    import pyarrow.parquet as pq

    folder = Path(path)
    if not folder.is_dir():
        return f"{folder}: not a folder"
    if not (folder / CARD_NAME).is_file():
        try:
            state = read_run_state(folder)
        except MinedFolderError as e:
            return str(e)
        if state is not None:
            k = int(state.get("num_shards") or 0)
            missing = [shard_file(i, k) for i in range(k) if not (folder / shard_file(i, k)).is_file()]
            return (f"{folder}: the mine is not finished (no dataset card {CARD_NAME} yet; {len(missing)} of {k} "
                    f"shards missing: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}); rerun the same "
                    "`mimcl mine` command to finish it")
        return f"{folder}: no dataset card {CARD_NAME}: not a folder written by `mimcl mine`"
    try:
        block = read_mined_card(folder)
    except (OSError, ValueError) as e:
        return f"{folder}: {e}"
    if block.get("layout") != LAYOUT_PARQUET:
        from .resolve import is_saved_dataset

        if is_saved_dataset(folder):
            return (f"{folder}: a mined dataset saved with save_to_disk (not the Parquet layout); load it with "
                    "datasets.load_from_disk")
        return f"{folder}: its card's mimcl_mine block has no Parquet layout: not a folder written by `mimcl mine`"
    k = block.get("num_shards")
    rows, sizes = block.get("shard_rows") or [], block.get("shard_bytes") or []
    if not isinstance(k, int) or k < 1 or len(rows) != k or len(sizes) != k:
        return f"{folder}: its card records {k!r} shards with {len(rows)} row counts and {len(sizes)} sizes"
    expected = [shard_file(i, k) for i in range(k)]
    present = {f"{DATA_DIR}/{p.name}" for p in (folder / DATA_DIR).glob("*.parquet")} \
        if (folder / DATA_DIR).is_dir() else set()
    missing = [name for name in expected if name not in present]
    if missing:
        return (f"{folder}: {len(missing)} of the {k} shards the card lists are missing: "
                f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    extra = sorted(present - set(expected))
    if extra:
        return (f"{folder}: shard count mismatch: the card lists {k} shards, {DATA_DIR}/ also holds "
                f"{', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''}")
    for name, count, size in zip(expected, rows, sizes):
        file = folder / name
        if file.stat().st_size != size:
            return f"{file}: {file.stat().st_size} bytes, the card records {size} (truncated or replaced)"
        try:
            found = pq.read_metadata(file).num_rows
        except Exception as e:
            return f"{file}: not readable as Parquet ({type(e).__name__}: {e})"
        if found != count:
            return f"{file}: {found} rows, the card records {count}"
    return None


def is_mined_folder(path: Union[str, os.PathLike]) -> bool:
    """True when ``path`` is a complete Parquet folder written by ``mimcl mine`` (:func:`mined_folder_problem`)."""
    return mined_folder_problem(path) is None


def load_mined_folder(path: Union[str, os.PathLike], streaming: bool = False):
    """``datasets.load_dataset(path, split="train", streaming=streaming)`` of a complete mine folder;
    ``MinedFolderError`` with :func:`mined_folder_problem`'s sentence otherwise."""
    problem = mined_folder_problem(path)
    if problem is not None:
        raise MinedFolderError(problem)
    return datasets.load_dataset(os.fspath(path), split="train", streaming=streaming)

