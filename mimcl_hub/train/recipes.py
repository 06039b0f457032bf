"""Recipes as data: one table of training recipes, each with its paper and where its hyper-parameters come from.

A recipe is a named set of :class:`~mimcl_hub.train.config.TrainConfig` defaults: the backbone and objective,
the settings of a CPU run that finishes in minutes on the offline data (:data:`CPU_RECIPE_DEFAULTS` + the
recipe's own optimizer and learning rate), and the flags of the paper-scale run on GPUs. Every entry point reads
this table: ``python recipes/NAME.py``, ``accelerate launch recipes/NAME.py``, ``mimcl train --recipe NAME`` and
``bench/infoaug_experiment.py`` — so a recipe is defined once, inside the package (a wheel install has it too).

CPU learning rates follow the linear scaling rule (lr x batch / 256) from the papers' settings at batch 256,
for batch 32. The paper-scale settings of the ResNet-18 recipes are solo-learn's CIFAR settings
(``scripts/pretrain/cifar/*.yaml`` of vturrisi/solo-learn) at global batch 256: :data:`SOLO_LEARN_CIFAR`.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

__all__ = ["CPU_RECIPE_DEFAULTS", "RECIPES", "Recipe", "SOLO_LEARN_CIFAR", "load_recipe_file", "recipe_main",
           "run_recipe"]

#: Defaults shared by the recipes' CPU runs: a few minutes on a 2-core CPU with the offline default data
#: (64 steps of 32 images + 32 twin pairs, bf16). Recipes add their backbone, objective, optimizer and lr.
CPU_RECIPE_DEFAULTS: dict[str, Any] = dict(
    img_size=32,
    mi_weight=1.0,
    twin_mode="mi",
    per_device_train_batch_size=32,
    twin_batch_size=None,          # = the batch (32 + 32 twin pairs), and follows --per_device_train_batch_size
    max_steps=64,
    warmup_ratio=0.1,
    mixed_precision="bf16",
    save_steps=32,
    logging_steps=8,
)

#: solo-learn's ResNet-18 CIFAR settings per objective, at global batch 256 (learning rate, weight decay,
#: epochs and head widths), with the paper each objective comes from.
SOLO_LEARN_CIFAR: dict[str, dict[str, Any]] = {
    "simclr": dict(optimizer="lars", learning_rate=0.4, weight_decay=1e-5, num_train_epochs=1000,
                   objective_args={"hidden_dim": 2048, "out_dim": 256, "temperature": 0.2}),
    "moco": dict(optimizer="sgd", learning_rate=0.3, weight_decay=1e-4, num_train_epochs=1000,
                 objective_args={"hidden_dim": 2048, "out_dim": 256, "queue_size": 32768}),
    "byol": dict(optimizer="lars", learning_rate=1.0, weight_decay=1e-5, num_train_epochs=1000,
                 objective_args={"hidden_dim": 4096, "out_dim": 256, "pred_hidden_dim": 4096}),
    "simsiam": dict(optimizer="sgd", learning_rate=0.5, weight_decay=1e-5, num_train_epochs=800,
                    objective_args={"hidden_dim": 2048, "out_dim": 2048, "pred_hidden_dim": 512}),
    "barlow_twins": dict(optimizer="lars", learning_rate=0.3, weight_decay=1e-4, num_train_epochs=1000,
                         objective_args={"hidden_dim": 2048, "out_dim": 2048, "lambd": 0.0051}),
    "vicreg": dict(optimizer="lars", learning_rate=0.3, weight_decay=1e-4, num_train_epochs=1000,
                   objective_args={"hidden_dim": 2048, "out_dim": 2048}),
    "dino": dict(optimizer="lars", learning_rate=0.3, weight_decay=1e-6, num_train_epochs=1000,
                 objective_args={"out_dim": 4096, "hidden_dim": 2048, "bottleneck_dim": 256}),
}

#: The paper-scale run's data, batch and monitor flags (4 GPUs x 64 = global batch 256; kNN on CIFAR-10).
_GPU_COMMON: dict[str, Any] = dict(
    eval_dataset="uoft-cs/cifar10", knn_max_train=50000, knn_max_test=10000, knn_every=5000, save_steps=5000,
    mixed_precision="bf16", per_device_train_batch_size=64, max_steps=-1, warmup_ratio=0.01,
)


@dataclass(frozen=True)
class Recipe:
    """One training recipe.

    Attributes:
        name: the registry key (``recipes/<name>.py``, ``mimcl train --recipe <name>``).
        title: one line: backbone + objective.
        backbone: timm model name.
        objective: ``mimcl_hub.objectives.OBJECTIVES`` name, used in both branches.
        paper: the objective's paper (authors, year, arXiv id).
        settings: where the paper-scale hyper-parameters come from, in words.
        cpu: this recipe's CPU-run values on top of :data:`CPU_RECIPE_DEFAULTS`.
        gpu: the paper-scale flags (on top of the CPU defaults), for ``--help``, the README and the benchmark.
        notes: anything a user should know (EMA copies, gathers).
    """

    name: str
    title: str
    backbone: str
    objective: str
    paper: str
    settings: str
    cpu: Mapping[str, Any]
    gpu: Mapping[str, Any]
    notes: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def defaults(self) -> dict[str, Any]:
        """The ``TrainConfig`` values of the CPU run (``output_dir`` = ``outputs/<name>``)."""
        return dict(CPU_RECIPE_DEFAULTS, output_dir=f"outputs/{self.name}", model_name=self.backbone,
                    objective=self.objective, **self.extra, **self.cpu)

    def gpu_flags(self) -> list[str]:
        """The paper-scale run's flags, as a command line would give them."""
        out = []
        for key, value in {**_GPU_COMMON, **self.gpu}.items():
            text = json.dumps(value) if isinstance(value, Mapping) else str(value)
            out += [f"--{key}", f"'{text}'" if isinstance(value, Mapping) else text]
        return out

    def description(self) -> str:
        """The ``--help`` text: what it trains, the paper, the CPU and the paper-scale commands."""
        flags = self.gpu_flags()
        lines = [" ".join(flags[i:i + 6]) for i in range(0, len(flags), 6)]
        gpu = " \\\n        ".join(lines)
        return (f"{self.title}, MI-mined twins (InfoAug).\n\n"
                f"    python recipes/{self.name}.py                 # CPU: offline default clips, a few minutes\n"
                f"    mimcl train --recipe {self.name} [--flags]    # the same from an installed package\n\n"
                f"{self.paper}. Paper-scale settings: {self.settings}. {self.notes}\n\n"
                f"Paper-scale on GPUs (4 GPUs, global batch 256, kNN monitor on CIFAR-10 test):\n\n"
                f"    accelerate launch --multi_gpu --num_processes 4 recipes/{self.name}.py \\\n"
                f"        --video_dataset YOUR/video-dataset {gpu}\n\n"
                "--twin_mode random is the paper's ablation, --twin_mode none (or --mi_weight 0) the plain baseline. "
                "CPU learning rates follow the linear scaling rule (lr x batch / 256) for batch 32.")


def _resnet18(objective: str, title: str, paper: str, cpu: Mapping[str, Any], notes: str = "") -> Recipe:
    return Recipe(name=f"resnet18_{objective}", title=f"ResNet-18 (CIFAR stem) + {title} in both branches",
                  backbone="resnet18_cifar", objective=objective, paper=paper,
                  settings="solo-learn's CIFAR settings (SOLO_LEARN_CIFAR)", cpu=cpu,
                  gpu=SOLO_LEARN_CIFAR[objective], notes=notes)


#: Every recipe, by name.
RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe(name="vit_simclr", title="ViT-Tiny/4 (32x32) + SimCLR in both branches (the default recipe)",
           backbone="vit_tiny_patch4_32", objective="simclr", extra={"mi_objective": "simclr"},
           paper="SimCLR (Chen et al. 2020, arXiv 2002.05709)",
           settings="AdamW for ViTs (DINO / MoCo v3 practice), lr 5e-4 at batch 256, weight decay 0.05",
           cpu=dict(optimizer="adamw", learning_rate=1e-3, weight_decay=0.05),
           gpu=dict(optimizer="adamw", learning_rate=5e-4, weight_decay=0.05, num_train_epochs=200,
                    warmup_ratio=0.05, objective_args={"hidden_dim": 2048, "temperature": 0.2})),
    Recipe(name="vit_dino", title="ViT-Tiny/4 (32x32) + DINO in both branches", backbone="vit_tiny_patch4_32",
           objective="dino", paper="DINO (Caron et al. 2021, arXiv 2104.14294)",
           settings="the paper's ViT settings: AdamW, lr 5e-4 x batch / 256, weight decay 0.04, teacher "
                    "temperature 0.04, EMA 0.996 -> 1.0, head out_dim 4096 on CIFAR",
           cpu=dict(optimizer="adamw", learning_rate=5e-4, weight_decay=0.04),
           gpu=dict(optimizer="adamw", learning_rate=5e-4, weight_decay=0.04, num_train_epochs=800,
                    objective_args={"out_dim": 4096, "hidden_dim": 2048, "bottleneck_dim": 256}),
           notes="Two DINO branches keep two EMA teachers; each centre is all-reduced over processes."),
    _resnet18("moco", "MoCo v2", "MoCo v2 (Chen et al. 2020, arXiv 2003.04297; He et al. 2019, arXiv 1911.05722)",
              dict(optimizer="sgd", learning_rate=0.0375, weight_decay=1e-4),
              "Each branch has its own key queue; keys of all processes enter it."),
    _resnet18("byol", "BYOL", "BYOL (Grill et al. 2020, arXiv 2006.07733)",
              dict(optimizer="lars", learning_rate=0.125, weight_decay=1e-5),
              "Two BYOL branches keep two EMA copies of the backbone."),
    _resnet18("simsiam", "SimSiam", "SimSiam (Chen & He 2021, arXiv 2011.10566)",
              dict(optimizer="sgd", learning_rate=0.0625, weight_decay=1e-5)),
    _resnet18("barlow_twins", "Barlow Twins", "Barlow Twins (Zbontar et al. 2021, arXiv 2103.03230)",
              dict(optimizer="lars", learning_rate=0.0375, weight_decay=1e-4),
              "The cross-correlation uses the batch of all processes (differentiable gather)."),
    _resnet18("vicreg", "VICReg", "VICReg (Bardes et al. 2022, arXiv 2105.04906)",
              dict(optimizer="lars", learning_rate=0.0375, weight_decay=1e-4),
              "Variance and covariance terms use the batch of all processes (differentiable gather)."),
)}


def load_recipe_file(path: str) -> dict[str, Any]:
    """The ``DEFAULTS`` dict of a user's recipe file (``mimcl train --recipe PATH.py``), run with ``runpy`` (its
    ``if __name__ == "__main__"`` block does not run). Whatever the file does wrong — a syntax error, an exception,
    a missing import, ``sys.exit()``, no ``DEFAULTS`` dict — is a ValueError naming the file (and the line), so a
    broken recipe never trains nothing and exits 0."""
    import runpy
    import traceback

    try:
        namespace = runpy.run_path(path)
    except SyntaxError as e:
        raise ValueError(f"--recipe {path}: not valid Python (line {e.lineno}: {e.msg})") from e
    except BaseException as e:       # noqa: BLE001  SystemExit / KeyboardInterrupt from the file too
        if isinstance(e, KeyboardInterrupt):
            raise
        frames = [f for f in traceback.extract_tb(e.__traceback__) if os.path.abspath(f.filename) == os.path.abspath(path)]
        where = f" at line {frames[-1].lineno}" if frames else ""
        raise ValueError(f"--recipe {path}: running it raised {type(e).__name__}{where}: {e}") from e
    defaults = namespace.get("DEFAULTS")
    if not isinstance(defaults, dict):
        raise ValueError(f"--recipe {path}: the file defines no DEFAULTS dict")
    return defaults


def recipe_main(defaults: Mapping[str, Any], argv: Optional[Sequence[str]] = None, prog: Optional[str] = None,
                description: Optional[str] = None) -> int:
    """Parse flags over ``defaults``, train, print the result; returns a process exit code.

    0: trained. 2: bad input (flags, config file, data source, a checkpoint of another run, a refused push),
    one line on stderr. 1: the run stopped (non-finite loss, busy or full output folder, processes out of sync),
    one line.
    143: stopped by SIGTERM after saving a checkpoint (resume with ``--resume_from_checkpoint latest``).
    """
    from ..errors import exit_code, failure_message
    from .config import parse_config
    from .loop import TrainingInterrupted, train

    prog = prog or "mimcl train"
    try:
        config = parse_config(argv, defaults=defaults, prog=prog, description=description)
        result = train(config)
    except TrainingInterrupted as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 143
    except KeyboardInterrupt:       # Ctrl-C: no checkpoint is saved (SIGTERM saves one); one line, status 130
        print(f"{prog}: interrupted (Ctrl-C); the run keeps its checkpoints so far (continue with "
              "--resume_from_checkpoint latest; send SIGTERM instead to save one first)", file=sys.stderr)
        return 130
    except Exception as e:      # the boundary: a known failure is one line, never a traceback
        code = exit_code(e)
        if code is None:
            raise
        message = failure_message(e)
        print(f"{prog}: error: {message}" if code == 2 else f"{prog}: {type(e).__name__}: {message}", file=sys.stderr)
        return code
    if result.encoder_dir:
        knn = result.metrics.get("knn_top1")
        print(f"encoder saved to {result.encoder_dir} after {result.global_step} steps "
              f"({result.train_runtime:.1f} s; loss {result.train_loss:.4f}"
              + (f"; kNN top-1 {knn:.4f}" if knn is not None else "") + ")")
    return 0


def run_recipe(name: str, argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> int:
    """Train recipe ``name`` of :data:`RECIPES` with command-line flags ``argv`` (default ``sys.argv[1:]``)."""
    if name not in RECIPES:
        raise ValueError(f"no recipe {name!r}; available: {', '.join(sorted(RECIPES))}")
    recipe = RECIPES[name]
    return recipe_main(recipe.defaults(), argv, prog=prog or f"{name}.py", description=recipe.description())
