"""Experiment trackers of a run (``--report_to``): which ones, whether they are installed, starting them.

Accelerate does the logging (``Accelerator(log_with=...)``, ``accelerator.log``, only on the main process).
TensorBoard writes its event files to ``OUTPUT_DIR/logs/mimcl_hub`` (``ProjectConfiguration(logging_dir=
OUTPUT_DIR/logs)`` / the project name); wandb writes its run to ``OUTPUT_DIR/logs/wandb`` (unless ``WANDB_DIR`` is
set; ``WANDB_MODE=offline`` works without an account or network). ``--report_to auto`` (the default) is TensorBoard
when it is installed (``pip install "mimcl-hub[tracking]"``), else no tracker and one log line saying so. Every run
also writes ``OUTPUT_DIR/trainer_log.jsonl`` and ``train_results.json`` whatever the trackers.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import asdict
from typing import Any, Optional, Sequence

__all__ = ["PROJECT_NAME", "TRACKERS", "missing_trackers", "report_to_problem", "resolve_trackers", "start_trackers",
           "tracker_available", "tracker_config"]

logger = logging.getLogger("mimcl_hub.train")

#: Accelerate trackers accepted by --report_to (plus "auto", "all" and "none").
TRACKERS = ("tensorboard", "wandb", "comet_ml", "aim", "mlflow", "clearml", "dvclive", "swanlab", "trackio")
#: the trackers' project name: TensorBoard's folder in OUTPUT_DIR/logs, wandb's project
PROJECT_NAME = "mimcl_hub"
#: pip package of each tracker whose name differs from its --report_to name
_PACKAGES = {"comet_ml": "comet-ml"}


def tracker_available(name: str) -> bool:
    """Whether Accelerate can start the tracker ``name`` here (its ``accelerate.utils.is_<name>_available``)."""
    import accelerate.utils

    check = getattr(accelerate.utils, f"is_{name}_available", None)
    return bool(check()) if check is not None else importlib.util.find_spec(name) is not None


def missing_trackers(names: Sequence[str]) -> list[str]:
    """The trackers of ``names`` (--report_to entries) that are not installed ("auto", "all", "none" never are)."""
    return [t for t in names if t in TRACKERS and not tracker_available(t)]


def report_to_problem(flag: str, value: Any) -> Optional[str]:
    """``TrainConfig``'s check of ``--report_to``: known names, auto / all / none alone, named trackers installed
    (a missing one fails before any work, with its pip command)."""
    trackers = [t.strip() for t in str(value).split(",") if t.strip()]
    unknown = [t for t in trackers if t not in (*TRACKERS, "auto", "all", "none")]
    if unknown or not trackers:
        return f"unknown tracker(s) {unknown or value!r}; use auto, none, all or some of {', '.join(TRACKERS)}"
    if len(trackers) > 1 and set(trackers) & {"auto", "all", "none"}:
        return f"{value!r}: auto, all and none stand alone; or give a comma list of {', '.join(TRACKERS)}"
    missing = missing_trackers(trackers)
    if missing:
        return (f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed (pip install "
                f"{' '.join(_PACKAGES.get(t, t) for t in missing)}"
                + (", or pip install 'mimcl-hub[tracking]' for TensorBoard" if "tensorboard" in missing else "")
                + "); or use --report_to auto / none")
    return None


def resolve_trackers(report_to: str) -> list[str]:
    """The Accelerate ``log_with`` names of ``--report_to``: ``auto`` = ``["tensorboard"]`` when TensorBoard is
    installed, else ``[]``; ``none`` = ``[]``; ``all`` = ``["all"]`` (Accelerate: every installed tracker); otherwise
    the comma list as given (validated by ``TrainConfig``: known and installed)."""
    names = [t.strip() for t in report_to.split(",") if t.strip()]
    if names == ["none"]:
        return []
    if names == ["auto"]:
        return ["tensorboard"] if tracker_available("tensorboard") else []
    return names


def start_trackers(accelerator, config) -> None:
    """``accelerator.init_trackers`` with the run's config (wandb: the run named after ``output_dir``, its files in
    ``OUTPUT_DIR/logs`` unless ``WANDB_DIR`` is set), then one log line on the main process saying where the metrics
    go (or, for ``--report_to auto`` without TensorBoard, that they go only to the log files and how to get it)."""
    wandb = {"name": os.path.basename(os.path.abspath(config.output_dir))}
    if not os.environ.get("WANDB_DIR") and set(resolve_trackers(config.report_to)) & {"wandb", "all"}:
        wandb["dir"] = os.path.join(config.output_dir, "logs")
        if accelerator.is_main_process:
            os.makedirs(wandb["dir"], exist_ok=True)
    accelerator.init_trackers(PROJECT_NAME, config=tracker_config(config), init_kwargs={"wandb": wandb})
    if not accelerator.is_main_process:
        return
    names = [f"TensorBoard (tensorboard --logdir {accelerator.logging_dir})" if t.name == "tensorboard" else t.name
             for t in accelerator.trackers]
    files = f"{os.path.join(config.output_dir, 'trainer_log.jsonl')} and train_results.json"
    if names:
        logger.info("metrics go to %s, %s", ", ".join(names), files)
    elif config.report_to.strip() == "auto":
        logger.info("--report_to auto: TensorBoard is not installed, so metrics go only to the log, %s. For "
                    "TensorBoard curves: pip install \"mimcl-hub[tracking]\" (or pick a tracker with --report_to, "
                    "e.g. wandb; --report_to none hides this line)", files)


def tracker_config(config) -> dict[str, Any]:
    """The config as flat scalars (TensorBoard hparams reject None and containers)."""
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in asdict(config).items()}
