"""The MI branch read from mined crops (``--twin_dataset``) against the clip bank (``--video_dataset``): items/s and
training memory. Not a test: run it by hand.

    python bench/pairs_throughput.py            # a few minutes on a 2-core CPU
    python bench/pairs_throughput.py --quick    # fewer batches and rounds

Data: ``--scenes`` procedural scenes (16 frames, 128 px) written as a mined folder the way ``mimcl mine`` writes it
(grid 8, crops of 64 px: one Parquet shard + the dataset card; without the scenes' ``frames`` column, as rows mined
from video files hold only the files' paths), and an ``imagefolder`` of 512 scikit-learn digits
(32 px) for the view branch. Augmentation: the defaults at 32 px.

1. **Items/s through a DataLoader** (batch 32, ``collate_contrastive``; 0 and 2 workers), medians over alternating
   rounds: ``TwinContrastiveDataset`` over the decoded clip bank (``twin_mode="mi"``: two views of a frame + one
   twin pair per item), ``TwinPairDataset`` (one pair per item, read from the stored crops) and
   ``TwoSourceDataset`` (two views of a digit + one pair: the same work per item as the clip bank's).
2. **Peak RSS of training** (``train()`` in a fresh process, 24 steps of batch 32, test_vit at 32 px, no workers)
   with the twin source at 1x and at 10x the mined rows (the same rows 10 times, one Parquet shard), the same view
   dataset: each process's own ``ru_maxrss`` at its end.

Prints ``RESULT name value`` lines.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _idle  # bench/ is the script's folder, first on sys.path

IMG = 32
BATCH = 32


def make_data(root: Path, scenes: int):
    """(mined folder 1x, mined folder 10x, digits imagefolder, the mined rows with frames for the clip bank)."""
    import datasets
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    from mimcl_hub.data import make_scenes, mine_dataset, mining_report
    from mimcl_hub.data.dataset_card import mined_dataset_card

    def write(folder: Path, mined) -> Path:
        (folder / "data").mkdir(parents=True)
        mined.to_parquet(str(folder / "data" / "train-00000-of-00001.parquet"))
        mined_dataset_card(mined, f"scenes:{scenes}", mining_report(mined)).save(folder / "README.md")
        return folder

    mined = mine_dataset(make_scenes(scenes, seed=0, num_frames=16), max_side=None, grid=8, significance=0,
                         crop_size=64)
    bank = mined                                   # the clip bank decodes the frames; a mined folder of videos has
    mined = mined.remove_columns(["frames", "labels"])    # only their paths: the stored rows hold no frames
    one = write(root / "mined-1x", mined)
    ten = write(root / "mined-10x", datasets.concatenate_datasets([mined] * 10))
    pictures = root / "digits" / "train"
    pictures.mkdir(parents=True)
    for i, image in enumerate(load_digits().images[:512]):
        grey = (image * (255 / 16)).astype(np.uint8)
        Image.fromarray(np.stack([grey] * 3, -1)).resize((IMG, IMG)).save(pictures / f"{i:04d}.png")
    return one, ten, pictures.parent, bank


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


TRAIN = """
import json, resource, sys
from mimcl_hub.train import TrainConfig, train
train(TrainConfig(**json.loads(sys.argv[1])))
print("PEAK_RSS_KIB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_rss_of_training(out: Path, digits: Path, mined: Path, steps: int) -> float:
    """ru_maxrss (MiB) of a fresh process that trains ``steps`` steps on ``digits`` + ``mined``."""
    config = dict(output_dir=str(out), train_dataset=str(digits), twin_dataset=str(mined), model_name="test_vit",
                  img_size=IMG, per_device_train_batch_size=BATCH, max_steps=steps, save_steps=0, logging_steps=8,
                  eval_dataset="none", report_to="none", disable_tqdm=True, mixed_precision="no")
    proc = subprocess.run([sys.executable, "-c", TRAIN, json.dumps(config)], capture_output=True, text=True,
                          env=dict(os.environ, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1"))
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    line = [x for x in proc.stdout.splitlines() if x.startswith("PEAK_RSS_KIB")][-1]
    return int(line.split()[1]) / 1024.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--scenes", type=int, default=8)
    parser.add_argument("--max-wait", type=float, default=60.0)
    args = parser.parse_args()
    batches, rounds, steps = (10, 2, 16) if args.quick else (30, 3, 24)

    import datasets

    from mimcl_hub.data import (AugmentConfig, TwinContrastiveDataset, TwinPairDataset, build_two_source_dataset,
                                load_twin_clips)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        one, ten, digits, with_frames = make_data(root, args.scenes)
        augment = AugmentConfig(img_size=IMG)
        mined = datasets.load_dataset(str(one), split="train")
        bank = TwinContrastiveDataset(load_twin_clips(with_frames), augment, twin_mode="mi")
        pairs = TwinPairDataset(mined, augment, twin_mode="mi")
        joined = build_two_source_dataset(str(digits), str(one), "mi", augment, 0)
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
        busy = _idle.wait_idle(args.max_wait)
        print(f"[training] other processes kept {busy:.2f} cores busy", flush=True)
        rss_one = peak_rss_of_training(root / "run-1x", digits, one, steps)
        rss_ten = peak_rss_of_training(root / "run-10x", digits, ten, steps)
        print(f"RESULT train_peak_rss_mib_1x {rss_one:.1f}")
        print(f"RESULT train_peak_rss_mib_10x {rss_ten:.1f}")
        print(f"RESULT train_peak_rss_ratio_10x {rss_ten / rss_one:.3f}")


if __name__ == "__main__":
    main()
