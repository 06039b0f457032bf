"""ResNet-18 (CIFAR stem) + MoCo v2 in both branches.

Recipe ``resnet18_moco`` of ``mimcl_hub.train.recipes.RECIPES``, where its settings and papers live:

    python recipes/resnet18_moco.py [--flags]            # or: accelerate launch recipes/resnet18_moco.py [--flags]
    python recipes/resnet18_moco.py --help               # every flag and the paper-scale command
"""

import sys

from mimcl_hub.train import RECIPES, run_recipe

DEFAULTS = RECIPES["resnet18_moco"].defaults()


def main(argv=None) -> int:
    return run_recipe("resnet18_moco", argv)


if __name__ == "__main__":
    sys.exit(main())
