"""The Accelerator of a run and what its processes do together (main-process work, the weight-sync check)."""

from __future__ import annotations

import logging
import os
from dataclasses import asdict
from typing import Any, Callable, TypeVar

import torch
from torch import nn

from ..errors import RunStopped
from .config import ConfigError, tracker_available

__all__ = ["PROJECT_NAME", "ProcessesOutOfSyncError", "check_sync", "local_processes", "make_accelerator", "on_main",
           "resolve_trackers", "start_trackers", "tracker_config"]

logger = logging.getLogger("mimcl_hub.train")

#: the trackers' project name: TensorBoard writes to OUTPUT_DIR/logs/<PROJECT_NAME>, wandb's project
PROJECT_NAME = "mimcl_hub"

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


def resolve_trackers(report_to: str) -> list[str]:
    """The Accelerate ``log_with`` names of ``--report_to``: ``auto`` = ``["tensorboard"]`` when TensorBoard is
    installed, else ``[]``; ``none`` = ``[]``; ``all`` = ``["all"]`` (Accelerate: every installed tracker); otherwise
    the comma list as given (validated by ``TrainConfig``: known and installed)."""
    names = [t.strip() for t in report_to.split(",") if t.strip()]
    if names == ["none"]:
        return []
    if names == ["auto"]:
        return ["tensorboard"] if tracker_available("tensorboard") else []
    return names


def start_trackers(accelerator, config) -> None:
    """``accelerator.init_trackers`` with the run's config (wandb: the run named after ``output_dir``, its files in
    ``OUTPUT_DIR/logs`` unless ``WANDB_DIR`` is set), then one log line on the main process saying where the metrics
    go (or, for ``--report_to auto`` without TensorBoard, that they go only to the log files and how to get it)."""
    wandb = {"name": os.path.basename(os.path.abspath(config.output_dir))}
    if not os.environ.get("WANDB_DIR") and set(resolve_trackers(config.report_to)) & {"wandb", "all"}:
        wandb["dir"] = os.path.join(config.output_dir, "logs")
        if accelerator.is_main_process:
            os.makedirs(wandb["dir"], exist_ok=True)
    accelerator.init_trackers(PROJECT_NAME, config=tracker_config(config), init_kwargs={"wandb": wandb})
    if not accelerator.is_main_process:
        return
    names = [f"TensorBoard (tensorboard --logdir {accelerator.logging_dir})" if t.name == "tensorboard" else t.name
             for t in accelerator.trackers]
    files = f"{os.path.join(config.output_dir, 'trainer_log.jsonl')} and train_results.json"
    if names:
        logger.info("metrics go to %s, %s", ", ".join(names), files)
    elif config.report_to.strip() == "auto":
        logger.info("--report_to auto: TensorBoard is not installed, so metrics go only to the log, %s. For "
                    "TensorBoard curves: pip install \"mimcl-hub[tracking]\" (or pick a tracker with --report_to, "
                    "e.g. wandb; --report_to none hides this line)", files)


def tracker_config(config) -> dict[str, Any]:
    """The config as flat scalars (TensorBoard hparams reject None and containers)."""
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in asdict(config).items()}


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
