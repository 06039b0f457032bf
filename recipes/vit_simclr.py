r"""ViT-Tiny/4 (32x32) + SimCLR in both branches, MI-mined twins — the default InfoAug recipe.

    python recipes/vit_simclr.py                      # CPU: offline default clips, a few minutes
    accelerate launch recipes/vit_simclr.py [--flags]

Paper-scale on GPUs (e.g. 4x A100; the kNN monitor on CIFAR-10 test; any HF image or video dataset):

    accelerate launch --multi_gpu --num_processes 4 recipes/vit_simclr.py \
        --video_dataset YOUR/video-dataset --eval_dataset uoft-cs/cifar10 --knn_max_train 50000 \
        --knn_max_test 10000 --per_device_train_batch_size 256 --num_train_epochs 200 --max_steps -1 \
        --learning_rate 5e-4 --weight_decay 0.05 --warmup_ratio 0.05 --mixed_precision bf16 \
        --knn_every 1000 --save_steps 1000 --objective_args '{"hidden_dim": 2048, "temperature": 0.2}'

Other kNN sets: ``--eval_dataset uoft-cs/cifar100``, ``--eval_dataset tanganke/stl10`` (with
``--img_size 96 --model_name vit_tiny_patch8_64`` or similar). ``--twin_mode random`` is the
paper's ablation, ``--twin_mode none`` (or ``--mi_weight 0``) the SimCLR baseline.
"""

import sys

from mimcl_hub.train import CPU_RECIPE_DEFAULTS, recipe_main

DEFAULTS = dict(
    CPU_RECIPE_DEFAULTS,
    output_dir="outputs/vit_simclr",
    model_name="vit_tiny_patch4_32",
    objective="simclr",
    mi_objective="simclr",
    optimizer="adamw",
    learning_rate=1e-3,
    weight_decay=0.05,
)


def main(argv=None) -> int:
    return recipe_main(DEFAULTS, argv, prog="vit_simclr.py", description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
