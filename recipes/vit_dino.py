"""ViT-Tiny/4 (32x32) + DINO in both branches.

Recipe ``vit_dino`` of ``mimcl_hub.train.recipes.RECIPES``, where its settings and papers live:

    python recipes/vit_dino.py [--flags]            # or: accelerate launch recipes/vit_dino.py [--flags]
    python recipes/vit_dino.py --help               # every flag and the paper-scale command
"""

import sys

from mimcl_hub.train import RECIPES, run_recipe

DEFAULTS = RECIPES["vit_dino"].defaults()


def main(argv=None) -> int:
    return run_recipe("vit_dino", argv)


if __name__ == "__main__":
    sys.exit(main())
