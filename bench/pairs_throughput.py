"""The MI branch read from mined crops (``--twin_dataset``) against the clip bank (``--video_dataset``): items/s.
Not a test: run it by hand. (Training memory at 1x / 10x the data: ``bench/scale_throughput.py``.)

    python bench/pairs_throughput.py            # a few minutes on a 2-core CPU
    python bench/pairs_throughput.py --quick    # fewer batches and rounds

Data: ``--scenes`` procedural scenes (16 frames, 128 px) mined with crops (grid 8, crops of 64 px; the pair datasets
read the rows without the scenes' ``frames`` column, as rows mined from video files hold only the files' paths),
and an ``imagefolder`` of 512 scikit-learn digits (32 px) for the view branch. Augmentation: the defaults at 32 px.

1. **Items/s through a DataLoader** (batch 32, ``collate_contrastive``; 0 and 2 workers), medians over alternating
   rounds: ``TwinContrastiveDataset`` over the decoded clip bank (``twin_mode="mi"``: two views of a frame + one
   twin pair per item), ``TwinPairDataset`` (one pair per item, read from the stored crops) and
   ``TwoSourceDataset`` (two views of a digit + one pair: the same work per item as the clip bank's).

Prints ``RESULT name value`` lines.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import _idle  # bench/ is the script's folder, first on sys.path

IMG = 32
BATCH = 32


def make_data(root: Path, scenes: int):
    """(the mined rows without frames, the digits imagefolder, the mined rows with frames for the clip bank)."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    from mimcl_hub.data import make_scenes, mine_dataset

    bank = mine_dataset(make_scenes(scenes, seed=0, num_frames=16), max_side=None, grid=8, significance=0,
                        crop_size=64)                  # the clip bank decodes the frames; rows mined from videos
    mined = bank.remove_columns(["frames", "labels"])  # hold only their paths: the pair datasets read no frames
    pictures = root / "digits" / "train"
    pictures.mkdir(parents=True)
    for i, image in enumerate(load_digits().images[:512]):
        grey = (image * (255 / 16)).astype(np.uint8)
        Image.fromarray(np.stack([grey] * 3, -1)).resize((IMG, IMG)).save(pictures / f"{i:04d}.png")
    return mined, pictures.parent, bank


def items_per_second(datasets_: dict, workers: int, batches: int, rounds: int) -> dict[str, float]:
    import torch

    from mimcl_hub.data import collate_contrastive

    rates: dict[str, list[float]] = {name: [] for name in datasets_}
    for _ in range(rounds):
        for name, dataset in datasets_.items():
            collate = collate_contrastive if name != "pairs" else _collate_pairs
            loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=workers,
                                                 collate_fn=collate, drop_last=True)
            it = iter(loader)
            next(it)                                   # worker start and first batch left out
            t = time.perf_counter()
            n = 0
            for _, batch in zip(range(batches), it):
                n += batch["view1"].shape[0] if "view1" in batch else batch["twin_a"].shape[0]
            rates[name].append(n / (time.perf_counter() - t))
            del it, loader
    return {name: statistics.median(r) for name, r in rates.items()}


def _collate_pairs(items):
    import torch

    return {k: torch.stack([item[k] for item in items]) for k in items[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--scenes", type=int, default=8)
    parser.add_argument("--max-wait", type=float, default=60.0)
    args = parser.parse_args()
    batches, rounds = (10, 2) if args.quick else (30, 3)

    from mimcl_hub.data import (AugmentConfig, TwinContrastiveDataset, TwinPairDataset, build_two_source_dataset,
                                load_twin_clips)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        mined, digits, with_frames = make_data(root, args.scenes)
        augment = AugmentConfig(img_size=IMG)
        bank = TwinContrastiveDataset(load_twin_clips(with_frames), augment, twin_mode="mi")
        pairs = TwinPairDataset(mined, augment, twin_mode="mi")
        joined = build_two_source_dataset(str(digits), mined, "mi", augment, 0)
        print(f"data: {len(mined)} mined clips, {pairs.num_pairs} pairs, clip bank {bank.bank.nbytes / 2**20:.1f} MiB "
              f"decoded; {len(joined)} view images", flush=True)
        for workers in (0, 2):
            busy = _idle.wait_idle(args.max_wait)
            print(f"[{workers} workers] other processes kept {busy:.2f} cores busy; load {os.getloadavg()[0]:.2f}",
                  flush=True)
            rates = items_per_second({"clip_bank": bank, "pairs": pairs, "two_sources": joined}, workers, batches,
                                     rounds)
            for name, rate in rates.items():
                print(f"RESULT items_per_s_{name}_{workers}w {rate:.1f}")
            print(f"RESULT pairs_vs_clip_bank_{workers}w {rates['pairs'] / rates['clip_bank']:.3f}")
            print(f"RESULT two_sources_vs_clip_bank_{workers}w {rates['two_sources'] / rates['clip_bank']:.3f}")


if __name__ == "__main__":
    main()
