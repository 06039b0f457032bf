r"""ResNet-18 (CIFAR stem) + SimSiam in both branches, MI-mined twins.

    python recipes/resnet18_simsiam.py                      # CPU: offline default clips, a few minutes
    accelerate launch recipes/resnet18_simsiam.py [--flags]

SimSiam (Chen & He 2021, arXiv 2011.10566), CIFAR settings: SGD, lr 0.05 x batch / 256 (0.5 in
solo-learn at batch 256), weight decay 5e-4 (1e-5 in solo-learn), projector 2048, predictor 512, 800 epochs.

Paper-scale on GPUs (e.g. 4 GPUs; global batch 256; the kNN monitor on CIFAR-10 test):

    accelerate launch --multi_gpu --num_processes 4 recipes/resnet18_simsiam.py \
        --video_dataset YOUR/video-dataset --eval_dataset uoft-cs/cifar10 --knn_max_train 50000 \
        --knn_max_test 10000 --knn_every 5000 --save_steps 5000 --mixed_precision bf16 \
        --optimizer sgd --learning_rate 0.5 --weight_decay 1e-5 --per_device_train_batch_size 64 \
        --num_train_epochs 800 --max_steps -1 --warmup_ratio 0.01 \
        --objective_args '{"hidden_dim": 2048, "out_dim": 2048, "pred_hidden_dim": 512}'

CIFAR-100 / STL-10 kNN: ``--eval_dataset uoft-cs/cifar100`` / ``--eval_dataset tanganke/stl10``
(STL-10 at 96 px: ``--img_size 96``). ``--twin_mode random`` is the paper's ablation, ``--twin_mode
none`` (or ``--mi_weight 0``) the plain baseline. CPU defaults below: learning rates follow the
linear scaling rule (lr x batch / 256) for batch 32.
"""

import sys

from mimcl_hub.train import CPU_RECIPE_DEFAULTS, recipe_main

DEFAULTS = dict(
    CPU_RECIPE_DEFAULTS,
    output_dir="outputs/resnet18_simsiam",
    model_name="resnet18_cifar",
    objective="simsiam",
    optimizer="sgd",
    learning_rate=0.0625,
    weight_decay=1e-05,
)


def main(argv=None) -> int:
    return recipe_main(DEFAULTS, argv, prog="resnet18_simsiam.py", description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
