"""Progress of long work (training, mining, feature extraction): one rule for when to draw bars.

:func:`show_progress_bars` decides, first match wins:

1. an explicit choice (``--disable_tqdm`` / ``--disable_tqdm false`` of ``mimcl train``): bars off / on;
2. the environment variable ``MIMCL_PROGRESS_BARS`` (``1`` / ``0``, ``true`` / ``false``, ``yes`` / ``no``);
3. otherwise bars when stderr is a terminal and the ``CI`` variable is not set (GitHub Actions, GitLab, ... set it).

Without bars, long work still shows progress in the log: :func:`progress` then returns a :class:`ProgressLog`,
which writes one ``INFO`` line (done / total, rate, time left) at most every ``interval`` seconds, so a CI log gets a
line every half minute instead of thousands of carriage-return updates. :func:`datasets_progress` applies the same
rule to the bars of ``datasets.Dataset.map``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from typing import Any, Iterable, Iterator, Optional, TextIO

__all__ = ["PROGRESS_ENV", "ProgressLog", "datasets_progress", "progress", "show_progress_bars"]

#: environment variable that forces bars on (1) or off (0) when no flag says so
PROGRESS_ENV = "MIMCL_PROGRESS_BARS"

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")

logger = logging.getLogger("mimcl_hub.progress")


def _env_flag(name: str) -> Optional[bool]:
    """True / False for a set variable (unknown values count as set = True), None when unset."""
    value = os.environ.get(name)
    if value is None:
        return None
    return value.strip().lower() not in _FALSE


def show_progress_bars(disable: Optional[bool] = None, stream: Optional[TextIO] = None) -> bool:
    """Whether to draw progress bars (see the module docstring for the rule).

    Args:
        disable: an explicit choice (``TrainConfig.disable_tqdm``): True = no bars, False = bars, None = decide.
        stream: where bars go (default ``sys.stderr``); bars only when it is a terminal.
    """
    if disable is not None:
        return not disable
    forced = os.environ.get(PROGRESS_ENV)
    if forced is not None:
        value = forced.strip().lower()
        if value in _TRUE or value in _FALSE:
            return value in _TRUE
        raise ValueError(f"{PROGRESS_ENV}={forced!r}: use 1 (bars) or 0 (no bars)")
    if _env_flag("CI"):
        return False
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):      # no isatty, or a closed stream
        return False


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class ProgressLog:
    """Progress as log lines instead of a bar; the subset of ``tqdm``'s interface the package uses (iterate,
    ``update``, ``set_postfix``, ``write``, ``close``, context manager).

    A line ``"<desc>: <n>/<total> (<pct>%), <elapsed> elapsed, <rate> <unit>/s, ~<left> left, <postfix>"`` is logged
    at most every ``interval`` seconds; ``close`` logs a last line only when an earlier one was written (short work
    stays silent). ``write`` logs its message at once (what ``tqdm.write`` prints above a bar).
    """

    def __init__(self, iterable: Optional[Iterable] = None, total: Optional[int] = None, desc: str = "",
                 initial: int = 0, unit: str = "it", interval: float = 30.0,
                 log: Optional[logging.Logger] = None):
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.n = self._start_n = initial
        self.interval = float(interval)
        self.log = log or logger
        self.postfix: dict[str, Any] = {}
        self.lines = 0
        self._t0 = self._last = time.monotonic()
        self._closed = False

    def __iter__(self) -> Iterator:
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def __enter__(self) -> "ProgressLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self._emit(now)

    def set_postfix(self, **values: Any) -> None:
        self.postfix = values

    def write(self, message: str) -> None:
        self.log.info("%s", message)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.lines:
            self._emit(time.monotonic(), final=True)

    def _emit(self, now: float, final: bool = False) -> None:
        elapsed = now - self._t0
        rate = (self.n - self._start_n) / elapsed if elapsed > 0 else 0.0
        done = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        parts = [f"{self.desc}: {done}" + (f" ({100 * self.n / self.total:.0f}%)" if self.total else ""),
                 f"{_duration(elapsed)} elapsed", f"{rate:.3g} {self.unit}/s"]
        if self.total and rate > 0 and not final:
            parts.append(f"~{_duration((self.total - self.n) / rate)} left")
        parts += [f"{k}={v}" for k, v in self.postfix.items()]
        self.log.info("%s", ", ".join(parts))
        self.lines += 1


def progress(iterable: Optional[Iterable] = None, *, total: Optional[int] = None, desc: str = "", initial: int = 0,
             unit: str = "it", disable: Optional[bool] = None, quiet: bool = False, leave: bool = True,
             interval: float = 30.0, log: Optional[logging.Logger] = None):
    """Progress of a long loop: a ``tqdm`` bar when :func:`show_progress_bars` says so, else a :class:`ProgressLog`.

    Args:
        disable: the explicit choice, as in :func:`show_progress_bars`.
        quiet: show nothing at all (another process than the main one, or work too short to report).
        leave: keep the bar on screen when done (tqdm's ``leave``).
        interval: seconds between two log lines when there is no bar.
    """
    from tqdm.auto import tqdm

    if quiet:
        return tqdm(iterable, total=total, initial=initial, disable=True)
    if show_progress_bars(disable):
        return tqdm(iterable, total=total, desc=desc, initial=initial, unit=unit, leave=leave, dynamic_ncols=True,
                    disable=False)
    return ProgressLog(iterable, total=total, desc=desc, initial=initial, unit=unit, interval=interval, log=log)


@contextlib.contextmanager
def datasets_progress(disable: Optional[bool] = None):
    """``datasets``' own bars (``Dataset.map``) follow :func:`show_progress_bars` inside the block, unless the user set
    ``HF_DATASETS_DISABLE_PROGRESS_BARS`` (then theirs wins); the previous setting is restored afterwards."""
    import datasets

    if os.environ.get("HF_DATASETS_DISABLE_PROGRESS_BARS") is not None:
        yield
        return
    was_disabled = datasets.are_progress_bars_disabled()
    want = show_progress_bars(disable)
    if want == (not was_disabled):
        yield
        return
    (datasets.enable_progress_bars if want else datasets.disable_progress_bars)()
    try:
        yield
    finally:
        (datasets.disable_progress_bars if was_disabled else datasets.enable_progress_bars)()
