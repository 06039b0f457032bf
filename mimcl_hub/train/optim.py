"""Optimizers and the learning-rate schedule of the training loop."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

__all__ = ["build_optimizer", "lr_lambda"]


def lr_lambda(warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0):
    """Multiplier of the peak LR after ``step`` scheduler steps: linear warm-up from ``1/(warmup+1)``
    to 1 over ``warmup_steps``, then cosine decay to ``min_lr_ratio`` at ``total_steps``
    (Loshchilov & Hutter 2017, arXiv 1608.03983, without restarts)."""

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
    for module in modules.values():
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


def build_optimizer(config, backbone: nn.Module, objective: nn.Module) -> torch.optim.Optimizer:
    """AdamW / LARS / SGD (``config.optimizer``) over the trainable parameters of the backbone and the
    objective's heads.

    LARS is ``timm.optim.Lars`` (You et al. 2017, arXiv 1708.03888) with per-group ``always_adapt``:
    the decayed group (weights) always gets the trust-ratio ``η·‖w‖/‖g + λw‖`` scaling; biases, norm
    weights and tokens get neither weight decay nor adaptation (as in SimCLR / BYOL).
    """
    groups = [g for g in _param_groups({"backbone": backbone, "objective": objective}, config.weight_decay)
              if g["params"]]
    if config.optimizer in ("adamw", "sgd"):
        for g in groups:
            g.pop("lars_adapt")
        if config.optimizer == "adamw":
            return _fused(torch.optim.AdamW, groups, lr=config.learning_rate,
                          betas=(config.adam_beta1, config.adam_beta2))
        return _fused(torch.optim.SGD, groups, lr=config.learning_rate, momentum=config.momentum)
    from timm.optim import Lars

    for g in groups:
        g["always_adapt"] = g.pop("lars_adapt")
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


def apply_schedule(optimizer, scheduler, learning_rate: float, schedule) -> None:
    """After ``load_state``: use this run's peak LR and schedule (a resumed run may change --learning_rate or
    --max_steps); the LR at the restored step is recomputed exactly as ``LambdaLR`` does."""
    inner = getattr(scheduler, "scheduler", scheduler)
    inner.base_lrs = [learning_rate for _ in optimizer.param_groups]
    lrs = [base * schedule(inner.last_epoch) for base in inner.base_lrs]
    for group, lr in zip(optimizer.param_groups, lrs):
        group["lr"] = lr
    inner._last_lr = lrs
