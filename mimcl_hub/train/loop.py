"""The training loop: timm backbone + InfoAug objective on Hugging Face Accelerate.

``train(config) -> TrainResult`` reads as setup -> loop -> finish, like Accelerate's ``complete_cv_example.py``:

1. **Setup** (:func:`_setup`) — the Accelerator (:mod:`.processes`; CPU threads per process, :mod:`.threads`);
   where to start (resume a checkpoint that matches this run, or refuse to mix with an earlier run); the
   backbone (``create_backbone``, SyncBatchNorm only for multi-GPU DDP) and the InfoAug objective (momentum
   targets built *before* ``prepare``); a disk pre-flight; the kNN monitor; the training data (:mod:`.run_data`:
   ``--train_dataset`` + ``--twin_dataset`` or the clips of ``--video_dataset``; a shuffled DataLoader with
   ``drop_last``: equal per-process batches, which the cross-process gathers need); optimizer and warm-up + cosine schedule (:mod:`.optim`); ``prepare``; and, when
   resuming, ``load_state`` (small pickles first read with ``weights_only=True``) + the data position.
2. **Loop** (:func:`_loop`) — per micro-batch: autocast forward, ``accumulate``, backward, clipping, optimizer and
   scheduler step; per optimizer step: ``objective.on_step_end`` (EMA targets, schedules), then logging, the kNN
   monitor and atomic checkpoints at their cadences. Nothing is read from the device on other steps
   (:mod:`.control`): logs are summed on the device, a NaN / inf loss or gradient norm is remembered there and
   stops the run at the next logging step or checkpoint (naming its step, never saving non-finite weights), and
   SIGTERM saves a checkpoint at the next step boundary and stops (:class:`TrainingInterrupted`).
3. **Finish** (:func:`_finish`) — final checkpoint and kNN, ``output_dir/encoder/`` (timm folder + model card),
   ``train_results.json``, optional push to the Hub.

Tests inject faults through ``train(config, faults=FaultPlan(...))`` (:mod:`.faults`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from .._atomic import atomic_write_text
from .._progress import datasets_progress, progress
from ..errors import RunStopped
from ..hub.push import PushError
from .checkpoint import (LOCK_NAME, CheckpointError, OutputDirError, TrainingState, check_free_space, check_output_dir,
                         clean_stale_checkpoints, delete_checkpoint, estimate_run_bytes, latest_checkpoint,
                         list_checkpoints, resolve_checkpoint, run_lock, save_checkpoint)
from .config import TrainConfig
from .control import LogWindow, NonFiniteWatch, StepControl
from .encoder_folder import push_trained_encoder, save_trained_encoder
from .run_data import build_dataset, make_loader
from .faults import FaultPlan
from .optim import apply_schedule, build_optimizer, lr_lambda
from .processes import ProcessesOutOfSyncError, check_sync, local_processes, make_accelerator, on_main
from .resume import (check_custom_pickles, check_resume_config, check_resume_data, data_identity,
                     resume_settings)
from .trackers import start_trackers

__all__ = ["NonFiniteLossError", "OutputDirError", "ProcessesOutOfSyncError", "PushError", "TrainResult",
           "TrainingInterrupted", "build_optimizer", "lr_lambda", "train"]

logger = logging.getLogger("mimcl_hub.train")


class NonFiniteLossError(FloatingPointError, RunStopped):
    """The loss (or the gradient norm) became NaN / inf; the run stopped without saving non-finite weights."""


class TrainingInterrupted(RuntimeError):
    """SIGTERM: the run saved a checkpoint at a step boundary and stopped (``step``, ``checkpoint``)."""

    def __init__(self, message: str, step: int, checkpoint: Optional[str]):
        super().__init__(message)
        self.step, self.checkpoint = step, checkpoint


@dataclass
class TrainResult:
    """What :func:`train` returns (also written to ``output_dir/train_results.json``)."""

    output_dir: str
    encoder_dir: Optional[str]
    global_step: int
    epoch: float
    train_loss: float
    metrics: dict[str, float] = field(default_factory=dict)
    checkpoint: Optional[str] = None
    hub_url: Optional[str] = None
    train_runtime: float = 0.0
    resumed_from: Optional[str] = None
    num_processes: int = 1


@dataclass
class _Run:
    """Everything the loop and the end of a run share (built by :func:`_setup`)."""

    config: TrainConfig
    accelerator: Any
    faults: FaultPlan
    out_dir: Path
    backbone: nn.Module                  # prepared (DDP-wrapped under several processes)
    objective: nn.Module
    optimizer: Any
    scheduler: Any
    loader: Any
    dataset: Any
    state: TrainingState
    max_steps: int
    batches_per_epoch: int
    memory_format: torch.memory_format
    monitor: Any
    resume_path: Optional[Path]
    run_info: dict[str, Any]
    t_start: float
    plain_backbone: nn.Module = None     # the same modules unwrapped
    plain_objective: nn.Module = None
    params: list = field(default_factory=list)
    window: LogWindow = field(default_factory=LogWindow)
    watch: NonFiniteWatch = field(default_factory=NonFiniteWatch)
    last_saved: int = -1
    train_loss: float = math.nan
    knn_metrics: dict[str, float] = field(default_factory=dict)
    grad_norm: Any = 0.0
    samples: int = 0
    t_window: float = field(default_factory=time.time)

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    def log(self, values: dict[str, Any]) -> None:
        self.accelerator.log(values, step=self.state.step)
        if self.main:
            with open(self.out_dir / "trainer_log.jsonl", "a") as f:
                f.write(json.dumps({"step": self.state.step, **values}) + "\n")

    def run_monitor(self) -> dict[str, float]:
        """kNN of the weights the encoder releases (``objective.released_backbone``: DINO's teacher, else the
        trained backbone), so the card's result is measured on the weights it describes."""
        if self.monitor is None:
            return {}
        released = self.plain_objective.released_backbone(self.plain_backbone)
        return on_main(self.accelerator, lambda: self.monitor(released, device=self.accelerator.device)) or {}

    def save(self) -> Path:
        _stop_if_not_finite(self)
        for m in (self.plain_backbone, self.plain_objective):    # never write non-finite weights
            for name, p in m.named_parameters():
                if not torch.isfinite(p).all():
                    raise NonFiniteLossError(f"parameter {name} is not finite at step {self.state.step}; not saving "
                                             f"it. The last good checkpoint is {latest_checkpoint(self.out_dir)}")
        path = save_checkpoint(self.accelerator, self.out_dir, self.state, total_limit=self.config.save_total_limit,
                               info=self.run_info, before_publish=self.faults.before_publish)
        self.last_saved = self.state.step
        return path


# ----------------------------------------------------------------------------------------------------
# train = setup -> loop -> finish
# ----------------------------------------------------------------------------------------------------


def train(config: TrainConfig, faults: Optional[FaultPlan] = None) -> TrainResult:
    """Train an encoder as described by ``config`` (see the module docstring); returns a :class:`TrainResult`.

    ``faults`` is for tests only (:class:`~mimcl_hub.train.faults.FaultPlan`).

    Raises:
        ConfigError: invalid flags (before any work).
        OutputDirLockedError: another run uses ``output_dir``.
        CheckpointError: nothing to resume, or a checkpoint of another configuration or other data.
        NonFiniteLossError: the loss / gradient became NaN or inf (the last checkpoint is intact).
        ProcessesOutOfSyncError: ``--check_sync_every`` found processes with different weights.
        TrainingInterrupted: SIGTERM; a checkpoint of the last finished step was saved.
    """
    config.validate()
    created = not os.path.exists(config.output_dir)
    check_output_dir(config.output_dir)      # creatable and writable (a real write + fsync), before anything else
    try:
        return _train(config, faults)
    except BaseException:
        if created:
            _remove_if_unused(Path(config.output_dir))
        raise


def _remove_if_unused(out_dir: Path) -> None:
    """Remove an output folder this run created and left without a file of its own (a run that failed before its
    first checkpoint or log): only the lock file and empty folders may be in it."""
    try:
        files = [f for f in out_dir.rglob("*") if f.is_file() and f.name != LOCK_NAME]
        if not files:
            shutil.rmtree(out_dir, ignore_errors=True)
    except OSError:
        pass


def _train(config: TrainConfig, faults: Optional[FaultPlan]) -> TrainResult:
    accelerator = make_accelerator(config)
    if accelerator.is_main_process:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("accelerate").setLevel(logging.WARNING)    # one INFO line per checkpoint file otherwise
    from .threads import configure_cpu_threads

    configure_cpu_threads(accelerator.device.type, local_processes(accelerator))
    with run_lock(config.output_dir, accelerator), datasets_progress(config.disable_tqdm):   # map bars: same rule
        try:
            run = _setup(config, accelerator, faults or FaultPlan())
            _loop(run)
            return _finish(run)
        finally:
            accelerator.end_training()


def _setup(config: TrainConfig, accelerator, faults: FaultPlan) -> _Run:
    from accelerate.utils import set_seed

    from ..models import backbone_data_config

    t_start = time.time()
    out_dir = Path(config.output_dir)
    resume_path = _starting_point(config, accelerator, out_dir)          # cheap checks before any heavy work

    set_seed(config.seed)
    backbone, objective = _build_model(config, accelerator)
    data_cfg = backbone_data_config(backbone)
    need, detail = estimate_run_bytes(config, backbone, objective, out_dir)   # a full disk fails now, not mid-run
    on_main(accelerator, lambda: check_free_space(out_dir, need, detail))
    monitor = on_main(accelerator, lambda: _load_monitor(config, data_cfg)) if config.eval_dataset != "none" else None

    dataset = build_dataset(config, accelerator, data_cfg)
    identity = data_identity(dataset)
    if resume_path is not None:
        check_resume_data(resume_path, identity)
    loader = make_loader(config, accelerator, dataset)

    optimizer = build_optimizer(config, backbone, objective)
    global_batch = config.per_device_train_batch_size * accelerator.num_processes
    batches_per_epoch = len(dataset) // global_batch if not config.streaming else 0   # a stream has no epochs
    steps_per_epoch = max(1, math.ceil(batches_per_epoch / config.gradient_accumulation_steps))
    max_steps = config.max_steps if config.max_steps > 0 else math.ceil(config.num_train_epochs * steps_per_epoch)
    schedule = lr_lambda(config.warmup_steps or math.ceil(config.warmup_ratio * max_steps), max_steps,
                         config.min_lr_ratio)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    if config.streaming:        # the loader is prepared already (make_loader): never split by process twice
        backbone, objective, optimizer, scheduler = accelerator.prepare(backbone, objective, optimizer, scheduler)
    else:
        backbone, objective, optimizer, loader, scheduler = accelerator.prepare(backbone, objective, optimizer, loader,
                                                                                scheduler)
    state = TrainingState()
    accelerator.register_for_checkpointing(state)
    if resume_path is not None:
        check_custom_pickles(resume_path)    # Accelerate unpickles these with weights_only=False
        accelerator.load_state(str(resume_path))
        apply_schedule(optimizer, scheduler, config.learning_rate, schedule)
        logger.info("resumed from %s at step %d (epoch %d, batch %d)", resume_path, state.step, state.epoch,
                    state.batch_in_epoch)

    start_trackers(accelerator, config)
    if accelerator.is_main_process:
        logger.info("training %s with %s (twin_mode=%s, mi_weight=%s) for %d steps (%d per epoch, global batch %d, "
                    "%d processes, %s, %s, %d CPU threads)", config.model_name, config.objective, config.twin_mode,
                    config.mi_weight, max_steps, steps_per_epoch, global_batch, accelerator.num_processes,
                    accelerator.device, config.mixed_precision, torch.get_num_threads())
    run = _Run(config=config, accelerator=accelerator, faults=faults, out_dir=out_dir, backbone=backbone,
               objective=objective, optimizer=optimizer, scheduler=scheduler, loader=loader, dataset=dataset,
               state=state, max_steps=max_steps, batches_per_epoch=batches_per_epoch,
               memory_format=torch.channels_last if config.channels_last else torch.contiguous_format,
               monitor=monitor, resume_path=resume_path, t_start=t_start,
               run_info={"config": resume_settings(config), "data": identity, "max_steps": max_steps})
    from ..objectives import unwrap_model

    run.plain_backbone, run.plain_objective = unwrap_model(backbone), unwrap_model(objective)
    run.params = [p for m in (backbone, objective) for p in m.parameters() if p.requires_grad]
    run.last_saved = state.step if resume_path is not None else -1
    return run


def _loop(run: _Run) -> None:
    config, accelerator, state = run.config, run.accelerator, run.state
    bar = progress(total=run.max_steps, initial=state.step, desc="training", unit="step", disable=config.disable_tqdm,
                   quiet=not run.main, log=logger)
    run.backbone.train(), run.objective.train()
    stopping = False
    with StepControl(accelerator) as control:
        while state.step < run.max_steps:
            run.loader.set_epoch(state.epoch)           # sampler order and the dataset's augmentation draws
            run.dataset.set_epoch(state.epoch)
            batches = accelerator.skip_first_batches(run.loader, state.batch_in_epoch) if state.batch_in_epoch \
                else run.loader
            for batch in batches:
                stopping = _micro_step(run, batch, control) or stopping
                state.batch_in_epoch += 1
                if not accelerator.sync_gradients:
                    continue
                state.step += 1                                  # one optimizer step done
                run.plain_objective.on_step_end(state.step, run.max_steps, run.plain_backbone)
                bar.update(1)
                run.faults.step_done(state.step, run.plain_backbone, accelerator.process_index)
                if stopping:
                    bar.close()
                    path = run.save()
                    raise TrainingInterrupted(
                        f"stopped by SIGTERM after step {state.step}; checkpoint saved to {path} (continue with "
                        "--resume_from_checkpoint latest)", state.step, str(path))
                _after_step(run, bar)
                if state.step >= run.max_steps:
                    break
            else:                                   # the epoch ran out: next epoch from its first batch
                state.epoch += 1
                state.batch_in_epoch = 0
    bar.close()


def _micro_step(run: _Run, batch: dict, control: StepControl) -> bool:
    """Forward / backward / optimizer step of one micro-batch; returns whether a process got SIGTERM."""
    config, accelerator, step = run.config, run.accelerator, run.state.step + 1
    run.faults.batch_seen(batch, run.state, accelerator.process_index)
    views = tuple(batch[k].contiguous(memory_format=run.memory_format) for k in ("view1", "view2"))
    uses_mi = run.plain_objective.uses_mi_branch
    n_twins, stop = control.agree(int(batch.get("twin_count", 0)) if uses_mi else 0)
    twins = _twin_pairs(batch, min(n_twins, config.twin_batch_size or config.per_device_train_batch_size),
                        run.plain_objective, run.memory_format) if uses_mi else None
    with accelerator.accumulate(run.backbone, run.objective):
        with accelerator.autocast():
            out = run.objective(run.backbone, views, twins)
        loss = run.faults.loss(out.loss, step)
        run.watch.update("loss", loss, step)
        accelerator.backward(loss)
        if accelerator.sync_gradients:
            run.grad_norm = accelerator.clip_grad_norm_(run.params, config.max_grad_norm or float("inf"))
            if config.mixed_precision != "fp16":           # fp16: the GradScaler skips inf steps itself
                run.watch.update("gradient norm", run.grad_norm, step)
        run.optimizer.step()
        if accelerator.sync_gradients and not accelerator.optimizer_step_was_skipped:
            run.scheduler.step()
        run.optimizer.zero_grad(set_to_none=True)
    run.samples += views[0].shape[0] * accelerator.num_processes
    run.window.add({**out.logs, "twin_batch": float(twins[0].shape[0] if twins is not None else 0)})
    return stop


def _twin_pairs(batch: dict, n: int, objective: nn.Module, memory_format) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
    """The first ``n`` valid twin pairs of the batch (the collate function lists their positions and counts them
    on the CPU; every process uses the same ``n``), or None when fewer than the MI objective's minimum batch."""
    if "twin_a" not in batch or n < objective.mi_objective.min_batch:
        return None
    a, b = batch["twin_a"], batch["twin_b"]
    if a.ndim == 5:             # (B, K, C, H, W): K twin pairs per item
        a, b = a.flatten(0, 1), b.flatten(0, 1)
    index = batch["twin_index"][:n]
    return (a.index_select(0, index).contiguous(memory_format=memory_format),
            b.index_select(0, index).contiguous(memory_format=memory_format))


def _after_step(run: _Run, bar) -> None:
    """Checks, logs, kNN and checkpoints at their cadences after an optimizer step (the only host reads)."""
    config, state = run.config, run.state
    last = state.step >= run.max_steps
    if config.check_sync_every and state.step % config.check_sync_every == 0:
        diff = check_sync([run.plain_backbone, run.plain_objective], run.accelerator, state.step)
        run.log({"sync_max_diff": diff, "sync_processes": run.accelerator.num_processes})
    if state.step % config.logging_steps == 0 or last:
        _stop_if_not_finite(run)
        logs = run.window.means()
        elapsed = max(time.time() - run.t_window, 1e-9)
        logs.update(lr=run.scheduler.get_last_lr()[0], grad_norm=float(run.grad_norm), epoch=state.epoch,
                    samples_per_second=run.samples / elapsed)
        run.log(logs)
        run.train_loss = logs.get("loss", math.nan)
        run.samples, run.t_window = 0, time.time()
        bar.set_postfix(loss=f"{run.train_loss:.4f}", lr=f"{logs['lr']:.2e}")
    if config.knn_every and state.step % config.knn_every == 0 and not last:
        metrics = run.run_monitor()
        if metrics:
            run.knn_metrics = metrics
            run.log(metrics)
            bar.write(f"step {state.step}: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    if config.save_steps and state.step % config.save_steps == 0:
        run.save()


def _stop_if_not_finite(run: _Run) -> None:
    bad = run.watch.first(run.accelerator)
    if bad is None:
        return
    what, value, step = bad
    last = latest_checkpoint(run.out_dir)
    raise NonFiniteLossError(
        f"the {what} is {value} at step {step} (found at step {run.state.step}, epoch {run.state.epoch}); no weights "
        "after it were saved. "
        + (f"The last good checkpoint is {last} (resume with --resume_from_checkpoint latest, e.g. with a lower "
           "--learning_rate or --max_grad_norm)." if last else "No checkpoint was written yet.")
        + " Common causes: a learning rate far too high, fp16 overflow, a bad input batch.")


def _finish(run: _Run) -> TrainResult:
    config, accelerator, state = run.config, run.accelerator, run.state
    if run.last_saved != state.step:
        run.save()
    knn_metrics = run.run_monitor() or run.knn_metrics
    if knn_metrics:
        run.log({f"final/{k}": v for k, v in knn_metrics.items()})
    runtime = time.time() - run.t_start
    epoch = round(state.epoch + state.batch_in_epoch / max(1, run.batches_per_epoch), 4) if run.batches_per_epoch \
        else float(state.epoch)
    metrics = {"train_loss": run.train_loss, "global_step": state.step, "epoch": epoch,
               "train_runtime": round(runtime, 2), **knn_metrics}
    encoder_dir = hub_url = None
    if run.main:
        encoder_dir = run.out_dir / "encoder"
        save_trained_encoder(run, encoder_dir, metrics, knn_metrics)
        if config.push_to_hub:
            hub_url = push_trained_encoder(encoder_dir, config, state.step)
    result = TrainResult(output_dir=str(run.out_dir.absolute()), encoder_dir=str(encoder_dir) if encoder_dir else None,
                         global_step=state.step, epoch=epoch, train_loss=run.train_loss, metrics=metrics,
                         checkpoint=str(latest_checkpoint(run.out_dir) or "") or None, hub_url=hub_url,
                         train_runtime=runtime, resumed_from=str(run.resume_path) if run.resume_path else None,
                         num_processes=accelerator.num_processes)
    if run.main:
        atomic_write_text(run.out_dir / "train_results.json", json.dumps(asdict(result), indent=2, default=str))
        logger.info("done: %d steps in %.1f s; encoder in %s%s", state.step, runtime, encoder_dir,
                    f"; kNN top-1 {knn_metrics['knn_top1']:.4f}" if "knn_top1" in knn_metrics else "")
    accelerator.wait_for_everyone()
    return result


# ----------------------------------------------------------------------------------------------------
# setup pieces
# ----------------------------------------------------------------------------------------------------


def _starting_point(config: TrainConfig, accelerator, out_dir: Path) -> Optional[Path]:
    """The checkpoint to resume (checked against this run's settings), or None for a fresh start; refuses to mix
    with an earlier run's checkpoints unless ``--overwrite_output_dir`` (which deletes them)."""
    if accelerator.is_main_process:
        clean_stale_checkpoints(out_dir)
    accelerator.wait_for_everyone()
    if config.resume_from_checkpoint:
        path = resolve_checkpoint(config.resume_from_checkpoint, out_dir)
        check_resume_config(path, config, accelerator.num_processes)
        return path
    if list_checkpoints(out_dir):
        if not config.overwrite_output_dir:
            raise CheckpointError(f"{out_dir} already has checkpoints ({latest_checkpoint(out_dir)}); pass "
                                  "--resume_from_checkpoint latest to continue that run, or --overwrite_output_dir to "
                                  "start a new one there")
        if accelerator.is_main_process:     # the old run's checkpoints must not mix with ours
            for _, path in list_checkpoints(out_dir):
                delete_checkpoint(path)
            logger.info("--overwrite_output_dir: deleted the checkpoints of the earlier run in %s", out_dir)
        accelerator.wait_for_everyone()
    return None


def _build_model(config: TrainConfig, accelerator) -> tuple[nn.Module, nn.Module]:
    from ..models import create_backbone
    from ..objectives import build_infoaug

    distributed_gpu = accelerator.num_processes > 1 and accelerator.device.type == "cuda"
    backbone = create_backbone(config.model_name, img_size=config.img_size, drop_path_rate=config.drop_path_rate,
                               sync_batchnorm=distributed_gpu)
    backbone = backbone.to(memory_format=torch.channels_last if config.channels_last else torch.contiguous_format)
    view_kwargs, mi_kwargs = config.objective_kwargs()
    objective = build_infoaug(config.objective, config.mi_objective_name, feature_dim=backbone.num_features,
                              mi_weight=config.mi_weight, twin_mode=config.twin_mode,
                              view_kwargs=view_kwargs, mi_kwargs=mi_kwargs)
    if distributed_gpu:         # BN in the heads too (the backbone was converted by create_backbone)
        from timm.layers import convert_sync_batchnorm

        objective = convert_sync_batchnorm(objective)
    objective.build_targets(backbone)
    return backbone, objective


def _load_monitor(config: TrainConfig, data_cfg: dict):
    """The kNN monitor (loaded before the training data: a bad --eval_dataset fails fast)."""
    from ..eval.knn import KNNMonitor, load_knn_datasets

    knn_train, knn_test = load_knn_datasets(
        config.eval_dataset, img_size=config.img_size, mean=data_cfg["mean"], std=data_cfg["std"],
        max_train=config.knn_max_train, max_test=config.knn_max_test, seed=config.seed,
        image_column=config.eval_image_column, label_column=config.eval_label_column)
    return KNNMonitor(knn_train, knn_test, k=config.knn_k, T=config.knn_temperature,
                      autocast_dtype=torch.bfloat16 if config.mixed_precision == "bf16" else None,
                      channels_last=config.channels_last, name=config.eval_dataset)
