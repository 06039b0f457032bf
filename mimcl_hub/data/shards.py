"""Sharded, resumable, distributed mining into a Hub-style Parquet dataset folder: what ``mimcl mine`` runs.

The clip dataset is cut into K shards with ``datasets.distributed.split_dataset_by_node(clips, rank=i,
world_size=K)`` (contiguous for a map-style dataset, so consecutive windows of one video stay together; every K-th
example or a group of source files for an ``IterableDataset``). Each shard is mined with ``mine_dataset`` (or
``IterableDataset.map(mine_twin_patches)`` with ``--streaming``) and written as one Parquet file, atomically (the
folder's layout and run state: :mod:`mimcl_hub.data.mined_folder`). K does not depend on how many processes mine
(default ``ceil(clips / CLIPS_PER_SHARD)``; with ``--streaming`` one shard per source file), so the folder is the
same whoever mined it:

- ``accelerate launch --num_processes N [multi-node flags] -m mimcl_hub.cli mine ...``: process r of N mines
  shards r, r + N, r + 2N, ... (``accelerate.PartialState`` gives r and N; on a GPU each process runs the MI engine
  on its own device). The processes wait for each other only on a ``gloo`` group whose timeout is
  :data:`WAIT_TIMEOUT` (never on the NCCL group, whose default time-out a long imbalanced shard would exceed):
  while the main process prepares the folder (run state, clip list), and when every process has mined its shards;
  then the main process writes the card and prints the report. A local folder of videos is scanned for shot cuts
  by all processes together (``folder_clips(part=...)``, gathered on the main process).
- ``--num_shards K --shard_index I`` (job arrays): one shard, no ``torch.distributed``; the job that finds all K
  shards done writes the card (every job that does writes the same card, atomically).
- Rerunning the same command skips the finished shards and mines the others. A shard is written to a hidden
  temporary file, read back, recorded in the run state, then renamed into ``data/``: a kill never leaves a half
  shard that counts. Another mine's settings in the output folder, a corrupt or foreign shard file: an error
  naming the flag or the file; nothing already mined is deleted.

The clip list of a source cut from video files is kept in the run state (``.mimcl/clips``), so resuming and the
other processes do not scan the videos again; the other sources are opened again and checked against the recorded
clip count and clip-id digest.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Union

import datasets

from .._atomic import atomic_file, atomic_write_text, exclusive_folder
from .._safety import check_number
from ..errors import ClipError
from .crops import DEFAULT_CROP_CONTEXT, DEFAULT_CROP_FRAMES, DEFAULT_CROP_SIZE, check_crop_options
from .dataset_card import local_source_path
from .mine_processes import (WAIT_TIMEOUT, CtrlC, mine_processes, mining_device, scan_folder_together,
                             threads_per_worker)
from .mined_folder import (DATA_DIR, FORMAT, RUN_FILE, MinedFolderError, clips_digest, finish_folder,
                           finished_shard, read_run_state, record_path, remove_folder, run_state_differences,
                           schema_digest, shard_file, shard_name, state_path)
from .clip_stream import open_streaming_clips

logger = logging.getLogger(__name__)

__all__ = ["CLIPS_PER_SHARD", "WAIT_TIMEOUT", "default_num_shards", "mine_folder"]

#: Clips per shard when ``num_shards`` is not given: K = ceil(clips / CLIPS_PER_SHARD).
CLIPS_PER_SHARD = 64
#: Columns read back from a written shard for its report.
_REPORT_COLUMNS = ("clip_id", "mine_error", "mine_reason", "twin_valid", "twin", "twin_options", "scan_error")


def default_num_shards(num_clips: int) -> int:
    """``ceil(num_clips / CLIPS_PER_SHARD)`` (at least 1): the shard count when ``num_shards`` is not given."""
    return max(1, math.ceil(num_clips / CLIPS_PER_SHARD))


# ----------------------------------------------------------------------------------------------- the folder


def _is_lazy(clips: datasets.Dataset) -> bool:
    """Clip rows that only point at files (no frames, no bytes): worth keeping in the run state (a rescan decodes
    every video)."""
    return "frames" not in clips.column_names and "video_bytes" not in clips.column_names


def _check_existing(output: Path, spec: dict, num_shards: Optional[int], overwrite: bool) -> None:
    """Before any work: an output that is a file, or a folder that is not a mine (unless ``overwrite``), or a mine
    with other settings (unless ``overwrite``) is refused."""
    from .store import check_output_free

    if os.path.lexists(output) and not output.is_dir():
        check_output_free(output, overwrite)            # "exists and is not a folder"
    if not output.exists() or overwrite:
        return
    state = read_run_state(output)
    if state is None:
        check_output_free(output, overwrite)             # "already exists (pass --overwrite to replace it)"
        return
    _refuse_other_mine(output, state, spec, num_shards)


def _refuse_other_mine(output: Path, state: dict, spec: dict, num_shards: Optional[int]) -> None:
    recorded = state.get("num_shards")
    if num_shards is not None and recorded != num_shards:
        done = len(list((output / DATA_DIR).glob("train-*.parquet"))) if (output / DATA_DIR).is_dir() else 0
        raise MinedFolderError(
            f"{output} already exists and holds {done} of the {recorded} shards of a mine with --num_shards "
            f"{recorded} (this run: --num_shards {num_shards}); rerun with --num_shards {recorded} to resume it, pass "
            "--overwrite to replace it, or choose a new --output (nothing was changed)")
    differ = run_state_differences(state, spec)
    if differ:
        raise MinedFolderError(
            f"{output} already exists and holds a mine with other settings: {'; '.join(differ)}; rerun with the same "
            "settings to resume it, pass --overwrite to replace it, or choose a new --output (nothing was changed)")


def _prepare(output: Path, spec: dict, num_shards: Optional[int], build_clips, streaming: bool,
             created: list) -> tuple:
    """``(clips, run state)`` of this mine: the folder is created (run state, clip list) when it does not exist —
    by exactly one process when several start at once; ``created`` gets ``True`` appended then —, else its run
    state is checked against ``spec`` and the clip list read back (or built again and compared)."""
    state = read_run_state(output)
    clips = None
    if state is None:
        clips = build_clips()
        if not streaming and len(clips) == 0:
            raise ClipError(f"the clip source {spec['source']!r} gave no clips: nothing to mine (nothing was written)",
                            reason="too_few_frames")
        count = None if streaming else len(clips)
        if num_shards is None:
            num_shards = max(1, clips.num_shards) if streaming else default_num_shards(count)
        if count is not None and num_shards > count:
            raise ValueError(f"--num_shards {num_shards} is more than the {count} clips of {spec['source']!r}: every "
                             f"shard needs a clip; use --num_shards {count} or fewer")
        state = {"format": FORMAT, **spec, "num_shards": num_shards, "num_clips": count,
                 "clips_digest": None if streaming else clips_digest(clips)}
        try:
            with _naming_output(output), exclusive_folder(output) as tmp:
                (tmp / DATA_DIR).mkdir()
                state_path(tmp, "shards").mkdir(parents=True)
                if not streaming and _is_lazy(clips):
                    clips.save_to_disk(str(state_path(tmp, "clips")))
                (state_path(tmp, RUN_FILE)).write_text(json.dumps(state, indent=2, sort_keys=True))
            created.append(True)
            logger.info("mining %s clips from %s in %d shards into %s", count if count is not None else "streamed",
                        spec["source"], num_shards, output)
            return clips, state
        except FileExistsError:      # another process created it meanwhile: resume theirs if it is the same mine
            state = read_run_state(output)
            if state is None:
                from .store import check_output_free

                check_output_free(output, False)
                raise
    _refuse_other_mine(output, state, spec, num_shards)
    if not streaming:
        saved = state_path(output, "clips")
        if clips is None and saved.is_dir():
            clips = datasets.load_from_disk(str(saved))
        elif clips is None:
            clips = build_clips()
        if len(clips) != state.get("num_clips") or clips_digest(clips) != state.get("clips_digest"):
            raise MinedFolderError(
                f"{output} holds a mine of {state.get('num_clips')} clips of {spec['source']!r}, but the source now "
                f"gives {len(clips)} clips{' with other clip ids' if len(clips) == state.get('num_clips') else ''}: it "
                "changed since the mine started; pass --overwrite to mine it again, or choose a new --output")
    elif clips is None:
        clips = build_clips()
    logger.info("mining %s clips from %s in %d shards into %s (shards already finished are skipped)",
                state.get("num_clips") if not streaming else "streamed", spec["source"], state["num_shards"], output)
    return clips, state


class _naming_output:
    """Re-raise an ``OSError`` with an errno (a full or read-only disk) from the block as one naming ``output``
    and saying that nothing was written there (the block wrote to a temporary place only)."""

    def __init__(self, output: Path):
        self.output = output

    def __enter__(self):
        return self

    def __exit__(self, kind, error, tb):
        if isinstance(error, OSError) and error.errno and not isinstance(error, FileExistsError):
            raise type(error)(error.errno, f"{error.strerror}: cannot write the dataset to {self.output} (nothing was "
                                           "written)") from error
        return False


def _contiguous_range(count: int, index: int, num_shards: int) -> tuple[int, int]:
    """Rows [start, end) of shard ``index`` of a map-style dataset of ``count`` rows, as ``Dataset.shard(...,
    contiguous=True)`` (``split_dataset_by_node``) cuts it."""
    div, mod = divmod(count, num_shards)
    start = div * index + min(index, mod)
    return start, start + div + (1 if index < mod else 0)


def _shard_report(path: Path, offset: Optional[int]) -> dict:
    """The mining report of one written shard, read back from the file (``mining_report`` of its small columns) plus
    its failed rows ``[row, clip_id, reason, message]`` (``row`` within the shard)."""
    import pyarrow.parquet as pq

    from .mining import mining_report

    names = set(pq.read_schema(path).names)
    table = pq.read_table(path, columns=[c for c in _REPORT_COLUMNS if c in names])
    part = datasets.Dataset(table)
    report = mining_report(part)
    failed = []
    if report["errors"]:
        ids = part["clip_id"] if "clip_id" in part.column_names else [""] * len(part)
        reasons = part["mine_reason"] if "mine_reason" in part.column_names else [""] * len(part)
        failed = [[int(row), ids[row] or "", reasons[row] or "bad_clip", message]
                  for row, message in report["errors"].items()]
    report.pop("errors")
    return {"report": report, "failed": failed, "first_row": offset}


def _write_parquet(mined, features: datasets.Features, path: Path) -> int:
    """Stream ``mined`` (a ``Dataset`` or ``IterableDataset``) into one Parquet file with ``features``' schema (the
    ``huggingface`` metadata included, so ``load_dataset`` restores the ``Image`` columns); row groups of
    ``get_writer_batch_size_from_features`` rows (100 with image columns). Returns the rows written."""
    import pyarrow.parquet as pq
    from datasets.arrow_writer import get_writer_batch_size_from_features
    from datasets.table import table_cast

    schema = features.arrow_schema
    batch = get_writer_batch_size_from_features(features) or 1000
    if isinstance(mined, datasets.IterableDataset):       # examples as the map made them, encoded with ``features``
        tables = (datasets.Dataset.from_dict(examples, features=features).data.table
                  for examples in mined.decode(False).iter(batch_size=batch))
    else:
        tables = mined.with_format("arrow").iter(batch_size=batch)
    rows = 0
    with pq.ParquetWriter(str(path), schema) as writer:
        for table in tables:
            table = table_cast(table, schema)
            writer.write_table(table)
            rows += table.num_rows
        if rows == 0:
            writer.write_table(schema.empty_table())
    return rows


def _remove_stale(output: Path, index: int, num_shards: int) -> None:
    """Temporary shard files and map caches of shard ``index`` left by a killed run (only this process mines it)."""
    name = shard_name(index, num_shards)
    for folder, prefix in ((output / DATA_DIR, f".tmp-{name}.parquet-"), (state_path(output, "cache"), name)):
        if folder.is_dir():
            for path in folder.iterdir():
                if path.name.startswith(prefix):
                    path.unlink(missing_ok=True)


@dataclass
class _MineSettings:
    """What mining one shard needs besides the shard."""

    num_proc: Optional[int]
    batch_size: int
    max_side: Optional[int]
    strict: bool
    crop_size: Optional[int]
    crop_frames: int
    crop_context: float
    device: Optional[str]
    num_threads: Optional[int]
    twin_options: dict


def _mine_shard(output: Path, clips, index: int, num_shards: int, settings: _MineSettings, streaming: bool,
                features: datasets.Features, ctrl_c: CtrlC) -> dict:
    """Mine shard ``index`` and publish it (temporary file -> read back -> record -> rename). Returns its record."""
    import pyarrow.parquet as pq
    from datasets.distributed import split_dataset_by_node

    from .decoding import close_reader, intra_op_threads
    from .mining import mine_dataset, mine_twin_patches

    _remove_stale(output, index, num_shards)
    name = shard_name(index, num_shards)
    shard = split_dataset_by_node(clips, rank=index, world_size=num_shards)
    started = time.perf_counter()
    desc = f"mining shard {index + 1}/{num_shards}"
    crops = dict(crop_size=settings.crop_size, crop_frames=settings.crop_frames,
                 crop_context=settings.crop_context) if settings.crop_size else {}
    cache = state_path(output, "cache")
    cache.mkdir(parents=True, exist_ok=True)
    try:
        if streaming:
            fn_kwargs = dict(max_side=settings.max_side, strict=settings.strict, **crops, **settings.twin_options)
            if settings.device is not None:
                fn_kwargs["device"] = settings.device
            if settings.num_threads is not None:
                fn_kwargs["num_threads"] = settings.num_threads
            mined = shard.map(mine_twin_patches, batched=True, batch_size=settings.batch_size, with_indices=True,
                              fn_kwargs=fn_kwargs, features=features)
            offset = None
        else:
            offset, end = _contiguous_range(len(clips), index, num_shards)
            if len(shard) != end - offset:     # split_dataset_by_node must cut contiguous shards
                raise RuntimeError(f"shard {index} of {num_shards} has {len(shard)} rows, expected {end - offset}")
            logger.info("%s: clips %d..%d", desc, offset, end - 1)
            mined = mine_dataset(shard, num_proc=settings.num_proc, batch_size=settings.batch_size,
                                 max_side=settings.max_side, strict=settings.strict, desc=desc,
                                 num_threads=settings.num_threads, device=settings.device, row_offset=offset,
                                 cache_file_name=str(cache / f"{name}.arrow"), **crops, **settings.twin_options)
        path = output / shard_file(index, num_shards)
        with atomic_file(path) as tmp:
            with intra_op_threads(settings.num_threads if streaming else None):
                try:
                    rows = _write_parquet(mined, features, tmp)
                finally:
                    close_reader()
            record = {"index": index, "num_shards": num_shards, "file": shard_file(index, num_shards), "rows": rows,
                      "bytes": tmp.stat().st_size, "schema": schema_digest(pq.read_schema(tmp)),
                      "seconds": round(time.perf_counter() - started, 3), **_shard_report(tmp, offset)}
            if pq.read_metadata(tmp).num_rows != rows:
                raise OSError(f"{tmp}: the Parquet file written holds {pq.read_metadata(tmp).num_rows} rows, "
                              f"not {rows}")
            ctrl_c.check()                       # a Ctrl-C swallowed while mining: the shard is not published
            atomic_write_text(record_path(output, index, num_shards), json.dumps(record, indent=1, sort_keys=True))
        logger.info("%s: %d rows, %d bytes, %.1f s", desc, rows, record["bytes"], record["seconds"])
        return record
    except ClipError as e:
        if streaming and settings.strict:
            raise ClipError(f"shard {index} of {num_shards} (--streaming): {e}", reason=e.reason) from e
        raise
    finally:
        for path in (cache.iterdir() if cache.is_dir() else []):
            if path.name.startswith(name):
                path.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------- the run


def mine_folder(
    source: str,
    output: Union[str, os.PathLike],
    *,
    window: int = 24,
    video_column: str = "video",
    split: str = "train",
    limit: Optional[int] = None,
    seed: int = 0,
    streaming: bool = False,
    num_shards: Optional[int] = None,
    shard_index: Optional[int] = None,
    overwrite: bool = False,
    num_proc: Optional[int] = None,
    batch_size: int = 4,
    max_side: Optional[int] = 320,
    strict: bool = False,
    crop_size: Optional[int] = DEFAULT_CROP_SIZE,
    crop_frames: int = DEFAULT_CROP_FRAMES,
    crop_context: float = DEFAULT_CROP_CONTEXT,
    device: Optional[str] = None,
    **twin_options,
) -> dict:
    """Mine ``source`` into the Hub-style Parquet folder ``output`` (see the module docstring): what ``mimcl mine``
    runs, in every process of an ``accelerate launch`` or in one job of an array.

    Args:
        source, window, video_column, split, limit, seed: the clip source and how it is cut
            (``load_clip_source``; with ``streaming``, :func:`open_streaming_clips`).
        output: the folder. A new one is created; an existing mine with the same settings is resumed (its finished
            shards are skipped); anything else is refused unless ``overwrite`` (which replaces it first).
        streaming: read the source as an ``IterableDataset`` (nothing downloaded first).
        num_shards: K (default: the folder's when resuming, else ``ceil(clips / 64)``, with ``streaming`` the
            source's number of files). shard_index: mine only this shard (job arrays; needs ``num_shards``).
        num_proc, batch_size, max_side, strict, crop_size, crop_frames, crop_context, **twin_options: as for
            ``mine_dataset`` (``crop_size`` None or 0: no crop columns).
        device: torch device of the MI engine (default: this process's accelerator under ``accelerate launch`` on
            GPUs, else ``find_twins``' default).

    Returns:
        :func:`finish_folder`'s report (complete or not) plus ``shards_mined`` / ``shards_skipped`` (by this
        process) and ``rank`` / ``processes``. Under several processes only the main one returns the complete
        report (after all shards are done); the others return theirs without waiting for the card.

    Raises:
        ValueError (``MinedFolderError``, ``ClipError``) for bad settings, another mine in ``output``, a corrupt
        shard, a source with no clips; ``FileExistsError`` for an output that is a file or a folder that is not a
        mine. When a run fails before any shard is finished, a folder it created is removed again.
    """
    from ..mi.twins import TwinOptions

    check_number("num_shards", num_shards, 1, None, integer=True, allow_none=True)
    check_number("shard_index", shard_index, 0, None, integer=True, allow_none=True)
    check_number("batch_size", batch_size, 1, None, integer=True)
    check_number("num_proc", num_proc, 1, None, integer=True, allow_none=True)
    options = TwinOptions.from_kwargs(**twin_options)
    crop_size = crop_size or None
    check_crop_options(crop_size, crop_frames, crop_context)
    if streaming and num_proc is not None and num_proc > 1:
        raise ValueError(f"--num_proc {num_proc} does not apply with --streaming (IterableDataset.map runs in this "
                         "process); mine with several processes through accelerate launch --num_processes N instead")
    if shard_index is not None:
        if num_shards is None:
            raise ValueError("--shard_index needs --num_shards (the same K in every job of the array)")
        if shard_index >= num_shards:
            raise ValueError(f"--shard_index {shard_index} is out of range for --num_shards {num_shards} "
                             f"(0..{num_shards - 1})")
        if overwrite:
            raise ValueError("--overwrite with --shard_index would delete the shards of the other jobs; remove the "
                             "output folder once before starting the array instead")
    output = Path(os.path.abspath(os.fspath(output)))
    spec = {
        "source": source, "source_path": local_source_path(source), "streaming": bool(streaming),
        "clip_options": dict(window=window, limit=limit, split=split, video_column=video_column, seed=seed),
        "twin_options": {**asdict(options), "max_side": max_side},
        "crop_options": dict(crop_size=crop_size, crop_frames=crop_frames, crop_context=crop_context),
    }
    procs = mine_processes(shard_index)

    def build_clips():
        if streaming:
            return open_streaming_clips(source, split=split, video_column=video_column, window=window, limit=limit)
        from .resolve import load_clip_source

        return load_clip_source(source, window=window, video_column=video_column, split=split, limit=limit, seed=seed)

    created: list[bool] = []                           # [True] once this process has created the folder
    mined: list[int] = []
    skipped: list[int] = []
    with CtrlC() as ctrl_c:
        try:
            fresh = overwrite or read_run_state(output) is None
            if procs.is_main:
                _check_existing(output, spec, num_shards, overwrite)
                if overwrite and output.exists():
                    remove_folder(output)
            scanned = scan_folder_together(source, window, limit, procs) if fresh and not streaming else None
            if procs.is_main:
                clips, state = _prepare(output, spec, num_shards, build_clips if scanned is None else lambda: scanned,
                                        streaming, created)
            procs.wait()                                   # the folder and its run state exist from here on
            if not procs.is_main:
                clips, state = _prepare(output, spec, None, build_clips, streaming, created)
            num_shards = int(state["num_shards"])
            if not streaming and len(clips) == 0:
                raise ClipError(f"the clip source {source!r} gave no clips: nothing to mine", reason="too_few_frames")
            settings = _MineSettings(num_proc=num_proc, batch_size=batch_size, max_side=max_side, strict=strict,
                                     crop_size=crop_size, crop_frames=crop_frames, crop_context=crop_context,
                                     device=mining_device(device, procs, num_proc),
                                     num_threads=threads_per_worker(procs, num_proc), twin_options=twin_options)
            features = _mined_features(clips, bool(crop_size))
            mine = [shard_index] if shard_index is not None else list(range(procs.rank, num_shards, procs.world))
            for index in mine:
                ctrl_c.check()
                if finished_shard(output, index, num_shards) is not None:
                    logger.info("shard %d/%d (%s) is already mined: skipped", index + 1, num_shards,
                                shard_file(index, num_shards))
                    skipped.append(index)
                    continue
                _mine_shard(output, clips, index, num_shards, settings, streaming, features, ctrl_c)
                mined.append(index)
            logger.info("process %d of %d: mined shards %s, skipped %s (already mined)", procs.rank, procs.world,
                        mined, skipped)
        except BaseException as error:
            _after_failure(output, bool(created), error)
            raise
    procs.wait()                                       # every shard is done (or a process failed and the launch ends)
    if procs.is_main or shard_index is not None:
        report = finish_folder(output)
    else:
        report = {"output": str(output), "num_shards": num_shards, "complete": None}
    report.update(shards_mined=mined, shards_skipped=skipped, rank=procs.rank, processes=procs.world)
    return report


def _mined_features(clips, crops: bool) -> datasets.Features:
    from .mining import mined_features

    features = clips.features
    if features is None:          # an IterableDataset whose features are not known yet
        clips = clips._resolve_features()
        features = clips.features
    return mined_features(features, crops=crops)


def _os_error(error: BaseException) -> Optional[OSError]:
    """The ``OSError`` with an errno behind ``error`` (a library may wrap it), or None."""
    seen = 0
    while error is not None and seen < 8:
        if isinstance(error, OSError) and error.errno:
            return error
        error, seen = error.__cause__ or error.__context__, seen + 1
    return None


def _after_failure(output: Path, created: bool, error: BaseException) -> None:
    """After the folder exists: a failed run leaves no folder it created without a finished shard (``--strict``,
    Ctrl-C, a full disk before the first shard); a folder with finished shards stays for the rerun to resume. A full
    disk is re-raised naming the folder."""
    finished = (output / DATA_DIR).is_dir() and any((output / DATA_DIR).glob("train-*.parquet"))
    existed = output.is_dir()
    removed = False
    if created and not finished and existed:
        shutil.rmtree(output, ignore_errors=True)
        removed = True
    os_error = _os_error(error)
    if existed and os_error is not None and not isinstance(error, (MinedFolderError, FileExistsError)) \
            and "cannot write the dataset to" not in str(os_error):
        kept = "nothing was written" if removed or not output.exists() else \
            "the finished shards are kept: free space and rerun the same command to resume"
        raise type(os_error)(os_error.errno, f"{os_error.strerror}: cannot write the dataset to {output} ({kept})") \
            from error
