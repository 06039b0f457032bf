"""Hub-ready encoder folders: timm ``config.json`` + ``model.safetensors`` + model card (``README.md``)."""

from .save import atomic_folder, build_card, encoder_config, save_encoder

__all__ = ["atomic_folder", "build_card", "encoder_config", "save_encoder"]
