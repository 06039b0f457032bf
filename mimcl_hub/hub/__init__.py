"""Hub-ready encoder folders: timm ``config.json`` + ``model.safetensors`` + model card (``README.md``) rendered from
a typed :class:`RunCard`."""

from .card import EvalEntry, RunCard
from .encoder import MIMCLEncoder
from .push import PushError, StaleRevisionError, mask_token, push_encoder
from .save import atomic_folder, build_card, encoder_config, save_encoder

__all__ = ["EvalEntry", "MIMCLEncoder", "PushError", "RunCard", "StaleRevisionError", "atomic_folder", "build_card",
           "encoder_config", "mask_token", "push_encoder", "save_encoder"]
