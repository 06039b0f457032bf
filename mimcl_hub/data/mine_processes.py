"""The processes of a mine (:mod:`mimcl_hub.data.shards`): who mines which shards, where the MI engine runs, how the
processes wait for each other, and a Ctrl-C that is never lost.

- :func:`mine_processes` — rank, world and device from ``accelerate.PartialState`` when several processes were
  launched (``accelerate launch``, ``torchrun``), plus a ``gloo`` group whose timeout is :data:`WAIT_TIMEOUT` for
  every wait (never the NCCL group, whose default time-out a long imbalanced shard would exceed); alone otherwise
  and always for a job of an array.
- :func:`scan_folder_together` — the processes scan a folder of videos for shot cuts together.
- :func:`mining_device` / :func:`threads_per_worker` — the MI engine's device and the intra-op threads of a worker.
- :class:`CtrlC` — a Ctrl-C that a library swallowed is raised again before a shard is published.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Optional

import datasets

from ..errors import ClipError

logger = logging.getLogger(__name__)

__all__ = ["WAIT_TIMEOUT", "MineProcesses", "mine_processes", "scan_folder_together", "mining_device",
           "threads_per_worker", "CtrlC"]

#: How long a process waits for the others (the ``gloo`` group's timeout): longer than any shard can take.
WAIT_TIMEOUT = timedelta(days=7)


@dataclass
class MineProcesses:
    """Where this process stands: its rank among ``world`` processes (``local`` of them on this machine), the torch
    device for the MI engine (None: ``find_twins``' default), and the ``gloo`` group to wait on (None alone)."""

    rank: int = 0
    world: int = 1
    local: int = 1
    device: Optional[str] = None
    group: Any = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wait(self) -> None:
        """Wait for every process (a ``gloo`` barrier whose timeout is :data:`WAIT_TIMEOUT`); nothing when alone."""
        if self.group is not None:
            import torch.distributed as dist

            dist.barrier(group=self.group)

    def gather(self, value) -> Optional[list]:
        """Every process's ``value`` (picklable), in rank order, on the main process (None on the others); over the
        ``gloo`` group, so it waits up to :data:`WAIT_TIMEOUT`."""
        if self.group is None:
            return [value]
        import torch.distributed as dist

        gathered = [None] * self.world if self.is_main else None
        dist.gather_object(value, gathered, dst=0, group=self.group)
        return gathered


def mine_processes(shard_index: Optional[int]) -> MineProcesses:
    """This process's place: from ``accelerate.PartialState`` when several processes were launched
    (``accelerate launch``, ``torchrun``: ``WORLD_SIZE`` > 1); else alone, without touching Accelerate's state (a
    library call in a process that trains later must not fix its device), and always alone with ``shard_index``
    (job arrays: no ``torch.distributed``)."""
    launched = int(os.environ.get("WORLD_SIZE", "1") or 1) > 1
    if shard_index is not None and launched:
        raise ValueError("--shard_index is for job arrays (one process per shard); under accelerate launch / "
                         "torchrun leave it out: every process then mines its share of the --num_shards shards")
    if not launched:
        return MineProcesses()
    import torch
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    cpu = parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available()
    state = PartialState(cpu=cpu)
    device = str(state.device) if state.device is not None and state.device.type != "cpu" else None
    group = None
    if state.num_processes > 1:
        import torch.distributed as dist

        group = dist.new_group(backend="gloo", timeout=WAIT_TIMEOUT)
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1) if state.num_processes > 1 else 1
    return MineProcesses(state.process_index, state.num_processes, max(1, local), device, group)


def scan_folder_together(source: str, window: int, limit: Optional[int], procs: MineProcesses) -> Optional[datasets.Dataset]:
    """Under several processes, a local folder of video files is scanned for shot cuts by all of them, each a
    contiguous part of its files (``folder_clips(part=...)``), the parts gathered on the main process in order: the
    clip dataset ``load_clip_source`` gives, in 1/N of the time (scanning decodes every video: a quarter of the
    mining time on the bundled clips). Returns it on the main process; None on the others, and everywhere for any
    other source or a folder none of whose files gives a clip (the main process then opens the source alone, as
    ``load_clip_source`` does, with its errors)."""
    from .resolve import is_saved_dataset
    from .sources import CLIP_FEATURES, folder_clips

    path = os.path.expanduser(source)
    if procs.world == 1 or not os.path.isdir(path) or is_saved_dataset(path):
        return None
    try:
        rows = folder_clips(path, window=window, on_error="mark", part=(procs.rank, procs.world)).to_dict()
    except ClipError:                        # no video file in the folder: not a folder of videos
        rows = None
    parts = procs.gather(rows)
    if not procs.is_main or any(part is None for part in parts):
        return None
    clips = datasets.Dataset.from_dict({name: [v for part in parts for v in part[name]] for name in CLIP_FEATURES},
                                       features=CLIP_FEATURES)
    if all(clips["scan_error"]):             # no clip at all: load_clip_source raises the error naming every file
        return None
    return clips.select(range(min(limit, len(clips)))) if limit is not None else clips


class CtrlC:
    """Ctrl-C is never lost while mining: ``datasets`` hashes map arguments under a bare ``except:``, so a
    ``KeyboardInterrupt`` raised there is swallowed and the map goes on. Inside this block (main thread, Python's
    default SIGINT handler only) the handler also remembers the key press, and :meth:`check` raises it again: before
    a shard is published and before the next one starts."""

    def __init__(self) -> None:
        self.pressed = False
        self.previous = None

    def __enter__(self) -> "CtrlC":
        import signal
        import threading

        if threading.current_thread() is threading.main_thread() \
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self.previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum, frame) -> None:
        self.pressed = True
        raise KeyboardInterrupt

    def check(self) -> None:
        if self.pressed:
            raise KeyboardInterrupt

    def __exit__(self, *exc) -> bool:
        if self.previous is not None:
            import signal

            signal.signal(signal.SIGINT, self.previous)
        return False


def mining_device(device: Optional[str], procs: MineProcesses, num_proc: Optional[int]) -> Optional[str]:
    """``device`` when given; else the process's accelerator (under ``accelerate launch`` on GPUs) when the map runs
    in this process (``num_proc`` None / 1: forked map workers cannot use the CUDA context of their parent)."""
    if device is not None:
        return device
    if procs.device is None:
        return None
    import inspect

    from ..mi.twins import find_twins

    if "device" not in inspect.signature(find_twins).parameters:
        logger.warning("find_twins takes no device in this version: the MI engine runs on its default device, not %s",
                       procs.device)
        return None
    if num_proc is not None and num_proc > 1:
        logger.warning("num_proc %d: the map workers run the MI engine with find_twins' default device, not %s "
                       "(forked workers cannot use the parent's CUDA context); use --num_proc 1 with one process "
                       "per GPU", num_proc, procs.device)
        return None
    return procs.device


def threads_per_worker(procs: MineProcesses, num_proc: Optional[int]) -> Optional[int]:
    """Intra-op threads of each mining worker when several processes share this machine: its usable cores divided
    among them (None alone: ``mine_dataset``'s default)."""
    from .decoding import usable_cores

    if procs.local <= 1:
        return None
    return max(1, usable_cores() // (procs.local * max(1, num_proc or 1)))
