"""VICReg (Bardes, Ponce & LeCun 2021, "VICReg: Variance-Invariance-Covariance Regularization for
Self-Supervised Learning", arXiv 2105.04906): invariance MSE + variance hinge + covariance
penalty on the expander outputs (``losses.vicreg``).

Defaults, scaled for small CPU runs: paper = 3-layer expander of width 8192, λ = μ = 25, ν = 1,
ε = 1e-4. Here 3 layers of width 512 with the paper's weights. Under DDP the variance and
covariance use the gathered global batch (the official code gathers too).
"""

from __future__ import annotations

import torch
from torch import nn

from ..models.heads import ProjectionHead
from .base import Objective, ObjectiveOutput, register_objective
from .distributed import gather_with_grad
from .losses import vicreg

__all__ = ["VICReg"]


@register_objective("vicreg")
class VICReg(Objective):
    """VICReg.

    Args:
        feature_dim: backbone ``num_features``.
        hidden_dim, out_dim, num_layers: expander MLP.
        sim_weight, var_weight, cov_weight: λ, μ, ν of the paper.
        eps: added to the variance before the square root.
    """

    paper = "VICReg (Bardes, Ponce & LeCun 2021, arXiv 2105.04906)"

    def __init__(self, feature_dim: int, hidden_dim: int = 512, out_dim: int = 512, num_layers: int = 3,
                 sim_weight: float = 25.0, var_weight: float = 25.0, cov_weight: float = 1.0, eps: float = 1e-4,
                 gather_distributed: bool = True):
        super().__init__(feature_dim, gather_distributed)
        for name, w in (("sim_weight", sim_weight), ("var_weight", var_weight), ("cov_weight", cov_weight)):
            if w < 0:
                raise ValueError(f"{name} must be >= 0, got {w}")
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.sim_weight, self.var_weight, self.cov_weight, self.eps = map(float, (sim_weight, var_weight, cov_weight, eps))
        self.projector = ProjectionHead(feature_dim, hidden_dim, out_dim, num_layers=num_layers)

    def forward(self, backbone: nn.Module, x1: torch.Tensor, x2: torch.Tensor) -> ObjectiveOutput:
        f1, f2 = self.encode(backbone, x1, x2)
        z1, z2 = self.projector(torch.cat([f1, f2])).chunk(2)
        if self.gather_distributed:
            z1, z2 = gather_with_grad(z1), gather_with_grad(z2)
        loss, terms = vicreg(z1, z2, self.sim_weight, self.var_weight, self.cov_weight, self.eps, return_terms=True)
        return ObjectiveOutput(loss, {"loss": loss.detach(), **{k: v.detach() for k, v in terms.items()}})
