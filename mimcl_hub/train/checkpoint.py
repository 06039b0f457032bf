"""Atomic Accelerate checkpoints, rotation, ``latest`` resolution and the output-folder lock.

Layout::

    OUTPUT_DIR/
      .mimcl.lock                      held (fcntl.flock) by the main process of the running job
      checkpoints/
        checkpoint-50/                 complete: Accelerate's save_state + mimcl_checkpoint.json
        checkpoint-100/
        .tmp-checkpoint-150/           being written (never loaded, removed at the next start)

Writing a checkpoint (every process calls :func:`save_checkpoint`):

1. the main process creates ``checkpoints/.tmp-checkpoint-<step>`` (a fixed name, so every rank
   writes into the same folder on a shared file system);
2. ``accelerator.save_state(tmp)``: models (safetensors), optimizer, scheduler, every process's RNG
   state, and the objects registered with ``register_for_checkpointing`` (the :class:`TrainingState`);
3. the main process writes ``mimcl_checkpoint.json`` (step, epoch, world size, key config fields),
   flushes every file to disk (fsync) and renames the folder to ``checkpoint-<step>`` with
   ``os.replace`` — one atomic step; then old checkpoints beyond ``save_total_limit`` are renamed
   to ``.trash-…`` and deleted.

A process killed at any point (SIGKILL included) therefore leaves either a complete
``checkpoint-<step>`` or a ``.tmp-…`` folder that :func:`list_checkpoints` ignores, never a
half-written folder that ``--resume_from_checkpoint latest`` would load. Only folders named
exactly ``checkpoint-<int>`` that contain the marker count as checkpoints.

A checkpoint write that fails (a disk filling up mid-run: ``ENOSPC``) removes its temporary folder and
raises :class:`OutputDirError` naming the newest complete checkpoint. Before a run starts,
:func:`check_output_dir` creates ``output_dir`` and writes + fsyncs + removes a probe file in it, and
:func:`check_free_space` compares ``shutil.disk_usage`` with an estimate of what the run will write
(:func:`checkpoint_bytes` x (save_total_limit + 1) + the encoder folder), so an unwritable or full disk fails
before the first step.

``save_checkpoint(..., before_publish=fn)`` calls ``fn(step)`` after ``save_state`` has written the temporary
folder and before the rename: the training loop passes its :class:`~mimcl_hub.train.faults.FaultPlan` hook there,
which the test suite uses to SIGKILL a run at that moment and prove that ``latest`` never sees a partial checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from .._atomic import fsync_path, fsync_tree
from ..errors import RunStopped

__all__ = [
    "CHECKPOINT_MARKER", "CheckpointError", "OutputDirError", "OutputDirLockedError", "TrainingState",
    "check_free_space", "check_output_dir", "checkpoint_bytes", "checkpoints_dir", "estimate_run_bytes",
    "clean_stale_checkpoints", "delete_checkpoint", "latest_checkpoint", "list_checkpoints", "read_marker", "resolve_checkpoint",
    "rotate_checkpoints", "run_lock", "save_checkpoint",
]

logger = logging.getLogger(__name__)

CHECKPOINT_MARKER = "mimcl_checkpoint.json"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
LOCK_NAME = ".mimcl.lock"


class CheckpointError(ValueError):
    """A checkpoint cannot be found, is incomplete, or does not match the run's configuration."""


class OutputDirLockedError(RuntimeError, RunStopped):
    """Another training run holds the output folder."""


class OutputDirError(OSError, RunStopped):
    """The output folder cannot hold the run: not creatable, not writable, or too little free space.

    Raised by :func:`check_output_dir` / :func:`check_free_space` before any training step."""


@dataclass
class TrainingState:
    """Loop position, saved with every checkpoint (``accelerator.register_for_checkpointing``).

    ``step``: optimizer steps done; ``epoch``: the epoch being iterated; ``batch_in_epoch``: batches
    of that epoch already consumed (the data position ``skip_first_batches`` resumes from).
    """

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0

    def state_dict(self) -> dict[str, int]:
        return asdict(self)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.step = int(state["step"])
        self.epoch = int(state["epoch"])
        self.batch_in_epoch = int(state["batch_in_epoch"])


def check_output_dir(output_dir: str | os.PathLike, probe_bytes: int = 64 * 1024) -> Path:
    """Pre-flight: create ``output_dir`` and write, fsync and remove a probe file in it.

    Catches, before any work, what would otherwise fail at the first checkpoint: a path through a regular
    file, a read-only file system, a full disk (``ENOSPC`` on the probe), a pseudo file system (/proc, /sys).
    Permission bits alone do not stop root, so writing for real is the only reliable test.
    Raises :class:`OutputDirError` naming the folder and the OS error."""
    path = Path(output_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputDirError(f"output_dir {path} cannot be created ({e.strerror or e}); pick another "
                             "--output_dir") from e
    if not path.is_dir():
        raise OutputDirError(f"output_dir {path} is not a folder; pick another --output_dir")
    probe = path / f".mimcl-write-probe-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(b"\0" * probe_bytes)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        raise OutputDirError(f"output_dir {path} is not writable: writing a {probe_bytes}-byte probe file failed "
                             f"({e.strerror or e}); nothing was trained. Free space, fix the mount or pick another "
                             "--output_dir") from e
    finally:
        try:
            os.unlink(probe)
        except OSError:
            pass
    return path


def checkpoint_bytes(modules, optimizer: str = "adamw", momentum: float = 0.9) -> int:
    """Estimate of one checkpoint's size: every module's state dict (weights, buffers, momentum targets) plus
    the optimizer state (AdamW: two fp32 moments per trainable value; SGD / LARS with momentum: one), plus
    64 KiB for the scheduler, RNG states and the marker."""
    state = 0
    trainable = 0
    for module in modules:
        seen = set()
        for tensor in module.state_dict(keep_vars=True).values():
            if tensor.data_ptr() in seen:
                continue
            seen.add(tensor.data_ptr())
            state += tensor.numel() * tensor.element_size()
        trainable += sum(p.numel() for p in module.parameters() if p.requires_grad)
    moments = 2 if optimizer == "adamw" else (1 if momentum else 0)
    return int(state + moments * 4 * trainable + 64 * 1024)


def estimate_run_bytes(config, backbone, objective, output_dir: str | os.PathLike) -> tuple[int, str]:
    """Disk a run still needs, and how it was estimated: a checkpoint x (save_total_limit + 1, the rotation's
    peak) + the encoder folder, less what the checkpoints already in ``output_dir`` occupy (a resumed run reuses
    their room), + 10 %."""
    ckpt = checkpoint_bytes([backbone, objective], config.optimizer, config.momentum)
    if config.save_total_limit is not None:
        count, how = config.save_total_limit + 1, f"save_total_limit + 1 = {config.save_total_limit + 1}"
    elif config.max_steps > 0 and config.save_steps:
        count, how = config.max_steps // config.save_steps + 1, "every checkpoint of the run is kept"
    else:
        count, how = 2, "at least 2"
    encoder = sum(t.numel() * t.element_size() for t in backbone.state_dict().values()) + 1024 * 1024
    if config.save_heads:
        encoder += sum(t.numel() * t.element_size() for t in objective.state_dict().values())
    existing = sum(f.stat().st_size for _, p in list_checkpoints(output_dir)[-(count - 1):] for f in p.rglob("*")
                   if f.is_file()) if count > 1 else 0
    need = int(1.1 * max(ckpt + encoder, ckpt * count + encoder - existing))
    mib = 1024 * 1024
    return need, (f"a checkpoint is ~{ckpt / mib:.1f} MiB x {how}, the encoder folder ~{encoder / mib:.1f} MiB"
                  + (f", less {existing / mib:.1f} MiB of checkpoints already there" if existing else "")
                  + ", +10% margin")


def check_free_space(output_dir: str | os.PathLike, needed: int, detail: str = "") -> int:
    """Raise :class:`OutputDirError` when the file system of ``output_dir`` has less than ``needed`` bytes free
    (``shutil.disk_usage``); returns the free bytes."""
    free = shutil.disk_usage(output_dir).free
    if free < needed:
        mib = 1024 * 1024
        raise OutputDirError(f"output_dir {output_dir} has {free / mib:.1f} MiB free, but this run needs about "
                             f"{needed / mib:.1f} MiB{' (' + detail + ')' if detail else ''}; nothing was trained. "
                             "Free space, lower --save_total_limit, or pick another --output_dir")
    return free


def checkpoints_dir(output_dir: str | os.PathLike) -> Path:
    return Path(output_dir) / "checkpoints"


def read_marker(path: str | os.PathLike) -> Optional[dict]:
    """The ``mimcl_checkpoint.json`` of a checkpoint folder, or None if it has none / it is unreadable."""
    try:
        with open(Path(path) / CHECKPOINT_MARKER) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None


def list_checkpoints(output_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete checkpoints ``(step, path)`` in ``output_dir/checkpoints``, oldest first."""
    root = checkpoints_dir(output_dir)
    if not root.is_dir():
        return []
    found = []
    for entry in root.iterdir():
        m = _CHECKPOINT_RE.match(entry.name)
        if m and entry.is_dir() and read_marker(entry) is not None:
            found.append((int(m.group(1)), entry))
    return sorted(found)


def latest_checkpoint(output_dir: str | os.PathLike) -> Optional[Path]:
    found = list_checkpoints(output_dir)
    return found[-1][1] if found else None


def resolve_checkpoint(value: str, output_dir: str | os.PathLike) -> Path:
    """``"latest"`` or a folder → a complete checkpoint folder (raises :class:`CheckpointError`)."""
    if value == "latest":
        path = latest_checkpoint(output_dir)
        if path is None:
            raise CheckpointError(f"--resume_from_checkpoint latest: no complete checkpoint in "
                                  f"{checkpoints_dir(output_dir)} (start without --resume_from_checkpoint)")
        return path
    path = Path(value)
    if not path.is_dir():
        raise CheckpointError(f"--resume_from_checkpoint {value}: no such folder")
    if read_marker(path) is None:
        raise CheckpointError(f"--resume_from_checkpoint {value}: not a complete mimcl_hub checkpoint "
                              f"(no {CHECKPOINT_MARKER}; a checkpoint interrupted while being written is never renamed "
                              "into place, so this folder is partial or foreign)")
    return path


def clean_stale_checkpoints(output_dir: str | os.PathLike) -> list[str]:
    """Remove ``.tmp-*`` / ``.trash-*`` leftovers of killed runs (call on the main process, under the lock)."""
    root = checkpoints_dir(output_dir)
    removed = []
    if root.is_dir():
        for entry in root.iterdir():
            if entry.name.startswith((".tmp-checkpoint-", ".trash-checkpoint-", ".old-checkpoint-")):
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry.name)
    if removed:
        logger.info("removed incomplete checkpoint folders of an interrupted run: %s", ", ".join(sorted(removed)))
    return removed


def rotate_checkpoints(output_dir: str | os.PathLike, limit: Optional[int]) -> list[Path]:
    """Delete the oldest complete checkpoints beyond ``limit`` (renamed away first, then removed)."""
    if limit is None:
        return []
    found = list_checkpoints(output_dir)
    doomed = [p for _, p in found[:max(0, len(found) - limit)]]
    for path in doomed:
        delete_checkpoint(path)
    return doomed


def delete_checkpoint(path: str | os.PathLike) -> None:
    """Remove a checkpoint folder: renamed to ``.trash-…`` first, so a kill mid-delete never leaves a
    half-deleted ``checkpoint-<step>`` that :func:`latest_checkpoint` could pick."""
    path = Path(path)
    trash = path.parent / f".trash-{path.name}"
    shutil.rmtree(trash, ignore_errors=True)
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def _write_error_reason(error: BaseException, folder: Path) -> str:
    """Why a checkpoint write failed, in words. A full disk often reaches us without its errno (torch's zip
    writer raises ``RuntimeError: ... unexpected pos``), so the free space is looked at, not only the type."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    reason = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return reason
    if free < 1024 * 1024:
        return f"No space left on device: {free // 1024} KiB free on the file system of {folder} ({reason})"
    return reason


def save_checkpoint(accelerator, output_dir: str | os.PathLike, state: TrainingState, total_limit: Optional[int] = None,
                    info: Optional[Mapping[str, Any]] = None,
                    before_publish: Optional[Callable[[int], None]] = None) -> Path:
    """Write ``checkpoints/checkpoint-<state.step>`` atomically (see module docstring). All processes call it.

    ``before_publish(step)``, when given, runs after ``save_state`` wrote the temporary folder and before the
    rename that publishes it (a fault-injection point for tests)."""
    root = checkpoints_dir(output_dir)
    final = root / f"checkpoint-{state.step}"
    tmp = root / f".tmp-checkpoint-{state.step}"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    accelerator.wait_for_everyone()
    try:
        accelerator.save_state(str(tmp))
        if before_publish is not None:
            before_publish(state.step)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            marker = {"step": state.step, "epoch": state.epoch, "batch_in_epoch": state.batch_in_epoch,
                      "num_processes": accelerator.num_processes, "time": time.time(), **dict(info or {})}
            with open(tmp / CHECKPOINT_MARKER, "w") as f:
                json.dump(marker, f, indent=2, default=str)
                f.flush()
                os.fsync(f.fileno())
            fsync_tree(tmp)
            if final.exists():          # the same step saved again (e.g. a resumed run): swap it
                old = root / f".old-checkpoint-{state.step}"
                shutil.rmtree(old, ignore_errors=True)
                os.replace(final, old)
                os.replace(tmp, final)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, final)
            fsync_path(root)
    except Exception as e:      # e.g. ENOSPC (OSError, safetensors' SafetensorError, torch's RuntimeError)
        reason = _write_error_reason(e, root)       # while the partial folder still fills the disk
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        raise OutputDirError(f"writing checkpoint {final.name} failed ({reason}); the partial folder was "
                             f"removed, the newest complete checkpoint is {latest_checkpoint(output_dir)} (continue "
                             "with --resume_from_checkpoint latest once the problem is fixed)") from e
    if accelerator.is_main_process:
        rotate_checkpoints(output_dir, total_limit)
        logger.info("saved checkpoint %s", final)
    accelerator.wait_for_everyone()
    return final


class run_lock:
    """Exclusive lock on ``output_dir`` for the duration of a run (``fcntl.flock`` on ``.mimcl.lock``).

    The main process takes the lock; the result is broadcast so every process of a refused run
    raises the same :class:`OutputDirLockedError`. The kernel drops a flock when its holder dies,
    so a SIGKILLed run never leaves a stale lock behind.
    """

    def __init__(self, output_dir: str | os.PathLike, accelerator=None):
        self.output_dir = Path(output_dir)
        self.accelerator = accelerator
        self._fd: Optional[int] = None

    def _is_main(self) -> bool:
        return self.accelerator is None or self.accelerator.is_main_process

    def __enter__(self) -> "run_lock":
        error = None
        if self._is_main():
            error = self._acquire()
        if self.accelerator is not None and self.accelerator.num_processes > 1:
            from accelerate.utils import broadcast_object_list

            box = [error]
            broadcast_object_list(box, from_process=0)
            error = box[0]
        if error:
            raise OutputDirLockedError(error)
        return self

    def _acquire(self) -> Optional[str]:
        import fcntl

        self.output_dir.mkdir(parents=True, exist_ok=True)
        path = self.output_dir / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            finally:
                os.close(fd)
            return (f"output_dir {self.output_dir} is in use by another training run ({holder}); wait for it to "
                    "finish, or pick another --output_dir")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {os.uname().nodename}, since {time.ctime()}\n".encode(), 0)
        self._fd = fd
        return None

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            import fcntl

            try:
                os.ftruncate(self._fd, 0)
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None
