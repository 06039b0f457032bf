"""Projection, prediction and DINO heads: shapes, structure and bad input."""

import pytest
import torch
from torch import nn

from mimcl_hub.models.heads import DINOHead, PredictionHead, ProjectionHead, mlp


def test_projection_head_layers_and_shapes():
    head = ProjectionHead(64, hidden_dim=32, out_dim=16, num_layers=3)
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    assert [(l.in_features, l.out_features) for l in linears] == [(64, 32), (32, 32), (32, 16)]
    assert sum(isinstance(m, nn.BatchNorm1d) for m in head.modules()) == 2
    assert head(torch.randn(5, 64)).shape == (5, 16)
    simsiam = ProjectionHead(64, 32, 16, num_layers=3, last_bn=True, last_bn_affine=False)
    out = simsiam.train()(torch.randn(8, 64))
    assert torch.allclose(out.mean(0), torch.zeros(16), atol=1e-5)  # batch-normalised output
    assert isinstance(simsiam.net[-1], nn.BatchNorm1d) and simsiam.net[-1].weight is None


def test_prediction_head_keeps_the_dimension():
    head = PredictionHead(16, hidden_dim=8)
    assert head(torch.randn(4, 16)).shape == (4, 16)


def test_dino_head_normalised_bottleneck_and_frozen_gain():
    head = DINOHead(32, out_dim=50, hidden_dim=24, bottleneck_dim=8, num_layers=3)
    x = torch.randn(6, 32)
    logits = head(x)
    assert logits.shape == (6, 50)
    z = nn.functional.normalize(head.mlp(x), dim=-1)
    w = head.last_layer.weight
    assert torch.allclose(w.norm(dim=1), torch.ones(50), atol=1e-5)  # weight norm with gain 1
    assert torch.allclose(logits, z @ w.T, atol=1e-5)
    frozen = [n for n, p in head.named_parameters() if not p.requires_grad]
    assert frozen == ["last_layer.parametrizations.weight.original0"]
    free = DINOHead(32, out_dim=50, norm_last_layer=False)
    assert all(p.requires_grad for p in free.parameters())
    assert DINOHead(32, out_dim=10, num_layers=1)(x).shape == (6, 10)


def test_heads_reject_bad_input():
    with pytest.raises(ValueError, match=r"expects features of shape \(B, 64\)"):
        ProjectionHead(64)(torch.randn(3, 63))
    with pytest.raises(ValueError, match=r"\(B, 32\)"):
        DINOHead(32)(torch.randn(2, 3, 32))
    with pytest.raises(ValueError, match="num_layers"):
        ProjectionHead(8, num_layers=0)
    with pytest.raises(ValueError, match="mlp dims"):
        mlp([8])
