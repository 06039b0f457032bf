"""How busy the other processes keep the cores, read before a timed run (shared by the bench scripts).

Linux only (``/proc/stat``). Call these while this process idles, so the figure is the others' load.
"""

from __future__ import annotations

import os
import time


def busy_cores(interval: float = 1.0) -> float:
    """Cores busy over ``interval`` seconds, from /proc/stat, counted over the cores this process may use."""
    def read():
        with open("/proc/stat") as f:
            v = [float(x) for x in f.readline().split()[1:]]
        idle = v[3] + (v[4] if len(v) > 4 else 0.0)
        return sum(v) - idle, sum(v)

    b0, t0 = read()
    time.sleep(interval)
    b1, t1 = read()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return cores * (b1 - b0) / max(t1 - t0, 1e-9)


def wait_idle(max_wait: float, threshold: float = 0.15) -> float:
    """Wait (at most ``max_wait`` s) until other processes keep less than ``threshold`` of a core busy; returns
    the last reading (cores busy)."""
    deadline = time.monotonic() + max_wait
    busy = busy_cores()
    while busy > threshold and time.monotonic() < deadline:
        busy = busy_cores()
    return busy
