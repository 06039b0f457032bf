"""mimcl_hub: mutual-information-guided visual contrastive learning (InfoAug, arXiv 2511.00028)
on timm backbones and the Hugging Face ecosystem."""

from . import models  # registers the small-image timm variants (resnet18_cifar, vit_tiny_patch4_32, ...)
from .errors import ClipError

__version__ = "0.1.0"

__all__ = ["ClipError", "__version__"]
