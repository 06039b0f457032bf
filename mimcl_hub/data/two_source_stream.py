"""``--streaming``: both sources of :mod:`mimcl_hub.data.two_sources` as ``datasets.IterableDataset`` streams.

:class:`StreamingTwoSourceDataset` is a ``torch.utils.data.IterableDataset`` for one process of a run:

- **Split by process.** Each source is split with ``datasets.distributed.split_dataset_by_node(ds, rank,
  world_size)`` (whole shards per process when the shard count divides evenly, else every world_size-th example),
  then by DataLoader worker by ``datasets`` itself. Accelerate must not split the batches again: the training loop
  places this DataLoader on the device without sharding it (``accelerate.data_loader.prepare_data_loader`` with one
  process; ``accelerator.prepare`` would wrap it in ``IterableDatasetShard``, or dispatch every batch from the main
  process).
- **Shuffled with a buffer.** ``IterableDataset.shuffle(seed, buffer_size)`` for the view examples and the mined rows,
  and a buffer of :attr:`pair_buffer` pairs (the pairs of one row would otherwise come together; capped at the pairs
  of one pass). Note: ``datasets`` ends every pass over a shuffled *Parquet* stream with a 5 s pause
  (``datasets.config.SLEEP_TIME_ON_THREADS_SHUTDOWN``, an Arrow thread-shutdown workaround): nothing on a corpus,
  but a twin source of a few clips, passed many times, waits that long each pass.
- **Endless.** The stream never ends: pass ``p`` over each source is ``set_epoch(p)`` of its shuffle (another
  order each pass), and the twin source is cycled independently of the views. The run's length is ``--max_steps``;
  ``set_epoch`` of this dataset is accepted and changes nothing (the loop never reaches an epoch's end).
- **Deterministic.** Every draw comes from seeds of ``(seed, rank, worker, position)``, so a resumed run that skips
  the batches it already trained on (``accelerator.skip_first_batches``) sees the same items.

Items are those of :class:`~mimcl_hub.data.two_sources.TwoSourceDataset` (``view1``, ``view2``, ``view_index``: the
position in this process's stream, and ``twin_a``, ``twin_b``, ``twin_valid`` without twin_mode "none").
"""

from __future__ import annotations

import logging
from typing import Iterator, Optional

import datasets
import numpy as np
import torch

from .._safety import check_number, check_seed
from .augment import AugmentConfig, Augmenter, Draws, OneThread, check_augment, mix
from .crops import decode_crop
from .images import image_dtype, to_uint8_rgb
from .twin_pairs import (PAIR_MODES, ROW_COLUMNS, _usable_anchors, patches_with_crops,
                         pick_partner_and_crops)
from .two_sources import TWIN_STREAM, image_column_of, open_train_images, open_twin_source

logger = logging.getLogger(__name__)

__all__ = ["StreamingTwoSourceDataset", "build_streaming_dataset"]


def _shards(ds) -> int:
    return int(getattr(ds, "n_shards", 1) or 1)


class StreamingTwoSourceDataset(torch.utils.data.IterableDataset):
    """View examples of an image stream joined with twin pairs of a mined-row stream (module docstring).

    Args:
        views: the view branch's ``datasets.IterableDataset``; image_column: its image column.
        rows: the mined rows' ``datasets.IterableDataset`` (twin and crop columns), or None (twin_mode "none").
        augment, twin_mode, seed: as :class:`~mimcl_hub.data.two_sources.TwoSourceDataset`.
        rank, world_size: this process and the number of processes (``split_dataset_by_node``).
        shuffle_buffer: examples / rows in each source's shuffle buffer; pair_buffer: pairs in the pair buffer.
    """

    def __init__(self, views: datasets.IterableDataset, image_column: str, rows: Optional[datasets.IterableDataset],
                 augment: AugmentConfig, twin_mode: str = "mi", seed: int = 0, rank: int = 0, world_size: int = 1,
                 shuffle_buffer: int = 1000, pair_buffer: int = 256):
        from datasets.distributed import split_dataset_by_node

        self.augment = check_augment(augment, "StreamingTwoSourceDataset")
        self.seed = check_seed(seed)
        self.world_size = int(check_number("world_size", world_size, 1, None, integer=True))
        self.rank = int(check_number("rank", rank, 0, self.world_size - 1, integer=True))
        check_number("shuffle_buffer", shuffle_buffer, 1, None, integer=True)
        self.pair_buffer = int(check_number("pair_buffer", pair_buffer, 1, None, integer=True))
        if (rows is None) != (twin_mode == "none") or twin_mode not in (*PAIR_MODES, "none"):
            raise ValueError(f"StreamingTwoSourceDataset: twin_mode {twin_mode!r} with "
                             f"{'no' if rows is None else 'a'} twin stream")
        self.twin_mode, self.image_column = twin_mode, image_column
        self.pixel_dtype = image_dtype((views.features or {}).get(image_column))
        self.views = split_dataset_by_node(views, self.rank, self.world_size) \
            .shuffle(seed=self.seed, buffer_size=shuffle_buffer)
        self.rows = None
        if rows is not None:
            rows = rows.select_columns(list(ROW_COLUMNS)).cast_column(
                "crop_image", datasets.List(datasets.Image(decode=False)))
            self.rows = split_dataset_by_node(rows, self.rank, self.world_size) \
                .shuffle(seed=mix(self.seed, TWIN_STREAM) % 2**32, buffer_size=max(1, shuffle_buffer // 16))
        self._aug = Augmenter(augment)

    @property
    def max_workers(self) -> int:
        """DataLoader workers that all get data: the fewest shards of this process's streams."""
        return min(_shards(self.views), *([_shards(self.rows)] if self.rows is not None else []))

    def set_epoch(self, epoch: int) -> None:
        """Accepted for the training loop; the stream is endless (module docstring), so nothing changes."""

    # ------------------------------------------------------------------------------------ streams
    def _passes(self, ds, what: str, ends: bool = False) -> Iterator[Optional[dict]]:
        """The examples of ``ds``, pass after pass (``set_epoch(pass)``), with None after each pass when ``ends``;
        ``ValueError`` for a pass without any."""
        p = 0
        while True:
            ds.set_epoch(p)
            empty = True
            for example in ds:
                empty = False
                yield example
            if empty:
                raise ValueError(f"{what}: process {self.rank} of {self.world_size} got no example (a source with "
                                 f"fewer shards or examples than processes x DataLoader workers)")
            if ends:
                yield None
            p += 1

    def pairs(self, worker: int = 0) -> Iterator[tuple]:
        """Endless pairs ``(anchor crop, anchor centre, anchor side, partner crop, ...)`` of this process's rows:
        each row's usable (anchor, twin) pairs (``"random"``: a random other valid patch with crops as partner), a
        random stored crop of each, through the pair buffer."""
        rng = np.random.default_rng(mix(self.seed, self.rank, worker, TWIN_STREAM))
        buffer: list[tuple] = []
        size = self.pair_buffer            # capped at the pairs of one pass: a small source never waits for more
        for row in self._passes(self.rows, "--twin_dataset", ends=True):
            if row is None:
                size = min(size, max(1, len(buffer)))
                continue
            twin = np.asarray(row["twin"], np.int64)
            valid = np.asarray(row["twin_valid"], bool)
            patch = np.asarray(row["crop_patch"], np.int64)
            has = patches_with_crops(len(twin), patch)
            for anchor in np.flatnonzero(_usable_anchors(twin, valid, has)):
                _, ca, cb = pick_partner_and_crops(self.twin_mode, int(anchor), twin, valid, has, patch,
                                                   lambda n: int(rng.integers(n)))
                pair = [(row["crop_image"][c], row["crop_center"][c], row["crop_side"][c]) for c in (ca, cb)]
                if len(buffer) < size:
                    buffer.append(tuple(pair))
                    continue
                k = int(rng.integers(len(buffer)))
                yield buffer[k]
                buffer[k] = tuple(pair)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        pairs = self.pairs(worker) if self.rows is not None else None
        for n, example in enumerate(self._passes(self.views, "--train_dataset")):
            index = n * workers + worker
            d = Draws(mix(self.seed, self.rank, index))
            image = to_uint8_rgb(example[self.image_column], f"--train_dataset example {index} of process {self.rank}",
                                 dtype=self.pixel_dtype)
            image = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
            with OneThread():
                out = {"view1": self._aug.view(image, d), "view2": self._aug.view(image, d),
                       "view_index": torch.tensor(index, dtype=torch.int64)}
                if pairs is not None:
                    d = Draws(mix(self.seed, self.rank, index, TWIN_STREAM))
                    crops = []
                    for value, (cx, cy), side in next(pairs):
                        crop = torch.from_numpy(np.ascontiguousarray(decode_crop(value).transpose(2, 0, 1)))
                        crops.append(self._aug.twin(crop, float(cx), float(cy), float(side), d))
                    out.update(twin_a=crops[0], twin_b=crops[1], twin_valid=torch.tensor(True))
            yield out

    def data_identity(self) -> dict:
        """What a resumed run must match (the sources and options are in the run's settings): the streams' shards."""
        return {"streaming": True, "view_shards": _shards(self.views), "twin_mode": self.twin_mode,
                "twin_shards": _shards(self.rows) if self.rows is not None else 0}


def build_streaming_dataset(train_dataset: str, twin_dataset: Optional[str], twin_mode: str, augment: AugmentConfig,
                            seed: int, rank: int = 0, world_size: int = 1, image_column: Optional[str] = None,
                            split: str = "train") -> StreamingTwoSourceDataset:
    """The ``--streaming`` training set of one process (sources opened as
    :func:`~mimcl_hub.data.two_sources.build_two_source_dataset` opens them, with ``streaming=True``)."""
    views = open_train_images(train_dataset, split=split, streaming=True)
    if views.features is None:
        raise ValueError(f"--train_dataset {train_dataset!r}: the stream declares no features, so its image column "
                         "cannot be checked; stream a dataset with features (Parquet, imagefolder, a Hub dataset "
                         "with a card) or train without --streaming")
    column = image_column_of(views, image_column, train_dataset)
    rows = None
    if twin_mode != "none":
        if twin_dataset is None:
            raise ValueError(f"twin_mode={twin_mode!r} with --train_dataset needs --twin_dataset")
        rows = open_twin_source(twin_dataset, streaming=True)
    dataset = StreamingTwoSourceDataset(views, column, rows, augment, twin_mode=twin_mode, seed=seed, rank=rank,
                                        world_size=world_size)
    logger.info("streaming: view images of %s (column %r)%s; process %d of %d", train_dataset, column,
                f" + twin pairs ({twin_mode}) of {twin_dataset}" if rows is not None else "", rank, world_size)
    return dataset
