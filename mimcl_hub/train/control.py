"""Step-loop bookkeeping that never waits for the device.

A step must not read device values on the host: each read (``.item()``, ``float(t)``, ``if t:``) waits for every
queued kernel and stalls a GPU. The loop therefore keeps its per-step numbers where they are:

- :class:`LogWindow` sums the objectives' log tensors on the device; the host reads the means only at logging
  steps (``--logging_steps``).
- :class:`NonFiniteWatch` remembers, on the device, the first step whose loss or gradient norm was NaN / inf; it
  is read at logging steps and before every checkpoint, so non-finite weights are never saved and the run stops
  naming that step.
- :class:`StepControl` agrees, across processes, on two host numbers per micro-batch — how many twin pairs every
  process uses (the collate function counts them on the CPU) and whether any process got SIGTERM — through a
  CPU (gloo) all-reduce, so no device collective is needed. SIGTERM (what Slurm and preemptible clouds send before
  a kill) only sets a flag; the loop saves a checkpoint at the next step boundary and stops.
"""

from __future__ import annotations

import signal
import threading
from typing import Optional

import torch

__all__ = ["LogWindow", "NonFiniteWatch", "StepControl"]


class LogWindow:
    """Sums of log values since the last logging step (tensors stay on their device; host numbers stay floats)."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor | float] = {}
        self.count = 0

    def add(self, logs: dict[str, torch.Tensor | float]) -> None:
        self.count += 1
        for key, value in logs.items():
            value = value.detach() if isinstance(value, torch.Tensor) else float(value)
            self.sums[key] = value if key not in self.sums else self.sums[key] + value

    def means(self) -> dict[str, float]:
        """The window's means, read to the host (a logging step), and a fresh window."""
        out = {key: float(total) / max(1, self.count) for key, total in self.sums.items()}
        self.sums, self.count = {}, 0
        return out


class NonFiniteWatch:
    """The first step whose loss (or gradient norm) was not finite, kept on the device until :meth:`first`."""

    def __init__(self) -> None:
        self._step: dict[str, torch.Tensor] = {}      # what -> first bad step (-1: none yet)
        self._value: dict[str, torch.Tensor] = {}

    def update(self, what: str, value: torch.Tensor, step: int) -> None:
        value = value.detach().float().reshape(-1)[:1].reshape(())
        if what not in self._step:
            self._step[what] = torch.full((), -1, dtype=torch.long, device=value.device)
            self._value[what] = torch.zeros((), device=value.device)
        new = (~torch.isfinite(value)) & (self._step[what] < 0)
        self._step[what] = torch.where(new, torch.full_like(self._step[what], step), self._step[what])
        self._value[what] = torch.where(new, value, self._value[what])

    def first(self, accelerator) -> Optional[tuple[str, float, int]]:
        """``(what, value, step)`` of the earliest non-finite value on any process, or None (reads the device;
        a collective under several processes, so every process calls it at the same step)."""
        found = None
        for what, step in self._step.items():
            earliest = int(_earliest(step, accelerator))
            if earliest >= 0 and (found is None or earliest < found[2]):
                mine = int(step) == earliest
                found = (what, float(self._value[what]) if mine else float("nan"), earliest)
        return found


def _earliest(step: torch.Tensor, accelerator) -> torch.Tensor:
    """The smallest non-negative ``step`` over processes (-1 when every process has -1)."""
    if accelerator.num_processes == 1:
        return step
    import torch.distributed as dist

    none = torch.iinfo(torch.long).max
    marker = torch.where(step < 0, torch.full_like(step, none), step).reshape(1)
    dist.all_reduce(marker, op=dist.ReduceOp.MIN)
    return torch.where(marker >= none, torch.full_like(marker, -1), marker).reshape(())


class StepControl:
    """Host-side agreement between processes, and the SIGTERM flag (see the module docstring).

    Use as a context manager around the step loop: it installs the SIGTERM handler (main thread only) and puts the
    previous one back on exit.
    """

    def __init__(self, accelerator) -> None:
        self.accelerator = accelerator
        self.terminate_requested = False
        self._group = None
        self._previous = None
        if accelerator.num_processes > 1:
            import torch.distributed as dist

            # a CPU side channel: host numbers agree without a device collective (NCCL would need a GPU tensor)
            self._group = dist.new_group(backend="gloo")

    def __enter__(self) -> "StepControl":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def _on_sigterm(self, signum, frame) -> None:
        self.terminate_requested = True

    def agree(self, twin_count: int) -> tuple[int, bool]:
        """``(twin pairs every process uses, whether any process got SIGTERM)``: the minimum count and the
        maximum flag over processes (one gloo all-reduce of two host integers; no communication alone)."""
        if self._group is None:
            return twin_count, self.terminate_requested
        import torch.distributed as dist

        values = torch.tensor([twin_count, -int(self.terminate_requested)], dtype=torch.long)
        dist.all_reduce(values, op=dist.ReduceOp.MIN, group=self._group)
        return int(values[0]), bool(values[1] < 0)
