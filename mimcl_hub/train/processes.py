"""The Accelerator of a run and what its processes do together (main-process work, the weight-sync check)."""

from __future__ import annotations

import os
from typing import Callable, TypeVar

import torch
from torch import nn

from ..errors import RunStopped
from .config import ConfigError
from .trackers import resolve_trackers

__all__ = ["ProcessesOutOfSyncError", "check_sync", "local_processes", "make_accelerator", "on_main"]

T = TypeVar("T")


class ProcessesOutOfSyncError(RuntimeError, RunStopped):
    """``--check_sync_every``: the processes' parameters differ."""


def make_accelerator(config):
    """The run's ``Accelerator``: ``cpu=True`` when there is no CUDA (or ``ACCELERATE_USE_CPU`` is set),
    ``mixed_precision`` (bf16 works on CPU), gradient accumulation, trackers (``report_to``),
    ``ProjectConfiguration(project_dir=output_dir)``, a seedable sampler (data order = f(seed, epoch)) and the
    scheduler stepped by hand once per optimizer step."""
    from accelerate import Accelerator, DataLoaderConfiguration
    from accelerate.utils import ProjectConfiguration

    cuda = torch.cuda.is_available() and os.environ.get("ACCELERATE_USE_CPU", "").lower() not in ("1", "true", "yes")
    if not cuda and config.mixed_precision == "fp16":
        raise ConfigError("invalid training configuration:\n  --mixed_precision: fp16 needs a GPU; use bf16 "
                          "(supported on CPU) or no")
    trackers = resolve_trackers(config.report_to)
    return Accelerator(
        cpu=not cuda,
        mixed_precision=config.mixed_precision,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        log_with=trackers or None,
        project_config=ProjectConfiguration(project_dir=config.output_dir,
                                            logging_dir=os.path.join(config.output_dir, "logs"),
                                            automatic_checkpoint_naming=False),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=config.seed),
        step_scheduler_with_optimizer=False,
    )


def local_processes(accelerator) -> int:
    """Processes of this run on this machine (torchrun's ``LOCAL_WORLD_SIZE``; all of them on one machine)."""
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", accelerator.num_processes)))
    except ValueError:
        return accelerator.num_processes


def on_main(accelerator, fn: Callable[[], T]) -> T:
    """Run ``fn`` on the main process only; if it raises, every process raises (no rank left waiting)."""
    result, error = None, None
    if accelerator.is_main_process:
        try:
            result = fn()
        except Exception as e:        # re-raised below, on every process
            error = e
    if accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        box = [None if error is None else f"{type(error).__name__}: {error}"]
        broadcast_object_list(box, from_process=0)
        if box[0] is not None and error is None:
            raise RuntimeError(f"the main process failed: {box[0]}")
    if error is not None:
        raise error
    return result


def _sync_checksum(modules: list[nn.Module]) -> torch.Tensor:
    """float64 sum of every parameter and every non-BN-statistics buffer (MoCo queue, DINO centre)."""
    vals = []
    for m in modules:
        for p in m.parameters():
            vals.append(p.detach().double().sum())
        for name, b in m.named_buffers():
            if not any(s in name for s in ("running_mean", "running_var", "num_batches_tracked")) and b.is_floating_point():
                vals.append(b.detach().double().sum())
    return torch.stack(vals)


def check_sync(modules: list[nn.Module], accelerator, step: int) -> float:
    """Max |difference| of the per-tensor checksums between processes (0.0 on one process); raises
    :class:`ProcessesOutOfSyncError` when they differ."""
    local = _sync_checksum(modules).to(accelerator.device)
    if accelerator.num_processes == 1:
        return 0.0
    everyone = accelerator.gather(local[None])         # (world, n)
    diff = float((everyone - everyone[0:1]).abs().max())
    if diff != 0.0:
        raise ProcessesOutOfSyncError(
            f"--check_sync_every: after step {step} the processes' parameters differ (max |checksum difference| = "
            f"{diff:.3e} over {everyone.shape[1]} tensors); DDP lost synchronisation")
    return diff
