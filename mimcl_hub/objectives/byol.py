"""BYOL (Grill et al. 2020, "Bootstrap your own latent", arXiv 2006.07733): online backbone +
projector + predictor regress the momentum target's projection of the other view.

Loss: symmetrised negative cosine ``½[−cos(p1, z̄2) − cos(p2, z̄1)]`` (``losses.negative_cosine``);
the paper's ``2 − 2·cos`` summed over both directions equals ``4 + 4·loss`` — the same objective.

Defaults, scaled for small CPU runs: paper = projector and predictor 2-layer MLPs with hidden 4096
and output 256, τ from 0.996 → 1 (cosine). Here hidden 512, output 128, predictor hidden 512 and
τ 0.99 → 1 (the value used for short / small-image runs, e.g. solo-learn's CIFAR configs).
"""

from __future__ import annotations

import torch
from torch import nn

from ..models.heads import PredictionHead, ProjectionHead
from .base import MomentumObjective, ObjectiveOutput, register_objective
from .losses import negative_cosine

__all__ = ["BYOL"]


@register_objective("byol")
class BYOL(MomentumObjective):
    """BYOL with an EMA target backbone + projector.

    Args:
        feature_dim: backbone ``num_features``.
        hidden_dim, out_dim, num_layers: projector MLP.
        pred_hidden_dim: predictor hidden width.
        momentum_base, momentum_final: target EMA τ schedule (cosine).
    """

    paper = "BYOL (Grill et al. 2020, arXiv 2006.07733)"
    released = "online"        # BYOL evaluates the online encoder; the target is its EMA

    def __init__(self, feature_dim: int, hidden_dim: int = 512, out_dim: int = 128, num_layers: int = 2,
                 pred_hidden_dim: int = 512, momentum_base: float = 0.99, momentum_final: float = 1.0,
                 gather_distributed: bool = True):
        super().__init__(feature_dim, momentum_base, momentum_final, gather_distributed)
        self.projector = ProjectionHead(feature_dim, hidden_dim, out_dim, num_layers=num_layers)
        self.predictor = PredictionHead(out_dim, pred_hidden_dim)
        self._make_target_head("projector", "target_projector")

    def forward(self, backbone: nn.Module, x1: torch.Tensor, x2: torch.Tensor) -> ObjectiveOutput:
        f1, f2 = self.encode(backbone, x1, x2)
        p1, p2 = self.predictor(self.projector(torch.cat([f1, f2]))).chunk(2)
        with torch.no_grad():
            t1, t2 = self.target_encode(backbone, x1, x2)
            z1, z2 = self.target_projector(torch.cat([t1, t2])).chunk(2)
        loss = 0.5 * (negative_cosine(p1, z2) + negative_cosine(p2, z1))
        return ObjectiveOutput(loss, {"loss": loss.detach(), "momentum": self.momentum.detach().clone()})
