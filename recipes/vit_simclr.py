"""ViT-Tiny/4 (32x32) + SimCLR in both branches (the default recipe).

Recipe ``vit_simclr`` of ``mimcl_hub.train.recipes.RECIPES``, where its settings and papers live:

    python recipes/vit_simclr.py [--flags]            # or: accelerate launch recipes/vit_simclr.py [--flags]
    python recipes/vit_simclr.py --help               # every flag and the paper-scale command
"""

import sys

from mimcl_hub.train import RECIPES, run_recipe

DEFAULTS = RECIPES["vit_simclr"].defaults()


def main(argv=None) -> int:
    return run_recipe("vit_simclr", argv)


if __name__ == "__main__":
    sys.exit(main())
