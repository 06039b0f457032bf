"""Projection, prediction and DINO heads that sit on top of a backbone's pooled features.

* ``ProjectionHead`` — the MLP g(·) of SimCLR (Chen et al. 2020, arXiv 2002.05709): Linear → BN →
  ReLU → … → Linear, optionally with a BatchNorm on the output (SimSiam, Chen & He 2021,
  arXiv 2011.10566, uses one without affine parameters).
* ``PredictionHead`` — BYOL's / SimSiam's predictor q(·) (Grill et al. 2020, arXiv 2006.07733): a
  two-layer MLP with a hidden BN.
* ``DINOHead`` — DINO's head (Caron et al. 2021, arXiv 2104.14294): MLP to a bottleneck,
  L2-normalisation, then a weight-normalised linear layer to ``out_dim`` prototypes.

Shapes: every head maps (B, in_dim) → (B, out_dim).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrizations

__all__ = ["ProjectionHead", "PredictionHead", "DINOHead", "mlp"]


def mlp(dims: list[int], batch_norm: bool = True, last_bn: bool = False, last_bn_affine: bool = True,
        bias: bool = True) -> nn.Sequential:
    """Linear layers through ``dims`` with BN + ReLU between them (not after the last one unless
    ``last_bn``). dims = [in, hidden..., out] (at least two entries)."""
    if len(dims) < 2 or any(int(d) < 1 for d in dims):
        raise ValueError(f"mlp dims must be >= 2 positive sizes, got {dims}")
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        last = i == len(dims) - 2
        layers.append(nn.Linear(a, b, bias=bias and not (batch_norm and not last)))
        if not last:
            if batch_norm:
                layers.append(nn.BatchNorm1d(b))
            layers.append(nn.ReLU(inplace=True))
    if last_bn:
        layers.append(nn.BatchNorm1d(dims[-1], affine=last_bn_affine))
    return nn.Sequential(*layers)


def _check_features(x: torch.Tensor, in_dim: int, name: str) -> None:
    if x.ndim != 2 or x.shape[1] != in_dim:
        raise ValueError(f"{name} expects features of shape (B, {in_dim}), got {tuple(x.shape)}")


class ProjectionHead(nn.Module):
    """(B, in_dim) → (B, out_dim) MLP with ``num_layers`` linear layers.

    Args:
        in_dim: backbone feature size.
        hidden_dim: width of the hidden layers.
        out_dim: projection size.
        num_layers: linear layers (2 for SimCLR/MoCo v2/BYOL, 3 for SimSiam/Barlow Twins/VICReg).
        batch_norm: BN after hidden layers.
        last_bn: BN on the output (SimSiam: True, ``last_bn_affine=False``).
    """

    def __init__(self, in_dim: int, hidden_dim: int = 2048, out_dim: int = 128, num_layers: int = 2,
                 batch_norm: bool = True, last_bn: bool = False, last_bn_affine: bool = True):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.in_dim, self.out_dim = int(in_dim), int(out_dim)
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        self.net = mlp(dims, batch_norm=batch_norm, last_bn=last_bn, last_bn_affine=last_bn_affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_features(x, self.in_dim, type(self).__name__)
        return self.net(x)


class PredictionHead(ProjectionHead):
    """BYOL / SimSiam predictor: (B, dim) → (B, dim) through a BN-ReLU hidden layer."""

    def __init__(self, dim: int, hidden_dim: int = 512):
        super().__init__(dim, hidden_dim=hidden_dim, out_dim=dim, num_layers=2)


class DINOHead(nn.Module):
    """DINO head: MLP → bottleneck → L2-normalise → weight-normalised Linear(bottleneck, out_dim).

    Args:
        in_dim: backbone feature size.
        out_dim: number of prototypes K (65536 in the paper; a few thousand for small runs).
        hidden_dim, bottleneck_dim, num_layers: the MLP (paper: 2048, 256, 3).
        batch_norm: BN in the MLP (off for ViTs in the paper).
        norm_last_layer: freeze the weight-norm gain at 1 (paper default True; helps stability).
    """

    def __init__(self, in_dim: int, out_dim: int = 4096, hidden_dim: int = 2048, bottleneck_dim: int = 256,
                 num_layers: int = 3, batch_norm: bool = False, norm_last_layer: bool = True):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.in_dim, self.out_dim = int(in_dim), int(out_dim)
        if num_layers == 1:
            self.mlp = nn.Linear(in_dim, bottleneck_dim)
        else:
            layers: list[nn.Module] = [nn.Linear(in_dim, hidden_dim)]
            for _ in range(num_layers - 2):
                layers += ([nn.BatchNorm1d(hidden_dim)] if batch_norm else []) + [nn.GELU(), nn.Linear(hidden_dim, hidden_dim)]
            layers += ([nn.BatchNorm1d(hidden_dim)] if batch_norm else []) + [nn.GELU(), nn.Linear(hidden_dim, bottleneck_dim)]
            self.mlp = nn.Sequential(*layers)
        self.apply(self._init_weights)
        self.last_layer = parametrizations.weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        with torch.no_grad():
            self.last_layer.parametrizations.weight.original0.fill_(1.0)
        self.last_layer.parametrizations.weight.original0.requires_grad = not norm_last_layer

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_features(x, self.in_dim, type(self).__name__)
        x = nn.functional.normalize(self.mlp(x), dim=-1, p=2)
        return self.last_layer(x)
