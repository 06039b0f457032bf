"""SimCLR (Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual
Representations", arXiv 2002.05709): projection MLP + NT-Xent over the 2N views.

Defaults, scaled for small CPU runs: paper projection = 2-layer MLP, hidden 2048 (= ResNet-50
feature size), output 128, τ = 0.1 at batch 4096 (0.5 in the CIFAR setup). Here hidden 512,
output 128 and τ = 0.2 (the value solo-learn uses for small-batch CIFAR runs).
"""

from __future__ import annotations

import torch
from torch import nn

from ..models.heads import ProjectionHead
from .base import Objective, ObjectiveOutput, register_objective
from .distributed import gather_with_grad, is_distributed, rank
from .losses import info_nce

__all__ = ["SimCLR"]


@register_objective("simclr")
class SimCLR(Objective):
    """NT-Xent on projected views; negatives gathered over processes under DDP.

    Args:
        feature_dim: backbone ``num_features``.
        hidden_dim, out_dim, num_layers: projection MLP.
        temperature: τ of the NT-Xent.
        gather_distributed: use all processes' embeddings as negatives.
    """

    paper = "SimCLR (Chen et al. 2020, arXiv 2002.05709)"

    def __init__(self, feature_dim: int, hidden_dim: int = 512, out_dim: int = 128, num_layers: int = 2,
                 temperature: float = 0.2, gather_distributed: bool = True):
        super().__init__(feature_dim, gather_distributed)
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.projector = ProjectionHead(feature_dim, hidden_dim, out_dim, num_layers=num_layers)

    def forward(self, backbone: nn.Module, x1: torch.Tensor, x2: torch.Tensor) -> ObjectiveOutput:
        f1, f2 = self.encode(backbone, x1, x2)
        z1, z2 = self.projector(torch.cat([f1, f2])).chunk(2)
        if self.gather_distributed and is_distributed():
            loss = info_nce(z1, z2, self.temperature, z1_all=gather_with_grad(z1), z2_all=gather_with_grad(z2),
                            rank=rank())
        else:
            loss = info_nce(z1, z2, self.temperature)
        return ObjectiveOutput(loss, {"loss": loss.detach()})
