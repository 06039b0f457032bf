"""Backbones (timm, incl. small-image variants registered in timm's registry) and heads.

Importing this package registers ``resnet18_cifar``, ``resnet50_cifar``, ``vit_tiny_patch4_32``,
``vit_small_patch4_32`` and ``vit_tiny_patch8_64`` with ``timm.create_model``.
"""

from .backbones import (
    REQUIRES_MIMCL_HUB,
    SMALL_IMAGE_MODELS,
    OfflineWeightsError,
    backbone_data_config,
    create_backbone,
    timm_config_for,
)
from .heads import DINOHead, PredictionHead, ProjectionHead

__all__ = [
    "DINOHead",
    "OfflineWeightsError",
    "PredictionHead",
    "ProjectionHead",
    "REQUIRES_MIMCL_HUB",
    "SMALL_IMAGE_MODELS",
    "backbone_data_config",
    "create_backbone",
    "timm_config_for",
]
