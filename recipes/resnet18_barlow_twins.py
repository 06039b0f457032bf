"""ResNet-18 (CIFAR stem) + Barlow Twins in both branches.

Recipe ``resnet18_barlow_twins`` of ``mimcl_hub.train.recipes.RECIPES``, where its settings and papers live:

    python recipes/resnet18_barlow_twins.py [--flags]            # or: accelerate launch recipes/resnet18_barlow_twins.py [--flags]
    python recipes/resnet18_barlow_twins.py --help               # every flag and the paper-scale command
"""

import sys

from mimcl_hub.train import RECIPES, run_recipe

DEFAULTS = RECIPES["resnet18_barlow_twins"].defaults()


def main(argv=None) -> int:
    return run_recipe("resnet18_barlow_twins", argv)


if __name__ == "__main__":
    sys.exit(main())
