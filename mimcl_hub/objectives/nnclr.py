"""NNCLR (Dwibedi et al. 2021, "With a Little Help from My Friends: Nearest-Neighbor Contrastive
Learning of Visual Representations", arXiv 2104.14548): the positive of a view is the nearest
neighbour of its projection in a support set (a FIFO queue of past projections).

Loss: ``½[ℓ(NN(z1), p2) + ℓ(NN(z2), p1)]`` with ``losses.nnclr_info_nce``; the support set is
filled with the (gathered, detached) view-1 projections after each training forward. Until the
support set holds any entry, the embeddings themselves stand in for their neighbours.

Defaults, scaled for small CPU runs: paper = 3-layer projector (2048 hidden, 256 out), predictor
hidden 4096, τ = 0.1, support set 98304. Here projector 512 → 128 (3 layers), predictor hidden
512, τ = 0.1, support set 4096.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..models.heads import PredictionHead, ProjectionHead
from .base import Objective, ObjectiveOutput, register_objective
from .distributed import gather, gather_with_grad, is_distributed, rank
from .losses import nnclr_info_nce

__all__ = ["NNCLR"]


@register_objective("nnclr")
class NNCLR(Objective):
    """NNCLR with a (support_size, out_dim) support-set buffer.

    Args:
        feature_dim: backbone ``num_features``.
        hidden_dim, out_dim, num_layers: projector MLP.
        pred_hidden_dim: predictor hidden width.
        temperature: τ.
        support_size: number of support-set entries.
    """

    paper = "NNCLR (Dwibedi et al. 2021, arXiv 2104.14548)"

    def __init__(self, feature_dim: int, hidden_dim: int = 512, out_dim: int = 128, num_layers: int = 3,
                 pred_hidden_dim: int = 512, temperature: float = 0.1, support_size: int = 4096,
                 gather_distributed: bool = True):
        super().__init__(feature_dim, gather_distributed)
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if isinstance(support_size, bool) or not isinstance(support_size, int) or support_size < 1:
            raise ValueError(f"support_size must be a positive int, got {support_size!r}")
        self.temperature = float(temperature)
        self.projector = ProjectionHead(feature_dim, hidden_dim, out_dim, num_layers=num_layers)
        self.predictor = PredictionHead(out_dim, pred_hidden_dim)
        self.register_buffer("support", torch.zeros(support_size, out_dim))
        self.register_buffer("support_ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("support_count", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def nearest_neighbours(self, z: torch.Tensor) -> torch.Tensor:
        """(n, D) → (n, D): each row's nearest (cosine) support-set entry."""
        z = F.normalize(z.detach(), dim=1)
        # no host read of the fill level: empty slots are masked out, and an empty set returns z itself
        filled = torch.arange(self.support.shape[0], device=z.device) < self.support_count
        sim = (z @ self.support.T.to(z.dtype)).masked_fill(~filled, float("-inf"))
        nearest = self.support[sim.argmax(dim=1)].to(z.dtype)
        return torch.where(self.support_count > 0, nearest, z)

    @torch.no_grad()
    def _enqueue(self, z: torch.Tensor) -> None:
        z = F.normalize(gather(z.detach()), dim=1)
        k = self.support.shape[0]
        z = z[-k:]
        idx = (torch.arange(z.shape[0], device=z.device) + self.support_ptr) % k
        self.support[idx] = z.to(self.support.dtype)
        self.support_ptr.copy_((self.support_ptr + z.shape[0]) % k)
        self.support_count.copy_((self.support_count + z.shape[0]).clamp(max=k))

    def forward(self, backbone: nn.Module, x1: torch.Tensor, x2: torch.Tensor) -> ObjectiveOutput:
        f1, f2 = self.encode(backbone, x1, x2)
        z = self.projector(torch.cat([f1, f2]))
        p1, p2 = self.predictor(z).chunk(2)
        z1, z2 = z.chunk(2)
        nn1, nn2 = self.nearest_neighbours(z1), self.nearest_neighbours(z2)
        if self.gather_distributed and is_distributed():
            r = rank()
            loss = 0.5 * (nnclr_info_nce(nn1, p2, self.temperature, p_all=gather_with_grad(p2), rank=r)
                          + nnclr_info_nce(nn2, p1, self.temperature, p_all=gather_with_grad(p1), rank=r))
        else:
            loss = 0.5 * (nnclr_info_nce(nn1, p2, self.temperature) + nnclr_info_nce(nn2, p1, self.temperature))
        if self.training:
            self._enqueue(z1)
        return ObjectiveOutput(loss, {"loss": loss.detach()})
