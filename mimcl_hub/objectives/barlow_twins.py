"""Barlow Twins (Zbontar et al. 2021, "Barlow Twins: Self-Supervised Learning via Redundancy
Reduction", arXiv 2103.03230): make the cross-correlation of the two views' batch-standardised
projections the identity (``losses.barlow_twins``).

Defaults, scaled for small CPU runs: paper = 3-layer projector of width 8192, λ = 5e-3
(≈ 0.0051). Here 3 layers of width 512, λ = 5e-3. Under DDP the batch statistics and the
cross-correlation use the gathered global batch (as the paper's all-reduced ``c``).
"""

from __future__ import annotations

import torch
from torch import nn

from ..models.heads import ProjectionHead
from .base import Objective, ObjectiveOutput, register_objective
from .distributed import gather_with_grad
from .losses import barlow_twins

__all__ = ["BarlowTwins"]


@register_objective("barlow_twins")
class BarlowTwins(Objective):
    """Barlow Twins.

    Args:
        feature_dim: backbone ``num_features``.
        hidden_dim, out_dim, num_layers: projector MLP.
        lambd: weight of the off-diagonal (redundancy) term.
    """

    paper = "Barlow Twins (Zbontar et al. 2021, arXiv 2103.03230)"

    def __init__(self, feature_dim: int, hidden_dim: int = 512, out_dim: int = 512, num_layers: int = 3,
                 lambd: float = 5e-3, gather_distributed: bool = True):
        super().__init__(feature_dim, gather_distributed)
        if lambd < 0:
            raise ValueError(f"lambd must be >= 0, got {lambd}")
        self.lambd = float(lambd)
        self.projector = ProjectionHead(feature_dim, hidden_dim, out_dim, num_layers=num_layers)

    def forward(self, backbone: nn.Module, x1: torch.Tensor, x2: torch.Tensor) -> ObjectiveOutput:
        f1, f2 = self.encode(backbone, x1, x2)
        z1, z2 = self.projector(torch.cat([f1, f2])).chunk(2)
        if self.gather_distributed:
            z1, z2 = gather_with_grad(z1), gather_with_grad(z2)
        loss, terms = barlow_twins(z1, z2, self.lambd, return_terms=True)
        return ObjectiveOutput(loss, {"loss": loss.detach(), "on_diag": terms["on_diag"].detach(),
                                      "off_diag": terms["off_diag"].detach()})
