"""MoCo v2 (He et al. 2019, arXiv 1911.05722; Chen et al. 2020, "Improved Baselines with Momentum
Contrastive Learning", arXiv 2003.04297): query encoder + momentum key encoder + a queue of keys.

Defaults, scaled for small CPU runs: paper = 2-layer MLP head (hidden 2048, out 128), τ = 0.2,
queue K = 65536, constant momentum m = 0.999. Here hidden 512, out 128, τ = 0.2, K = 4096 and a
cosine momentum 0.99 → 0.999 (solo-learn's "MoCo v2+"; short runs need a faster-moving key
encoder). ``symmetric=True`` (default) averages the loss over both (query, key) directions and
enqueues the keys of both views; ``symmetric=False`` is the paper's asymmetric loss (q = view 1,
k = view 2, keys of view 2 enqueued).

The queue is initialised with random unit vectors (as the paper's code) and filled with the keys
of *all* processes (non-differentiable all-gather), so it stays identical on every rank. The
queue, its pointer and the key encoder are buffers / submodules, hence in ``state_dict()``.
Shuffling BN (the paper's multi-GPU trick) is not implemented: on one device it is a no-op;
under DDP use SyncBatchNorm or accept the (small) leak.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..models.heads import ProjectionHead
from .base import MomentumObjective, ObjectiveOutput, register_objective
from .distributed import gather
from .losses import moco_info_nce

__all__ = ["MoCo"]


@register_objective("moco")
class MoCo(MomentumObjective):
    """MoCo v2 with a momentum-updated key backbone + projector and a (queue_size, out_dim) queue.

    Args:
        feature_dim: backbone ``num_features``.
        hidden_dim, out_dim, num_layers: projection MLP (also copied for the key encoder).
        temperature: τ.
        queue_size: number of negative keys K.
        momentum_base, momentum_final: EMA schedule of the key encoder (cosine).
        symmetric: symmetric loss over both views (see module docstring).
    """

    paper = "MoCo v2 (Chen et al. 2020, arXiv 2003.04297)"
    released = "query"         # MoCo evaluates the query encoder; keys come from its EMA

    def __init__(self, feature_dim: int, hidden_dim: int = 512, out_dim: int = 128, num_layers: int = 2,
                 temperature: float = 0.2, queue_size: int = 4096, momentum_base: float = 0.99,
                 momentum_final: float = 0.999, symmetric: bool = True, gather_distributed: bool = True):
        super().__init__(feature_dim, momentum_base, momentum_final, gather_distributed)
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
            raise ValueError(f"queue_size must be a positive int, got {queue_size!r}")
        self.temperature = float(temperature)
        self.symmetric = bool(symmetric)
        self.projector = ProjectionHead(feature_dim, hidden_dim, out_dim, num_layers=num_layers)
        self._make_target_head("projector", "target_projector")
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, out_dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def _enqueue(self, keys: torch.Tensor) -> None:
        keys = gather(keys.detach())
        k = self.queue.shape[0]
        keys = keys[-k:]                               # more keys than slots: keep the newest
        # the pointer stays on the device (no host read): slot indices are computed from the tensor
        idx = (torch.arange(keys.shape[0], device=self.queue.device) + self.queue_ptr) % k
        self.queue[idx] = F.normalize(keys, dim=1).to(self.queue.dtype)
        self.queue_ptr.copy_((self.queue_ptr + keys.shape[0]) % k)

    def forward(self, backbone: nn.Module, x1: torch.Tensor, x2: torch.Tensor) -> ObjectiveOutput:
        f1, f2 = self.encode(backbone, x1, x2)
        q1, q2 = self.projector(torch.cat([f1, f2])).chunk(2)
        with torch.no_grad():
            t1, t2 = self.target_encode(backbone, x1, x2)
            k1, k2 = self.target_projector(torch.cat([t1, t2])).chunk(2)
        queue = self.queue.clone()
        if self.symmetric:
            loss = 0.5 * (moco_info_nce(q1, k2, queue, self.temperature) + moco_info_nce(q2, k1, queue, self.temperature))
        else:
            loss = moco_info_nce(q1, k2, queue, self.temperature)
        if self.training:
            self._enqueue(torch.cat([k1, k2]) if self.symmetric else k2)
        return ObjectiveOutput(loss, {"loss": loss.detach(), "momentum": self.momentum.detach().clone()})
