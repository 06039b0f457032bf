"""Decoding in mining workers: the forward-only reader of lazy video windows and the per-process thread budget.

``load_frames(row, ...)`` is ``load_clip_frames`` for the rows a map worker mines, decoding consecutive windows of a
video in one forward pass (:class:`_WindowReader`); :func:`intra_op_threads` lowers numba / torch / OpenCV thread
counts in a block (fork-safe); :func:`usable_cores` is what this process may run on.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any, Iterator, Mapping, Optional

import numpy as np

from .frames import load_clip_frames
from .video import _open_container, _to_rgb, resize_max_side

__all__ = ["close_reader", "intra_op_threads", "load_frames", "usable_cores"]


class _WindowReader:
    """Decodes the lazy video windows one thread of one process mines, each frame once.

    Consecutive rows of a clip dataset are windows of one video in increasing ``start`` order (the
    layout of ``video_clips`` / ``bundled_clips`` / ``hf_video_clips``, which ``Dataset.map`` keeps in
    each contiguous shard). ``decode_video`` decodes every window from the video's first frame, so a
    video of F frames cut into W windows cost ~W·F/2 decoded frames; here the decoder stays open
    between rows and batches and only moves forward: ~F. An earlier start, another file (or the same
    path changed on disk), another ``max_side`` or another process (a forked copy) reopens the video.
    The frames are those of ``load_clip_frames`` (the same decoder, skipped frames not converted,
    the same RGB conversion and resize). Only well-formed path rows come here; every other row, and
    any row this path cannot finish (too few frames, a decoding error), goes to ``load_clip_frames``,
    which checks it and names it in its error. Memory: one open decoder, never the whole video.

    ``threads``: FFmpeg threads for decoding and for the RGB conversion (None: FFmpeg's choice, one
    per core, as ``decode_video``). Map workers pass their share of the cores: frame threading and
    swscale slice threads on cores the other workers keep busy made decoding plus conversion 3-10x
    slower per frame (bundled clips, 2-core machine, another process running; within 20% of each
    other on an idle machine). The converted pixels are the same whatever the thread count.

    Fork safety: a process forked while this one had a decoder open (a ``Dataset.map`` worker)
    never touches the copy: freeing FFmpeg's threaded contexts copied by ``fork()`` hangs in
    ``pthread_cond_destroy`` (observed), so the copy is kept unreferenced-but-alive in
    ``_INHERITED`` and the worker opens its own decoder.
    """

    def __init__(self) -> None:
        self._key: Optional[tuple] = None
        self._frames: Optional[Iterator] = None
        self._next = 0

    def close(self) -> None:
        frames, key = self._frames, self._key
        self._frames, self._key, self._next = None, None, 0
        if frames is not None:
            if key is not None and key[0] != os.getpid():
                _INHERITED.append(frames)  # another process' decoder, copied by fork(): never freed here
            else:
                frames.close()

    @staticmethod
    def usable(row: Mapping[str, Any], max_side: Optional[int]) -> bool:
        path, start, count = row.get("video"), row.get("start", 0), row.get("num_frames")
        return (row.get("frames") is None and row.get("video_bytes") is None and isinstance(path, str)
                and type(start) is int and start >= 0 and type(count) is int and count >= 2
                and (max_side is None or (type(max_side) is int and max_side >= 2)) and os.path.isfile(path))

    def read(self, path: str, start: int, count: int, max_side: Optional[int],
             threads: Optional[int] = None) -> Optional[np.ndarray]:
        """Frames ``[start, start + count)`` as (count, H, W, 3) uint8, or None (use ``load_clip_frames``)."""
        try:
            stat = os.stat(path)
        except OSError:  # gone since usable(): load_clip_frames names it
            return None
        key = (os.getpid(), path, stat.st_ino, stat.st_size, stat.st_mtime_ns, max_side)
        if key != self._key or start < self._next:
            self.close()
            self._key, self._next = key, 0
            self._frames = _decode(path, threads)
        try:
            while self._next < start:
                next(self._frames)
                self._next += 1
            out = []
            while len(out) < count:
                frame = next(self._frames)
                out.append(_to_rgb(frame, max_side) if threads is None
                           else resize_max_side(frame.to_ndarray(format="rgb24", threads=threads), max_side))
                self._next += 1
        except Exception:  # too few frames, corrupt data ...: load_clip_frames reports it, naming the clip
            self.close()
            return None
        return np.stack(out)


def _decode(path: str, threads: Optional[int]) -> Iterator:
    """The raw PyAV frames of the first video stream of ``path`` (``video._iter_av_frames`` with a thread count)."""
    container = _open_container(path, path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if threads is not None:
            stream.thread_count = threads
        yield from container.decode(stream)
    finally:
        container.close()


_readers = threading.local()
#: Decoders a forked process inherited from its parent (see ``_WindowReader``): kept alive, never freed.
_INHERITED: list = []


def load_frames(row: Mapping[str, Any], max_side: Optional[int], strict_format: bool,
                 threads: Optional[int] = None) -> np.ndarray:
    """``load_clip_frames(row, max_side, strict_format)``, decoding consecutive windows of a video once."""
    if _WindowReader.usable(row, max_side):
        reader = getattr(_readers, "reader", None)
        if reader is None:
            reader = _readers.reader = _WindowReader()
        frames = reader.read(row["video"], row.get("start", 0), row["num_frames"], max_side, threads)
        if frames is not None:
            return frames
    return load_clip_frames(row, max_side=max_side, strict_format=strict_format)


def close_reader() -> None:
    reader = getattr(_readers, "reader", None)
    if reader is not None:
        reader.close()


#: The process that imported this module. A ``Dataset.map`` worker forked from it has another pid.
_IMPORT_PID = os.getpid()


def _thread_knobs() -> list:
    """(name, get, set) for the intra-op thread counts of numba, torch and OpenCV."""
    import cv2
    import torch

    knobs = [("torch", torch.get_num_threads, torch.set_num_threads), ("cv2", cv2.getNumThreads, cv2.setNumThreads)]
    try:
        import numba

        knobs.append(("numba", numba.get_num_threads, numba.set_num_threads))
    except ImportError:  # pragma: no cover - numba is a dependency
        pass
    return knobs


@contextlib.contextmanager
def intra_op_threads(num_threads: Optional[int]):
    """numba, torch and OpenCV use at most ``num_threads`` threads inside the block (None: unchanged).

    Counts are only ever lowered, and restored on exit only in the process that imported this module
    (or one started fresh, e.g. by ``spawn``): a process *forked* from it keeps the lower count, because
    raising a thread count again after a fork hangs there (OpenCV's pool in ``pthread_cond_destroy``,
    OpenMP on its next parallel region; both observed with ``Dataset.map(num_proc=2)`` workers).
    ``mine_dataset`` lowers the counts in the parent before the workers fork, so they start lowered."""
    if num_threads is None:
        yield
        return
    lowered = []
    for _, get, set_ in _thread_knobs():
        current = get()
        if current > num_threads:
            set_(num_threads)
            lowered.append((set_, current))
    try:
        yield
    finally:
        if os.getpid() == _IMPORT_PID:
            for set_, value in reversed(lowered):
                set_(value)


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask; ``os.cpu_count()`` where there is none)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1
