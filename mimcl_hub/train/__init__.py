"""Training: the Accelerate loop, its configuration (HfArgumentParser dataclass) and checkpoints.

    from mimcl_hub.train import TrainConfig, train
    result = train(TrainConfig(output_dir="runs/demo", max_steps=20))

Recipes (``recipes/*.py``) are a dict of defaults plus :func:`recipe_main`; they run with
``python recipes/vit_simclr.py [--flags]`` or ``accelerate launch recipes/vit_simclr.py [--flags]``.
"""

from __future__ import annotations

import sys
from typing import Any, Mapping, Optional, Sequence

from .checkpoint import (CheckpointError, OutputDirError, OutputDirLockedError, TrainingState, latest_checkpoint,
                         list_checkpoints, resolve_checkpoint, save_checkpoint)
from .config import CPU_RECIPE_DEFAULTS, ConfigError, TrainConfig, config_parser, parse_config
from .loop import NonFiniteLossError, ProcessesOutOfSyncError, PushError, TrainResult, build_optimizer, lr_lambda, train

__all__ = [
    "CPU_RECIPE_DEFAULTS", "CheckpointError", "ConfigError", "NonFiniteLossError", "OutputDirError", "OutputDirLockedError", "ProcessesOutOfSyncError", "PushError",
    "TrainConfig", "TrainResult", "TrainingState", "build_optimizer", "config_parser", "latest_checkpoint",
    "list_checkpoints", "lr_lambda", "parse_config", "recipe_main", "resolve_checkpoint", "save_checkpoint", "train",
]


def recipe_main(defaults: Mapping[str, Any], argv: Optional[Sequence[str]] = None, prog: Optional[str] = None,
                description: Optional[str] = None) -> int:
    """Parse flags over a recipe's ``defaults``, train, print the result; returns a process exit code.

    Configuration errors print ``error: ...`` and return 2 (like argparse); a run stopped by a
    non-finite loss, a busy output folder or a checkpoint problem prints the reason and returns 1.
    """
    try:
        config = parse_config(argv, defaults=defaults, prog=prog, description=description)
    except ConfigError as e:
        print(f"{prog or 'mimcl train'}: error: {e}", file=sys.stderr)
        return 2
    try:
        result = train(config)
    except ConfigError as e:
        print(f"{prog or 'mimcl train'}: error: {e}", file=sys.stderr)
        return 2
    except (NonFiniteLossError, OutputDirError, OutputDirLockedError, CheckpointError, ProcessesOutOfSyncError,
            PushError) as e:
        print(f"{prog or 'mimcl train'}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    if result.encoder_dir:
        knn = result.metrics.get("knn_top1")
        print(f"encoder saved to {result.encoder_dir} after {result.global_step} steps "
              f"({result.train_runtime:.1f} s; loss {result.train_loss:.4f}"
              + (f"; kNN top-1 {knn:.4f}" if knn is not None else "") + ")")
    return 0
