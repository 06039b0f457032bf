"""SimSiam (Chen & He 2020, "Exploring Simple Siamese Representation Learning", arXiv 2011.10566):
projector + predictor, stop-gradient on the other branch, no momentum encoder, no negatives.

Loss: ``½[−cos(p1, sg(z2)) − cos(p2, sg(z1))]`` (paper eq. 3; ``losses.negative_cosine``).

Defaults, scaled for small CPU runs: paper (ImageNet) = 3-layer projector of width 2048 with a BN
(no affine) on the output, predictor 2048 → 512 → 2048; the paper's CIFAR variant uses a 2-layer
projector. Here a 2-layer projector 512 → 512 with the output BN, predictor 512 → 128 → 512 (the
paper's 4× bottleneck).
"""

from __future__ import annotations

import torch
from torch import nn

from ..models.heads import PredictionHead, ProjectionHead
from .base import Objective, ObjectiveOutput, register_objective
from .losses import negative_cosine

__all__ = ["SimSiam"]


@register_objective("simsiam")
class SimSiam(Objective):
    """SimSiam.

    Args:
        feature_dim: backbone ``num_features``.
        hidden_dim, out_dim, num_layers: projector MLP (output BN without affine, as the paper).
        pred_hidden_dim: predictor bottleneck width.
    """

    paper = "SimSiam (Chen & He 2020, arXiv 2011.10566)"

    def __init__(self, feature_dim: int, hidden_dim: int = 512, out_dim: int = 512, num_layers: int = 2,
                 pred_hidden_dim: int = 128, gather_distributed: bool = True):
        super().__init__(feature_dim, gather_distributed)
        self.projector = ProjectionHead(feature_dim, hidden_dim, out_dim, num_layers=num_layers,
                                        last_bn=True, last_bn_affine=False)
        self.predictor = PredictionHead(out_dim, pred_hidden_dim)

    def forward(self, backbone: nn.Module, x1: torch.Tensor, x2: torch.Tensor) -> ObjectiveOutput:
        f1, f2 = self.encode(backbone, x1, x2)
        z = self.projector(torch.cat([f1, f2]))
        p1, p2 = self.predictor(z).chunk(2)
        z1, z2 = z.chunk(2)
        loss = 0.5 * (negative_cosine(p1, z2) + negative_cosine(p2, z1))
        with torch.no_grad():   # collapse monitor: per-dimension std of the normalised output (≈ 1/sqrt(D) when healthy)
            zstd = torch.nn.functional.normalize(z1, dim=1).std(dim=0).mean()
        return ObjectiveOutput(loss, {"loss": loss.detach(), "z_std": zstd})
