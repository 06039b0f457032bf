"""Writing datasets: a dataset folder appears complete (with its card) or not at all."""

from __future__ import annotations

import os
from typing import Any, Mapping, Optional, Union

import datasets

from .._atomic import atomic_folder
from ..errors import ClipError

__all__ = ["check_output_free", "save_dataset_atomically", "save_mined_dataset"]


def check_output_free(output: Union[str, os.PathLike], overwrite: bool = False) -> str:
    """The absolute ``output`` path when a dataset folder may be written there: ``FileExistsError`` when it exists
    and ``overwrite`` is False (the message names ``--overwrite``), or when it is a file (``--overwrite`` replaces
    dataset folders, never a file). ``mimcl mine`` calls it before reading any clip."""
    output = os.path.abspath(os.fspath(output))
    if os.path.lexists(output) and not os.path.isdir(output):
        raise FileExistsError(f"{output} exists and is not a folder (--overwrite replaces a dataset folder, never a "
                              "file); choose another output")
    if os.path.exists(output) and not overwrite:
        raise FileExistsError(f"{output} already exists (pass --overwrite to replace it)")
    return output


def save_dataset_atomically(dataset: Union[datasets.Dataset, datasets.DatasetDict], output: Union[str, os.PathLike],
                            overwrite: bool = False, card=None) -> str:
    """``dataset.save_to_disk`` into a temporary sibling folder, then rename it to ``output``: a crash never
    leaves a half-written dataset at ``output``. ``card`` (a ``huggingface_hub.DatasetCard``, optional) is saved as
    ``README.md`` inside the same temporary folder, so the dataset and its card appear together.
    Returns the absolute path. ``FileExistsError`` when ``output`` exists and ``overwrite`` is False (the message
    names the ``--overwrite`` flag)."""
    output = check_output_free(output, overwrite)
    try:
        with atomic_folder(output, overwrite=overwrite) as tmp:
            dataset.save_to_disk(str(tmp))
            if card is not None:
                from .dataset_card import CARD_NAME

                card.save(tmp / CARD_NAME)
    except OSError as e:        # a full or read-only disk: name the output (nothing was left there)
        if not e.errno:
            raise
        raise type(e)(e.errno, f"{e.strerror}: cannot write the dataset to {output} (nothing was written)") from e
    return output


def save_mined_dataset(mined: datasets.Dataset, output: Union[str, os.PathLike], source: Union[str, os.PathLike],
                       overwrite: bool = False, clip_options: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """Save a mined dataset and its dataset card (``README.md``, see
    :func:`~mimcl_hub.data.dataset_card.mined_dataset_card`: source, clip and twin options, mining report, absolute
    ``video`` paths) to ``output`` in one atomic folder write; ``datasets.load_from_disk(output)`` reads it.

    Returns ``mining_report(mined)`` plus ``output`` (the absolute path). Raises ``ClipError`` when no row was
    mined (every clip failed: the reasons and the first messages, naming the files), ``FileExistsError`` as
    :func:`save_dataset_atomically`; nothing is written then."""
    from .dataset_card import mined_dataset_card
    from .mining import mining_report

    report = mining_report(mined)
    if report["mined"] == 0:
        reasons = ", ".join(f"{reason} {count}" for reason, count in report["failed_by_reason"].items())
        first = "; ".join(f"row {row}: {message}" for row, message in list(report["errors"].items())[:3])
        raise ClipError(f"none of the {report['clips']} clips could be mined ({reasons}): {first}; nothing was "
                        f"written to {os.path.abspath(os.fspath(output))}",
                        reason=next(iter(report["failed_by_reason"]), "bad_clip"))
    card = mined_dataset_card(mined, source, report, clip_options)
    report["output"] = save_dataset_atomically(mined, output, overwrite=overwrite, card=card)
    return report
