"""Fault injection for tests: a small plan object that :func:`mimcl_hub.train.train` takes as an argument.

Production runs pass nothing (``faults=None``) and no fault code runs. Tests pass a :class:`FaultPlan` to
prove what the loop does when things go wrong, at an exact step, without environment variables read in the
hot path::

    train(config, faults=FaultPlan(nan_loss_at_step=5))            # the loss becomes NaN at step 5
    train(config, faults=FaultPlan(kill_in_checkpoint_at_step=6))   # SIGKILL inside save_checkpoint(step 6)
    train(config, faults=FaultPlan(desync_at_step=2))               # process 1 perturbs a weight after step 2
    train(config, faults=FaultPlan(sigterm_at_step=3))              # SIGTERM to itself after step 3
    train(config, faults=FaultPlan(after_step=callback))            # callback(step) after every optimizer step
    train(config, faults=FaultPlan(record_batches="/tmp/seen"))      # each process logs the view rows it trains on

Steps count optimizer steps from 1 (the step being taken), as ``TrainingState.step`` after it.
Subprocess tests build the plan in a small script (``tests/train_with_faults.py``).
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

__all__ = ["FaultPlan"]


@dataclass(frozen=True)
class FaultPlan:
    """Faults to inject into one training run (every field ``None``: none).

    Attributes:
        nan_loss_at_step: the loss of this step is multiplied by NaN before backward.
        kill_in_checkpoint_at_step: SIGKILL this process inside ``save_checkpoint`` of this step, after
            ``save_state`` wrote the temporary folder and before the rename that publishes it.
        desync_at_step: after this step, process 1 adds 1e-3 to one backbone weight (the sync check must fire).
        sigterm_at_step: after this step, the process sends itself SIGTERM (what Slurm sends before a kill).
        after_step: called with the step number after every optimizer step (observation, e.g. counters).
        record_batches: a folder; process ``p`` appends one JSON line per micro-batch to ``process-<p>.jsonl``:
            ``{"step", "epoch", "batch", "view_index"}`` (the batch's ``view_index``, the view rows of a
            two-source dataset; absent for other datasets) — observation of how the data is split by process.
    """

    nan_loss_at_step: Optional[int] = None
    kill_in_checkpoint_at_step: Optional[int] = None
    desync_at_step: Optional[int] = None
    sigterm_at_step: Optional[int] = None
    after_step: Optional[Callable[[int], None]] = None
    record_batches: Optional[str] = None

    def loss(self, loss: torch.Tensor, step: int) -> torch.Tensor:
        """``loss`` with the planned NaN applied at ``nan_loss_at_step``."""
        return loss * float("nan") if step == self.nan_loss_at_step else loss

    def before_publish(self, step: int) -> None:
        """The hook ``save_checkpoint`` calls between writing and publishing a checkpoint."""
        if step == self.kill_in_checkpoint_at_step:
            os.kill(os.getpid(), signal.SIGKILL)

    def batch_seen(self, batch: dict, state, process_index: int) -> None:
        """Observation of a micro-batch before its step (``record_batches``)."""
        if self.record_batches is None:
            return
        import json

        os.makedirs(self.record_batches, exist_ok=True)
        rows = batch["view_index"].tolist() if "view_index" in batch else None
        with open(os.path.join(self.record_batches, f"process-{process_index}.jsonl"), "a") as f:
            f.write(json.dumps({"step": state.step + 1, "epoch": state.epoch, "batch": state.batch_in_epoch,
                                "view_index": rows}) + "\n")

    def step_done(self, step: int, backbone: nn.Module, process_index: int) -> None:
        """Faults and observation after optimizer step ``step``."""
        if step == self.desync_at_step and process_index == 1:
            with torch.no_grad():
                next(backbone.parameters()).view(-1)[0] += 1e-3
        if step == self.sigterm_at_step:
            os.kill(os.getpid(), signal.SIGTERM)
        if self.after_step is not None:
            self.after_step(step)
