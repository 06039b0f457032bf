"""Training: the Accelerate loop, its configuration (HfArgumentParser dataclass), checkpoints and the recipes.

    from mimcl_hub.train import TrainConfig, train
    result = train(TrainConfig(output_dir="runs/demo", max_steps=20))

Recipes (:data:`~mimcl_hub.train.recipes.RECIPES`) are data in the package; they run with
``python recipes/vit_simclr.py [--flags]``, ``accelerate launch recipes/vit_simclr.py [--flags]`` or
``mimcl train --recipe vit_simclr [--flags]``.
"""

from __future__ import annotations

from .checkpoint import (CheckpointError, OutputDirError, OutputDirLockedError, TrainingState, latest_checkpoint,
                         list_checkpoints, resolve_checkpoint, save_checkpoint)
from .config import ConfigError, TrainConfig, config_parser, parse_config
from .faults import FaultPlan
from .loop import NonFiniteLossError, PushError, TrainingInterrupted, TrainResult, train
from .optim import build_optimizer, lr_lambda
from .processes import ProcessesOutOfSyncError
from .recipes import CPU_RECIPE_DEFAULTS, RECIPES, Recipe, recipe_main, run_recipe

__all__ = [
    "CPU_RECIPE_DEFAULTS", "CheckpointError", "ConfigError", "FaultPlan", "NonFiniteLossError", "OutputDirError",
    "OutputDirLockedError", "ProcessesOutOfSyncError", "PushError", "RECIPES", "Recipe", "TrainConfig",
    "TrainResult", "TrainingInterrupted", "TrainingState", "build_optimizer", "config_parser", "latest_checkpoint",
    "list_checkpoints", "lr_lambda", "parse_config", "recipe_main", "resolve_checkpoint", "run_recipe",
    "save_checkpoint", "train",
]
