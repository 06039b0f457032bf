"""The training data of a run: which dataset the flags name, and the DataLoader over it.

- ``--train_dataset`` (+ ``--twin_dataset``): :func:`~mimcl_hub.data.two_sources.build_two_source_dataset`. Every
  process opens the same files; nothing is mined and no process waits for another.
- else ``--video_dataset`` / the offline default: :func:`~mimcl_hub.data.build_train_dataset`. Only the offline
  default, or any source in a one-process run, may be mined here, by the first process while the others wait for its
  cache (``main_process_first``); with several processes an unmined ``--video_dataset`` is refused with the
  ``mimcl mine`` command (one rank mining a corpus while the others wait at a barrier would time out).

- ``--streaming``: :func:`~mimcl_hub.data.two_source_stream.build_streaming_dataset` for this process (``rank``,
  ``world_size``), endless; the run's length is ``--max_steps``.

The DataLoader shuffles and drops the last partial batch (equal per-process batches, which the cross-process gathers
need); Accelerate's ``prepare`` then gives each process disjoint batches of indices each epoch (its seedable
sampler: the order is a function of the seed and the epoch).
"""

from __future__ import annotations

import contextlib

from torch.utils.data import DataLoader

from .config import ConfigError, TrainConfig

__all__ = ["build_dataset", "make_loader"]


def build_dataset(config: TrainConfig, accelerator, data_cfg: dict):
    """The training set the flags name (module docstring), at the backbone's normalisation (``data_cfg``); a
    :class:`ConfigError` when it holds less than one global batch, or fewer batches than one accumulation."""
    from ..data import AugmentConfig, build_train_dataset
    from ..data.two_sources import build_two_source_dataset

    augment = AugmentConfig(img_size=config.img_size, mean=tuple(data_cfg["mean"]), std=tuple(data_cfg["std"]))
    if config.streaming:            # endless, split by process here: no length to check
        from ..data.two_source_stream import build_streaming_dataset

        return build_streaming_dataset(config.train_dataset, config.twin_dataset, config.twin_mode, augment,
                                       config.seed, rank=accelerator.process_index,
                                       world_size=accelerator.num_processes, image_column=config.train_image_column,
                                       split=config.train_split)
    if config.train_dataset is not None:
        dataset = build_two_source_dataset(config.train_dataset, config.twin_dataset, config.twin_mode, augment,
                                           config.seed, image_column=config.train_image_column,
                                           split=config.train_split)
    else:
        several = config.video_dataset is not None and accelerator.num_processes > 1     # no rank may mine then
        with contextlib.nullcontext() if several else accelerator.main_process_first():
            dataset = build_train_dataset(config.video_dataset, config.twin_mode, augment, config.seed,
                                          image_column=config.image_column, max_side=config.max_side,
                                          allow_mining=not several)
    global_batch = config.per_device_train_batch_size * accelerator.num_processes
    if len(dataset) < global_batch:
        raise ConfigError(f"invalid training configuration:\n  --per_device_train_batch_size: the training set has "
                          f"{len(dataset)} items, fewer than one global batch ({config.per_device_train_batch_size} x "
                          f"{accelerator.num_processes} processes)")
    batches = len(dataset) // global_batch
    if batches < config.gradient_accumulation_steps:      # the epoch would end an accumulation early, every time
        raise ConfigError(f"invalid training configuration:\n  --gradient_accumulation_steps: "
                          f"{config.gradient_accumulation_steps} micro-batches per optimizer step, but an epoch of the "
                          f"training set ({len(dataset)} items) has only {batches} batches of "
                          f"{config.per_device_train_batch_size} x {accelerator.num_processes} processes; use at most "
                          f"{batches} (or a smaller --per_device_train_batch_size)")
    return dataset


def make_loader(config: TrainConfig, accelerator, dataset) -> DataLoader:
    """The (not yet prepared) DataLoader: shuffled, ``drop_last``, ``collate_contrastive``. Workers outlive an epoch
    (the dataset reads the epoch from shared memory), so a new epoch does not wait for new workers to fork and fill
    the first batch (~50 ms per epoch here with one worker).

    ``--streaming``: the stream is already this process's part (:mod:`mimcl_hub.data.two_source_stream`), so the
    DataLoader comes back *prepared* — placed on the device by Accelerate's ``prepare_data_loader`` as for one process, so it is
    not split a second time (``accelerator.prepare`` would wrap it in ``IterableDatasetShard``: each process reading
    every batch and keeping 1 / N of it) — with at most as many workers as the stream has shards."""
    from ..data import collate_contrastive

    if config.streaming:
        from accelerate.data_loader import prepare_data_loader

        workers = min(config.dataloader_num_workers, dataset.max_workers)
        loader = DataLoader(dataset, batch_size=config.per_device_train_batch_size, drop_last=True,
                            collate_fn=collate_contrastive, num_workers=workers,
                            pin_memory=accelerator.device.type == "cuda")
        return prepare_data_loader(loader, device=accelerator.device, num_processes=1, process_index=0,
                                   put_on_device=True, dispatch_batches=False)
    return DataLoader(dataset, batch_size=config.per_device_train_batch_size, shuffle=True, drop_last=True,
                      collate_fn=collate_contrastive, num_workers=config.dataloader_num_workers,
                      persistent_workers=config.dataloader_num_workers > 0,
                      pin_memory=accelerator.device.type == "cuda")
