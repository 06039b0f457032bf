"""Which data flags go together (part of :meth:`mimcl_hub.train.config.TrainConfig.validate`).

Two ways to give training its data:

- ``--video_dataset`` (or nothing: the offline default): both branches from clips;
- ``--train_dataset`` (the view branch's images) + ``--twin_dataset`` (mined twin pairs for the MI branch; needed
  with ``--twin_mode mi`` / ``random``, not read with ``none``), optionally ``--streaming`` (then ``--max_steps``:
  a stream has no length).

Never both: ``--train_dataset`` / ``--twin_dataset`` with ``--video_dataset`` is refused, so is ``--twin_dataset``
without ``--train_dataset``; ``--train_image_column`` belongs to ``--train_dataset``, ``--image_column`` to
``--video_dataset``.
"""

from __future__ import annotations

__all__ = ["data_flag_problems"]


def data_flag_problems(config) -> list[tuple[str, str]]:
    """``(flag, problem)`` for every rule of the module docstring that ``config`` breaks (cheap: nothing is read)."""
    out = []
    if config.video_dataset is not None:
        for flag in ("train_dataset", "twin_dataset"):
            if getattr(config, flag) is not None:
                out.append((flag, "cannot be combined with --video_dataset (which feeds both branches from clips); "
                                  "use --train_dataset (+ --twin_dataset) or --video_dataset"))
    elif config.train_dataset is not None:
        if config.twin_mode in ("mi", "random") and config.twin_dataset is None:
            out.append(("twin_dataset", f"--train_dataset with --twin_mode {config.twin_mode} needs --twin_dataset (the "
                                        "output folder of `mimcl mine SOURCE --output DIR`), or use --twin_mode none"))
    elif config.twin_dataset is not None:
        out.append(("train_dataset", "--twin_dataset needs --train_dataset (the image dataset of the view branch)"))
    if config.train_dataset is None and config.train_image_column is not None:
        out.append(("train_image_column", "needs --train_dataset"))
    if config.train_dataset is not None and config.image_column is not None:
        out.append(("image_column", "is the image column of --video_dataset; with --train_dataset use "
                                    "--train_image_column"))
    if config.streaming:
        if config.train_dataset is None:
            out.append(("streaming", "needs --train_dataset (and --twin_dataset for an MI branch); --video_dataset "
                                     "is not streamed"))
        if isinstance(config.max_steps, int) and config.max_steps <= 0:
            out.append(("max_steps", "--streaming needs --max_steps: a streamed dataset has no length, so epochs "
                                     "cannot define the run"))
    return out
