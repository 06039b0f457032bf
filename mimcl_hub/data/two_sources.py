"""Two data sources for two branches: an image dataset feeds the view branch, mined twin pairs the MI branch.

``--train_dataset`` (any HF image dataset: a Hub id, a local folder ``datasets.load_dataset`` reads, e.g. a folder
of pictures as ``imagefolder``, or a ``save_to_disk`` folder) gives the view branch's
:class:`~mimcl_hub.data.contrastive.ImageContrastiveDataset`; ``--twin_dataset`` (the output folder of
``mimcl mine``, its Hub id, or a ``save_to_disk`` folder of rows mined with crops) gives the MI branch's
:class:`~mimcl_hub.data.twin_pairs.TwinPairDataset`, read without any video. Training never mines: a twin source
that is not mined, was mined without crops, or is still being mined is refused with the ``mimcl mine`` command
to run (:class:`UnminedSourceError`).

:class:`TwoSourceDataset` joins them. An epoch is the view dataset: item ``i`` is view item ``i`` (``view1``,
``view2``, ``view_index``) plus ``twins_per_item`` K pairs (``twin_a``, ``twin_b``, ``twin_valid``; a leading K
dimension when K > 1). The twin source is cycled: item ``i`` of epoch ``e`` takes the pair slots
``s = (e * N + i) * K + k`` (N view items), and :class:`~mimcl_hub.data.twin_pairs.CyclicOrder` maps slot ``s`` to
a pair (one seeded permutation per pass over the M pairs, O(1) memory). So every pair is used once per pass, the
passes run on across epochs, and items are a function of ``(seed, epoch, index)`` only: processes that get
disjoint view indices (Accelerate's sharded sampler) get disjoint view items *and* disjoint pairs (within a pass).
``twin_mode="none"``: view items only, no twin source is read.

Random draws: the view item's from ``(seed, epoch, i)`` (:class:`ImageContrastiveDataset`), the pairs' (random
partner, stored frame, twin crop augmentation) from ``(seed, epoch, i, TWIN_STREAM)``.

:func:`build_two_source_dataset` opens both sources by these rules and builds the joined dataset.
"""

from __future__ import annotations

import logging
import os
import shlex
from dataclasses import dataclass
from typing import Optional

import datasets
import torch

from .._safety import check_number, check_seed, looks_like_hub_id
from .augment import AugmentConfig, Draws, OneThread, check_augment, mix
from .clipbank import REQUIRED_TWIN_COLUMNS
from .contrastive import IMAGE_COLUMNS, ImageContrastiveDataset, _EpochMixin, _epoch_tensor, check_twin_mode, \
    find_image_column
from .crops import CROP_FEATURES, has_crops
from .mined_folder import mined_folder_problem
from .resolve import _has_videos, _pick_split, _scene_count, is_saved_dataset
from .twin_pairs import CyclicOrder, PairChoice, TwinPairDataset

logger = logging.getLogger(__name__)

__all__ = ["TWIN_STREAM", "UnminedSourceError", "TwoSourcePlan", "TwoSourceDataset", "build_two_source_dataset",
           "mine_command", "open_train_images", "open_twin_source"]

#: Salt of the pairs' draws in :func:`~mimcl_hub.data.augment.mix` (the view item uses ``(seed, epoch, i)``).
TWIN_STREAM = 0x7717


class UnminedSourceError(ValueError):
    """A twin source training cannot read without mining it first; the message holds the ``mimcl mine``
    command to run."""


def mine_command(source: str, output: str = "DIR") -> str:
    """``mimcl mine SOURCE --output DIR`` with SOURCE quoted for a shell."""
    return f"mimcl mine {shlex.quote(str(source))} --output {shlex.quote(str(output))}"


def _refuse_unmined(flag: str, source: str, why: str, mine_from: Optional[str] = None,
                    output: str = "DIR") -> UnminedSourceError:
    command = mine_command(source if mine_from is None else mine_from, output)
    return UnminedSourceError(f"{flag} {source!r}: {why}. Training never mines: run `{command}`, then pass "
                              f"{flag} {shlex.quote(output)}")


# ------------------------------------------------------------------------------------------------ opening


def _card_source(path: str) -> Optional[str]:
    """The SOURCE a mined folder's card records, or None."""
    try:
        from .dataset_card import read_mined_card

        return read_mined_card(path).get("source")
    except (OSError, ValueError):
        return None


def _load(flag: str, source: str, loader, *args, **kwargs):
    try:
        return loader(*args, **kwargs)
    except Exception as exc:          # offline, unknown id, no such split, unreadable files ...
        raise ValueError(f"{flag} {source!r}: cannot be loaded ({type(exc).__name__}: {exc})") from exc


def _streamed(ds: datasets.Dataset, num_shards: int = 64) -> datasets.IterableDataset:
    """A ``save_to_disk`` dataset as an ``IterableDataset`` of up to ``num_shards`` contiguous shards."""
    return ds.to_iterable_dataset(num_shards=max(1, min(num_shards, len(ds))))


def _open(flag: str, source: str, path: str, split: str, streaming: bool):
    """A saved folder (``load_from_disk``, split ``split`` of a ``DatasetDict``), else ``load_dataset`` of the folder
    or Hub id; as an ``IterableDataset`` with ``streaming``."""
    if is_saved_dataset(path):
        ds = _pick_split(_load(flag, source, datasets.load_from_disk, path), split, f"{flag} {source!r}")
        return _streamed(ds) if streaming else ds
    return _load(flag, source, datasets.load_dataset, path if os.path.isdir(path) else source, split=split,
                 streaming=streaming)


def open_twin_source(source: str, flag: str = "--twin_dataset", streaming: bool = False):
    """The mined rows (with crops) a twin source names: a ``save_to_disk`` folder (split ``train`` of a
    ``DatasetDict``), a Hub-style folder (``mimcl mine`` output, :func:`mined_folder_problem` checked first) read
    with ``load_dataset(DIR, split="train")``, or a Hub dataset id; a ``datasets.IterableDataset`` with
    ``streaming``.

    Raises :class:`UnminedSourceError` (the message holds the ``mimcl mine`` command) for clip / video sources
    (``bundled``, ``scenes:N``, a video file, a folder of videos, a dataset without twin columns), for a dataset
    mined without crops and for a folder whose mining has not finished; ``ValueError`` for what cannot be
    loaded."""
    if not isinstance(source, (str, os.PathLike)) or not os.fspath(source).strip():
        raise ValueError(f"{flag} must be a path or a dataset id, got {source!r}")
    source = os.fspath(source)
    if source == "bundled" or _scene_count(source) is not None:
        raise _refuse_unmined(flag, source, "a clip source, not mined twin pairs")
    path = os.path.expanduser(source)
    if os.path.isfile(path):
        raise _refuse_unmined(flag, source, "a file (a video?), not the folder of mined twin pairs")
    if os.path.isdir(path) and not is_saved_dataset(path):
        if not os.path.isdir(os.path.join(path, "data")) and _has_videos(path):
            raise _refuse_unmined(flag, source, "a folder of videos, not mined twin pairs")
        problem = mined_folder_problem(path)
        if problem:
            raise _refuse_unmined(flag, source, f"not a complete `mimcl mine` output folder: {problem} (rerunning "
                                  "the `mimcl mine` command that writes it resumes it)",
                                  mine_from=_card_source(path) or "SOURCE", output=source)
    elif not os.path.exists(path) and not looks_like_hub_id(source):
        raise ValueError(f"{flag} {source!r}: no such file or folder, and not a Hub dataset id")
    ds = _open(flag, source, path, "train", streaming)
    columns = list(ds.features or {}) if streaming else ds.column_names
    missing = [c for c in REQUIRED_TWIN_COLUMNS if c not in columns]
    if missing:
        raise _refuse_unmined(flag, source, f"not mined (no twin columns {missing}; columns: {columns})")
    if not has_crops(columns):
        absent = [c for c in CROP_FEATURES if c not in columns]
        origin = _card_source(path) if os.path.isdir(path) else None
        raise _refuse_unmined(flag, source, f"mined without materialised crops (no {absent}), so training would have "
                              "to decode its videos; mine its clips again with crops", mine_from=origin or "SOURCE")
    return ds


def open_train_images(source: str, split: str = "train", flag: str = "--train_dataset", streaming: bool = False):
    """The image dataset a view-branch source names: a ``save_to_disk`` folder (split ``split`` of a
    ``DatasetDict``), a folder ``datasets.load_dataset`` reads (a folder of pictures is an ``imagefolder``,
    Parquet / Arrow / JSON files ...) or a Hub dataset id, split ``split``; a ``datasets.IterableDataset`` with
    ``streaming``. ``ValueError`` naming ``flag`` and the source for clip sources (``bundled``, ``scenes:N``, a
    video file: use ``--video_dataset``), missing paths and what cannot be loaded."""
    if not isinstance(source, (str, os.PathLike)) or not os.fspath(source).strip():
        raise ValueError(f"{flag} must be a path or a dataset id, got {source!r}")
    source = os.fspath(source)
    if source == "bundled" or _scene_count(source) is not None:
        raise ValueError(f"{flag} {source!r}: a clip source; the view branch reads an image dataset (use "
                         "--video_dataset to train both branches on clips)")
    path = os.path.expanduser(source)
    if os.path.isfile(path):
        raise ValueError(f"{flag} {source!r}: a file; pass a folder of images, a saved dataset or a Hub dataset id")
    if not os.path.exists(path) and not looks_like_hub_id(source):
        raise ValueError(f"{flag} {source!r}: no such file or folder, and not a Hub dataset id")
    return _open(flag, source, path, split, streaming)


def image_column_of(ds, image_column: Optional[str], source: str, flag: str = "--train_dataset") -> str:
    """The view branch's image column (``image_column``, else ``image`` / ``img``, else the first
    ``datasets.Image`` column); ``ValueError`` naming the dataset's columns when there is none."""
    column = find_image_column(ds, image_column, f"{flag} {source!r}")
    if column is None:
        raise ValueError(f"{flag} {source!r}: no image column (looked for {list(IMAGE_COLUMNS)} or a datasets.Image "
                         f"feature); its columns are {ds.column_names}; name one with --train_image_column")
    return column


# ------------------------------------------------------------------------------------------------ joined


@dataclass(frozen=True)
class TwoSourcePlan:
    """The content choices of one :class:`TwoSourceDataset` item: its view row and, per twin slot, the pair
    index and the pair's choices (empty for twin_mode "none")."""

    index: int
    epoch: int
    pairs: tuple[int, ...]
    twins: tuple[PairChoice, ...]


class TwoSourceDataset(_EpochMixin, torch.utils.data.Dataset):
    """View items of an image dataset joined with twin pairs of a mined dataset (see the module docstring).

    Args:
        views: the view branch (its ``seed`` is the seed of the pairs' draws and order too).
        pairs: the MI branch, or None (twin_mode "none").
        twins_per_item: K pairs per item.

    Item ``i``: ``view1``, ``view2`` float32 (3, S, S), ``view_index`` int64 (``i``, the view row), and with
    pairs ``twin_a``, ``twin_b`` float32 ([K,] 3, S, S) and ``twin_valid`` bool ([K]). ``len`` = ``len(views)``.
    """

    def __init__(self, views: ImageContrastiveDataset, pairs: Optional[TwinPairDataset] = None,
                 twins_per_item: int = 1):
        if not isinstance(views, ImageContrastiveDataset):
            raise ValueError(f"TwoSourceDataset: views must be an ImageContrastiveDataset, got {type(views).__name__}")
        if pairs is not None and not isinstance(pairs, TwinPairDataset):
            raise ValueError(f"TwoSourceDataset: pairs must be a TwinPairDataset or None, got {type(pairs).__name__}")
        if pairs is not None and pairs.augment.img_size != views.augment.img_size:
            raise ValueError(f"TwoSourceDataset: view crops of {views.augment.img_size} px but twin crops of "
                             f"{pairs.augment.img_size} px; use one AugmentConfig")
        self.views, self.pairs = views, pairs
        self.seed = views.seed
        self.twins_per_item = int(check_number("twins_per_item", twins_per_item, 1, None, integer=True))
        self.order = CyclicOrder(len(pairs), self.seed) if pairs is not None else None
        self._epoch = _epoch_tensor()

    @property
    def twin_mode(self) -> str:
        return self.pairs.twin_mode if self.pairs is not None else "none"

    def __len__(self) -> int:
        return len(self.views)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch of this dataset and of both sources."""
        super().set_epoch(epoch)
        self.views.set_epoch(epoch)
        if self.pairs is not None:
            self.pairs.set_epoch(epoch)

    def pair_indices(self, index: int, epoch: Optional[int] = None) -> tuple[int, ...]:
        """The pair indices of item ``index`` in ``epoch`` (default: the current one): slots
        ``(epoch * N + index) * K + k`` through :attr:`order`."""
        if self.pairs is None:
            return ()
        epoch = self.epoch if epoch is None else int(epoch)
        first = (epoch * len(self) + index) * self.twins_per_item
        return tuple(self.order(first + k) for k in range(self.twins_per_item))

    def _plan(self, index: int):
        index = self._check_index(index, len(self))
        epoch = self.epoch
        pair_indices = self.pair_indices(index, epoch)
        d = Draws(mix(self.seed, epoch, index, TWIN_STREAM))
        chosen = [self.pairs.choose(j, d) for j in pair_indices]
        plan = TwoSourcePlan(index, epoch, pair_indices, tuple(choice for choice, _ in chosen))
        return plan, chosen, d

    def describe(self, index: int) -> TwoSourcePlan:
        """The content choices of item ``index`` in the current epoch."""
        return self._plan(index)[0]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        index = self._check_index(index, len(self))
        out = self.views[index]
        out["view_index"] = torch.tensor(index, dtype=torch.int64)
        if self.pairs is None:
            return out
        with OneThread():
            _, chosen, d = self._plan(index)
            crops = [self.pairs.crops(choice, row, d) for choice, row in chosen]
        if self.twins_per_item == 1:
            out.update(twin_a=crops[0][0], twin_b=crops[0][1], twin_valid=torch.tensor(True))
        else:
            out.update(twin_a=torch.stack([a for a, _ in crops]), twin_b=torch.stack([b for _, b in crops]),
                       twin_valid=torch.ones(self.twins_per_item, dtype=torch.bool))
        return out

    @property
    def fingerprint(self) -> Optional[str]:
        """The view images' ``datasets`` fingerprint."""
        return self.views.fingerprint

    def data_identity(self) -> dict:
        """What a resumed run must match: the view data's fingerprint and size, and the twin data's fingerprint,
        rows and pairs (see :func:`mimcl_hub.train.resume.data_identity`)."""
        out = {"fingerprint": self.views.fingerprint, "items": len(self), "twin_mode": self.twin_mode,
               "twins_per_item": self.twins_per_item}
        if self.pairs is not None:
            out.update(twin_fingerprint=self.pairs.fingerprint, twin_rows=self.pairs.num_rows,
                       twin_pairs=self.pairs.num_pairs)
        return out

    def __repr__(self) -> str:
        return (f"TwoSourceDataset(items={len(self)}, twin_mode={self.twin_mode!r}, "
                f"pairs={self.pairs.num_pairs if self.pairs is not None else 0}, K={self.twins_per_item})")


def build_two_source_dataset(train_dataset, twin_dataset, twin_mode: str, augment: AugmentConfig, seed: int,
                             image_column: Optional[str] = None, split: str = "train",
                             twins_per_item: int = 1) -> TwoSourceDataset:
    """The training set of ``--train_dataset`` + ``--twin_dataset`` (see the module docstring).

    Args:
        train_dataset: a source string (:func:`open_train_images`) or a ``datasets.Dataset`` of images.
        twin_dataset: a source string (:func:`open_twin_source`) or a mined ``datasets.Dataset`` with crops; not
            read (may be None) when ``twin_mode`` is ``"none"``.
        twin_mode: ``"mi"``, ``"random"`` or ``"none"``.
        augment, seed: the augmentation settings and the seed of every draw.
        image_column: the view images' column (default: found, :func:`image_column_of`); split: the view split.
        twins_per_item: K pairs per item.

    Raises ``ValueError`` (:class:`UnminedSourceError` for a twin source that needs ``mimcl mine``) naming the
    flag and the source.
    """
    check_twin_mode(twin_mode)
    check_augment(augment, "build_two_source_dataset")
    seed = check_seed(seed)
    if isinstance(train_dataset, datasets.Dataset):
        images, name = train_dataset, "<datasets.Dataset>"
    else:
        images, name = open_train_images(train_dataset, split=split), os.fspath(train_dataset)
    if len(images) == 0:
        raise ValueError(f"--train_dataset {name!r}: split {split!r} is empty")
    column = image_column_of(images, image_column, name)
    views = ImageContrastiveDataset(images, augment, image_column=column, seed=seed)
    pairs = None
    if twin_mode != "none":
        if twin_dataset is None:
            raise ValueError(f"twin_mode={twin_mode!r} with --train_dataset needs --twin_dataset (mined twin pairs: "
                             f"`{mine_command('SOURCE')}`), or use twin_mode 'none'")
        if isinstance(twin_dataset, datasets.Dataset):
            mined, twin_name = twin_dataset, None
            if not has_crops(mined.column_names) or any(c not in mined.column_names for c in REQUIRED_TWIN_COLUMNS):
                raise UnminedSourceError("the twin dataset has no twin / crop columns (columns: "
                                         f"{mined.column_names}); mine it with `{mine_command('SOURCE')}`")
        else:
            twin_name = os.fspath(twin_dataset)
            mined = open_twin_source(twin_name)
        pairs = TwinPairDataset(mined, augment, twin_mode=twin_mode, seed=seed,
                                source=f"--twin_dataset {twin_name!r}" if twin_name else None)
    dataset = TwoSourceDataset(views, pairs, twins_per_item=twins_per_item)
    logger.info("training data: %d view images from %s (column %r)%s", len(views), name, column,
                f"; {pairs.num_pairs} twin pairs ({twin_mode}) in {pairs.num_rows} mined clips from {twin_dataset}"
                if pairs is not None else "")
    return dataset
