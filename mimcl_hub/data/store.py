"""Writing datasets: a dataset folder appears complete or not at all."""

from __future__ import annotations

import os
from typing import Union

import datasets

from .._atomic import atomic_folder

__all__ = ["save_dataset_atomically"]


def save_dataset_atomically(dataset: Union[datasets.Dataset, datasets.DatasetDict], output: Union[str, os.PathLike],
                            overwrite: bool = False) -> str:
    """``dataset.save_to_disk`` into a temporary sibling folder, then rename it to ``output``: a crash never
    leaves a half-written dataset at ``output``. Returns the absolute path. ``FileExistsError`` when
    ``output`` exists and ``overwrite`` is False (the message names the ``--overwrite`` flag)."""
    output = os.path.abspath(os.fspath(output))
    if os.path.exists(output) and not overwrite:
        raise FileExistsError(f"{output} already exists (pass --overwrite to replace it)")
    with atomic_folder(output, overwrite=overwrite) as tmp:
        dataset.save_to_disk(str(tmp))
    return output
