"""Train the vit_simclr recipe with a fault plan (tests only): ``python tests/train_with_faults.py PLAN_JSON [--flags]``.

``PLAN_JSON`` holds :class:`mimcl_hub.train.FaultPlan` fields, e.g. ``'{"kill_in_checkpoint_at_step": 6}'``. Runs
under ``python`` or ``accelerate launch`` like a recipe; errors propagate (their type name reaches stderr).
"""

import json
import sys

from mimcl_hub.train import RECIPES, FaultPlan, parse_config, train

if __name__ == "__main__":
    plan = FaultPlan(**json.loads(sys.argv[1]))
    train(parse_config(sys.argv[2:], defaults=RECIPES["vit_simclr"].defaults()), faults=plan)
