r"""ViT-Tiny/4 (32x32) + DINO in both branches, MI-mined twins.

    python recipes/vit_dino.py                      # CPU: offline default clips, a few minutes
    accelerate launch recipes/vit_dino.py [--flags]

DINO (Caron et al. 2021, arXiv 2104.14294): AdamW, lr 5e-4 x batch / 256, weight decay 0.04,
teacher temperature 0.04 (warm-up from 0.04), EMA 0.996 -> 1.0, head out_dim 65536 (4096 on CIFAR).
Two DINO branches keep two EMA teachers; each centre is all-reduced over processes.

Paper-scale on GPUs (e.g. 4 GPUs; global batch 256; the kNN monitor on CIFAR-10 test):

    accelerate launch --multi_gpu --num_processes 4 recipes/vit_dino.py \
        --video_dataset YOUR/video-dataset --eval_dataset uoft-cs/cifar10 --knn_max_train 50000 \
        --knn_max_test 10000 --knn_every 5000 --save_steps 5000 --mixed_precision bf16 \
        --optimizer adamw --learning_rate 5e-4 --weight_decay 0.04 --per_device_train_batch_size 64 \
        --num_train_epochs 800 --max_steps -1 --warmup_ratio 0.01 \
        --objective_args '{"out_dim": 4096, "hidden_dim": 2048, "bottleneck_dim": 256}'

CIFAR-100 / STL-10 kNN: ``--eval_dataset uoft-cs/cifar100`` / ``--eval_dataset tanganke/stl10``
(STL-10 at 96 px: ``--img_size 96``). ``--twin_mode random`` is the paper's ablation, ``--twin_mode
none`` (or ``--mi_weight 0``) the plain baseline. CPU defaults below: learning rates follow the
linear scaling rule (lr x batch / 256) for batch 32.
"""

import sys

from mimcl_hub.train import CPU_RECIPE_DEFAULTS, recipe_main

DEFAULTS = dict(
    CPU_RECIPE_DEFAULTS,
    output_dir="outputs/vit_dino",
    model_name="vit_tiny_patch4_32",
    objective="dino",
    optimizer="adamw",
    learning_rate=0.0005,
    weight_decay=0.04,
)


def main(argv=None) -> int:
    return recipe_main(DEFAULTS, argv, prog="vit_dino.py", description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
