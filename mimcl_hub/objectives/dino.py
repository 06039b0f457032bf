"""DINO (Caron et al. 2021, "Emerging Properties in Self-Supervised Vision Transformers",
arXiv 2104.14294): self-distillation from a momentum teacher with centring and sharpening.

Two views (no multi-crop in this interface): the student's view i is trained to match the
teacher's view j ≠ i (``losses.dino``). After each optimizer step (``on_step_end``):
the teacher (backbone + head) is EMA-updated (cosine τ), the centre is updated with the mean
teacher logits of the step's forwards (all-reduced over processes; accumulated over gradient
accumulation micro-batches) ``c ← m·c + (1 − m)·mean``, and the teacher temperature follows a
linear warm-up.

Defaults, scaled for small CPU runs: paper = head 2048 hidden / 256 bottleneck / K = 65536
prototypes, student τ 0.1, teacher τ 0.04 (linear warm-up to 0.07 over 30 epochs for longer
runs), centre momentum 0.9, teacher EMA 0.996 → 1. Here hidden 512, bottleneck 128, K = 1024,
and the paper's temperatures / momenta (teacher τ 0.04 constant: warm-up start = end by default;
set ``teacher_temp=0.07`` to get the paper's warm-up over ``warmup_teacher_temp_fraction`` of the
run). The head has no BN by default (the paper's ViT setting; ``batch_norm=True`` for ResNets).
The "freeze last layer during the first epoch" trick is left to the training loop.

The released encoder is the **teacher** backbone (:meth:`DINO.released_backbone`): the network the paper
evaluates (its teacher outperforms the student throughout training) and whose weights the official evaluation
scripts load.
"""

from __future__ import annotations

import torch
from torch import nn

from ..models.heads import DINOHead
from .base import MomentumObjective, ObjectiveOutput, register_objective
from .distributed import all_reduce_sum
from .losses import dino

__all__ = ["DINO"]


@register_objective("dino")
class DINO(MomentumObjective):
    """DINO with an EMA teacher backbone + head, a centre buffer and a teacher-temperature schedule.

    Args:
        feature_dim: backbone ``num_features``.
        out_dim, hidden_dim, bottleneck_dim, num_layers, batch_norm, norm_last_layer: ``DINOHead``.
        student_temp: student temperature.
        teacher_temp: teacher temperature after warm-up.
        warmup_teacher_temp: teacher temperature at step 0.
        warmup_teacher_temp_fraction: fraction of ``max_steps`` of the linear warm-up.
        center_momentum: m of the centre EMA.
        momentum_base, momentum_final: teacher EMA τ schedule (cosine).
    """

    paper = "DINO (Caron et al. 2021, arXiv 2104.14294)"
    released = "teacher"

    def __init__(self, feature_dim: int, out_dim: int = 1024, hidden_dim: int = 512, bottleneck_dim: int = 128,
                 num_layers: int = 3, batch_norm: bool = False, norm_last_layer: bool = True,
                 student_temp: float = 0.1, teacher_temp: float = 0.04, warmup_teacher_temp: float = 0.04,
                 warmup_teacher_temp_fraction: float = 0.3, center_momentum: float = 0.9,
                 momentum_base: float = 0.996, momentum_final: float = 1.0, gather_distributed: bool = True):
        super().__init__(feature_dim, momentum_base, momentum_final, gather_distributed)
        for name, t in (("student_temp", student_temp), ("teacher_temp", teacher_temp),
                        ("warmup_teacher_temp", warmup_teacher_temp)):
            if not t > 0:
                raise ValueError(f"{name} must be > 0, got {t}")
        if not 0.0 <= warmup_teacher_temp_fraction <= 1.0:
            raise ValueError(f"warmup_teacher_temp_fraction must be in [0, 1], got {warmup_teacher_temp_fraction}")
        if not 0.0 <= center_momentum <= 1.0:
            raise ValueError(f"center_momentum must be in [0, 1], got {center_momentum}")
        self.student_temp, self.teacher_temp_final = float(student_temp), float(teacher_temp)
        self.warmup_teacher_temp = float(warmup_teacher_temp)
        self.warmup_teacher_temp_fraction = float(warmup_teacher_temp_fraction)
        self.center_momentum = float(center_momentum)
        self.head = DINOHead(feature_dim, out_dim=out_dim, hidden_dim=hidden_dim, bottleneck_dim=bottleneck_dim,
                             num_layers=num_layers, batch_norm=batch_norm, norm_last_layer=norm_last_layer)
        self._make_target_head("head", "target_head")
        self.register_buffer("center", torch.zeros(1, out_dim))
        self.register_buffer("teacher_temp", torch.tensor(float(warmup_teacher_temp)))
        # Teacher-logit sums of the current step: plain attributes, not buffers, so that DDP's
        # buffer broadcast never overwrites a rank's local sums; empty at every checkpoint.
        self._center_sum: torch.Tensor | None = None
        self._center_count = 0

    def released_backbone(self, backbone: nn.Module) -> nn.Module:
        """The momentum teacher's backbone (``target_backbone``; built from ``backbone`` when it does not exist
        yet, i.e. before the first step, when teacher = student)."""
        self.build_targets(backbone)
        return self.target_backbone

    def teacher_temp_at(self, step: int, max_steps: int) -> float:
        warm = self.warmup_teacher_temp_fraction * max_steps
        if warm <= 0 or step >= warm:
            return self.teacher_temp_final
        return self.warmup_teacher_temp + (self.teacher_temp_final - self.warmup_teacher_temp) * max(step, 0) / warm

    def forward(self, backbone: nn.Module, x1: torch.Tensor, x2: torch.Tensor) -> ObjectiveOutput:
        f1, f2 = self.encode(backbone, x1, x2)
        s1, s2 = self.head(torch.cat([f1, f2])).chunk(2)
        with torch.no_grad():
            t1, t2 = self.target_encode(backbone, x1, x2)
            t = self.target_head(torch.cat([t1, t2]))
        loss = dino([s1, s2], list(t.chunk(2)), self.center, self.student_temp, self.teacher_temp)
        if self.training:
            s = t.detach().sum(dim=0, keepdim=True)
            self._center_sum = s if self._center_sum is None else self._center_sum + s
            self._center_count += t.shape[0]
        return ObjectiveOutput(loss, {"loss": loss.detach(), "teacher_temp": self.teacher_temp.detach().clone(),
                                      "momentum": self.momentum.detach().clone()})

    @torch.no_grad()
    def update_center(self) -> None:
        """Apply the pending teacher-logit mean (all-reduced over processes) to ``center``."""
        if self._center_sum is None:
            # keep collectives matched across ranks even if this rank saw no batch
            s = torch.zeros_like(self.center)
            count = torch.zeros((), dtype=torch.float64, device=self.center.device)
        else:
            s = self._center_sum.to(self.center.dtype)
            count = torch.tensor(float(self._center_count), dtype=torch.float64, device=self.center.device)
        all_reduce_sum(s)
        all_reduce_sum(count)
        # no host read of the count: a step without any teacher logit leaves the centre as it is
        mean = s / count.clamp(min=1).to(s.dtype)
        updated = self.center * self.center_momentum + mean * (1.0 - self.center_momentum)
        self.center.copy_(torch.where(count > 0, updated, self.center))
        self._center_sum, self._center_count = None, 0

    @torch.no_grad()
    def on_step_end(self, step: int, max_steps: int, backbone: nn.Module | None = None) -> None:
        """Teacher EMA, centre update and teacher temperature for the next step."""
        super().on_step_end(step, max_steps, backbone)
        self.update_center()
        self.teacher_temp.fill_(self.teacher_temp_at(step, max_steps))
