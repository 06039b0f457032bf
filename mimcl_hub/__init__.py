"""mimcl_hub: mutual-information-guided visual contrastive learning (InfoAug, arXiv 2511.00028)
on timm backbones and the Hugging Face ecosystem."""

from . import models  # registers the small-image timm variants (resnet18_cifar, vit_tiny_patch4_32, ...)
from .errors import ClipError

__version__ = "0.1.0"

__all__ = ["ClipError", "MIMCLEncoder", "__version__"]


def __getattr__(name: str):
    if name == "MIMCLEncoder":      # lazy: loading folders is not needed to import the package
        from .hub.encoder import MIMCLEncoder

        return MIMCLEncoder
    raise AttributeError(f"module 'mimcl_hub' has no attribute {name!r}")
