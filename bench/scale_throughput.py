"""Scale-out bench: what a real corpus needs, measured side by side in one run.

Not a test: run it by hand.

    python bench/scale_throughput.py            # full run (more clips, steps and rounds)
    python bench/scale_throughput.py --quick    # about 10 minutes on a 2-core CPU

Data (all made here, offline): procedural scenes (``make_scenes``, 128x128, 24 frames) written as lossless
FFV1 video files, one clip per file, and the view-branch images: scikit-learn's digits upscaled to 32x32 RGB
PNG files in an ``imagefolder``. Mined twin sets are real ``mimcl mine`` outputs (Parquet shards with the
materialised crops).

1. ``mine_speedup_2proc_accelerate`` -- wall seconds of (384 clips; full run 768)
   ``accelerate launch --num_processes 1 -m mimcl_hub.cli mine VIDEOS --output DIR --num_shards 8`` divided by
   those of ``ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 -m mimcl_hub.cli mine ...``
   (the same clips and shards; launcher start-up included, as a user pays it). Rounds alternate 1, 2, 1, 2 ...;
   each mines into a fresh folder; the best round of each is kept. The two outputs are checked equal.
2. ``train_peak_rss_ratio_10x`` -- peak memory (RSS summed over the training process and its DataLoader workers,
   sampled every 50 ms) of ``mimcl train --train_dataset IMAGES --twin_dataset MINED`` with 10x the view images
   and 10x the mined clips (so ~10x the twin pairs; 32 vs 320 clips, full run 64 vs 640) over 1x, the same steps,
   model and batch. Training reads
   memory-mapped Arrow / Parquet and decodes only the crops a batch needs, so the ratio stays near 1.
3. ``pairs_pipeline_efficiency`` -- images/s of the full ``train()`` loop reading the mined Parquet pairs and the
   image folder (``--train_dataset`` + ``--twin_dataset``; DataLoader, augmentation, both InfoAug branches,
   optimizer, logging) over images/s of the bare step (backbone + heads forward / backward / optimizer step on
   pre-made tensors of the same shapes, precision and memory format; ``bench/train_throughput.py``'s
   ``BareStep``), ResNet-18 (CIFAR stem) SimCLR, batch 32 + 32 twin pairs, bf16, channels_last. The loop's rate
   is read from its own log (the first logging window left out); bare and loop rounds alternate; medians. One
   DataLoader worker (``--workers``): with 0 the item's reads and decodes (the view image, one mined row, two JPEG
   crops: ~1.1 ms more per item than the in-RAM clip bank) run between the steps.

Before each timed phase the script waits (``--max-wait``) until other processes leave the cores idle.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import train_throughput as tt  # bench/ is the script's folder, first on sys.path
from _idle import wait_idle
from mine_throughput import write_scene_videos


def _env(**extra) -> dict:
    env = dict(os.environ, HF_DATASETS_DISABLE_PROGRESS_BARS="1", TQDM_DISABLE="1", **extra)
    env.pop("ACCELERATE_CONFIG_FILE", None)
    return env


class TreePeak:
    """Peak RSS summed over a process and its children (psutil, every ``period`` s) while it runs."""

    def __init__(self, pid: int, period: float = 0.05):
        import psutil

        self.proc, self.period, self.peak = psutil.Process(pid), period, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0
            try:
                for p in [self.proc] + self.proc.children(recursive=True):
                    try:
                        total += p.memory_info().rss
                    except Exception:  # a worker that just exited
                        pass
            except Exception:
                pass
            self.peak = max(self.peak, total)
            self._stop.wait(self.period)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def run(cmd: list[str], env: dict, what: str, peak: bool = False) -> tuple[float, int]:
    """Run ``cmd``; (wall seconds, peak tree RSS or 0). Exits with the output on failure."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    sampler = TreePeak(proc.pid) if peak else None
    out, _ = proc.communicate()
    seconds = time.perf_counter() - t0
    rss = sampler.stop() if sampler else 0
    if proc.returncode != 0:
        raise SystemExit(f"FAIL: {what} exited {proc.returncode}: {' '.join(cmd)}\n{out[-4000:]}")
    return seconds, rss


# ----------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------


def write_digit_images(folder: str, times: int) -> str:
    """``times`` x the 1797 digits as 32x32 RGB PNG files in ``folder/train/LABEL/`` (an imagefolder); copies
    k > 0 are shifted by k px (cyclic) so no two files are identical."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for k in range(times):
        for i, (image, label) in enumerate(zip(digits.images, digits.target)):
            pixels = np.kron(image / 16.0 * 255, np.ones((4, 4))).astype(np.uint8)
            pixels = np.roll(pixels, k, axis=1)
            path = os.path.join(folder, "train", str(label), f"{k}-{i}.png")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            Image.fromarray(np.stack([pixels] * 3, -1)).save(path)
    return folder


def mine(videos: str, output: str, processes: int, shards: int = 8) -> float:
    """Wall seconds of a ``mimcl mine`` of ``videos`` under ``accelerate launch`` with ``processes`` processes."""
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(processes),
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    if processes > 1:
        launch.insert(3, "--multi_gpu")
    cmd = launch + ["-m", "mimcl_hub.cli", "mine", videos, "--output", output, "--num_shards", str(shards),
                    "--max_side", "128"]
    seconds, _ = run(cmd, _env(ACCELERATE_USE_CPU="1"), f"mine with {processes} processes")
    return seconds


def train_cmd(output: str, images: str, twins: str, steps: int) -> list[str]:
    return [sys.executable, "-m", "mimcl_hub.cli", "train", "--model_name", tt.MODEL, "--objective", "simclr",
            "--img_size", str(tt.IMG), "--per_device_train_batch_size", str(tt.BATCH), "--mixed_precision", "bf16",
            "--output_dir", output,
            "--train_dataset", images, "--twin_dataset", twins, "--max_steps", str(steps), "--save_steps", "0",
            "--eval_dataset", "none", "--report_to", "none", "--disable_tqdm", "true", "--logging_steps", "5"]


def same_mined(a: str, b: str) -> bool:
    """The two mined folders hold the same rows: clip ids, twins, MI (NaN where invalid), crops and their bytes."""
    import datasets

    one, two = (datasets.load_dataset(p, split="train") for p in (a, b))
    keys = ["clip_id", "twin", "twin_mi", "crop_patch", "crop_image"]
    rows = [d.select_columns(keys).cast_column("crop_image", datasets.Sequence(datasets.Image(decode=False)))
            .with_format("arrow")[:] for d in (one, two)]
    return rows[0].equals(rows[1]) or json.dumps(rows[0].to_pylist(), default=repr) == json.dumps(
        rows[1].to_pylist(), default=repr)


# ----------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------


def _folder(path: str, write) -> str:
    """``path``, written once by ``write(tmp)`` into a temporary sibling and renamed (reused when it exists)."""
    if not os.path.isdir(path):
        shutil.rmtree(path + ".tmp", ignore_errors=True)
        os.makedirs(path + ".tmp")
        write(path + ".tmp")
        os.replace(path + ".tmp", path)
    return path


def part_mine(tmp: str, clips: int, rounds: int, max_wait: float) -> list[str]:
    """1 vs 2 processes under accelerate launch, the same clips, alternating rounds."""
    videos = _folder(os.path.join(tmp, "videos"), lambda d: write_scene_videos(d, clips, seed=0))
    one, two = [], []
    for r in range(rounds):
        for processes, into in ((1, one), (2, two)):
            out = os.path.join(tmp, f"mined-{processes}p-{r}")
            shutil.rmtree(out, ignore_errors=True)
            wait_idle(max_wait)
            into.append(mine(videos, out, processes))
            print(f"mine {processes} process(es), round {r}: {into[-1]:.1f} s", flush=True)
    if not same_mined(os.path.join(tmp, "mined-1p-0"), os.path.join(tmp, "mined-2p-0")):
        raise SystemExit("FAIL: the 2-process mine differs from the 1-process mine")
    print(f"mining {clips} clips (8 shards): 1 process {min(one):.1f} s, 2 processes {min(two):.1f} s (best rounds)")
    return [f"RESULT mine_speedup_2proc_accelerate={min(one) / min(two):.2f}"]


def two_sources(tmp: str, rss_clips: int) -> dict[int, tuple[str, str]]:
    """{1: (images, mined), 10: (images, mined)}: 1x and 10x view images and mined clips."""
    out = {}
    for times in (1, 10):
        videos = _folder(os.path.join(tmp, f"videos{times}x"),
                         lambda d, t=times: write_scene_videos(d, t * rss_clips, seed=t))
        mined = os.path.join(tmp, f"mined{times}x")
        if not os.path.isfile(os.path.join(mined, "README.md")):
            mine(videos, mined, 2, shards=2 * times)
        images = _folder(os.path.join(tmp, f"images{times}x"), lambda d, t=times: write_digit_images(d, t))
        out[times] = (images, mined)
    return out


def part_memory(tmp: str, data: dict, rounds: int, steps: int, max_wait: float) -> list[str]:
    """Peak RSS of training on 10x vs 1x view images and mined clips."""
    peaks = {1: [], 10: []}
    for r in range(rounds):
        for times, (images, mined) in data.items():
            out = os.path.join(tmp, f"train-{times}x-{r}")
            shutil.rmtree(out, ignore_errors=True)
            wait_idle(max_wait)
            seconds, peak = run(train_cmd(out, images, mined, steps), _env(), f"training {times}x", peak=True)
            peaks[times].append(peak)
            print(f"train {times}x, round {r}: {seconds:.1f} s, peak RSS {peak / 2**20:.0f} MiB", flush=True)
    print(f"training peak RSS (lowest round): 1x {min(peaks[1]) / 2**20:.0f} MiB, 10x {min(peaks[10]) / 2**20:.0f} MiB")
    return [f"RESULT train_peak_rss_ratio_10x={min(peaks[10]) / min(peaks[1]):.3f}"]


def part_efficiency(tmp: str, data: dict, rounds: int, workers: int = 0) -> list[str]:
    """The loop on Parquet pairs + an image folder vs the bare step, alternating rounds."""
    images, mined = data[1]
    overrides = dict(train_dataset=images, twin_dataset=mined, dataloader_num_workers=workers)
    config = tt.recipe_config(os.path.join(tmp, "bare"), 1, 1, **overrides)   # never run: outside the inputs
    bare = tt.BareStep(config)
    bare_rates, loop_rates = [], []
    for r in range(rounds):
        tt.wait_idle()
        bare_rates += bare.rates(8)
        tt.wait_idle()
        rates, twin_batch = tt.recipe_rates(tmp, windows=3, logging_steps=5, **overrides)
        loop_rates += rates
        print(f"efficiency round {r}: bare {tt.med(bare_rates):.2f}, loop {tt.med(rates):.2f} images/s "
              f"(mean twin batch {twin_batch:.1f})", flush=True)
    return [f"RESULT loop_images_per_s={tt.med(loop_rates):.2f}", f"RESULT bare_images_per_s={tt.med(bare_rates):.2f}",
            f"RESULT pairs_pipeline_efficiency={tt.med(loop_rates) / tt.med(bare_rates):.3f}"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer clips, steps and rounds")
    ap.add_argument("--max-wait", type=float, default=60.0, help="seconds to wait for idle cores before a phase")
    ap.add_argument("--keep", default=None, help="keep the data in this folder (reused when rerun)")
    ap.add_argument("--workers", type=int, default=1, help="DataLoader workers of the efficiency part (default 1: "
                    "decoding the image and the two crops overlaps the step; 0 is the recipes' CPU default)")
    ap.add_argument("--parts", default="mine,memory,efficiency",
                    help="comma list of the parts to run (default all: mine,memory,efficiency)")
    args = ap.parse_args(argv)
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    if not parts or parts - {"mine", "memory", "efficiency"}:
        ap.error(f"--parts: choose from mine, memory, efficiency (got {args.parts!r})")
    tt.MAX_WAIT = args.max_wait
    clips = 384 if args.quick else 768          # enough that mining, not the ~5 s launcher start, dominates
    rss_clips = 32 if args.quick else 64        # 1x of the memory comparison (10x: ten times as many)
    rounds = 2 if args.quick else 3
    steps = 20 if args.quick else 40
    tmp = args.keep or tempfile.mkdtemp(prefix="mimcl-scale-")
    os.makedirs(tmp, exist_ok=True)
    print(f"# scale bench ({', '.join(sorted(parts))}): {clips} clips to mine, {rss_clips} / {10 * rss_clips} mined "
          f"clips and 1797 / 17970 view images for memory, {rounds} rounds, {steps} training steps; data in {tmp}",
          flush=True)
    results = []
    try:
        if "mine" in parts:
            results += part_mine(tmp, clips, rounds, args.max_wait)
        if parts & {"memory", "efficiency"}:
            data = two_sources(tmp, rss_clips)
            if "memory" in parts:
                results += part_memory(tmp, data, rounds, steps, args.max_wait)
            if "efficiency" in parts:
                results += part_efficiency(tmp, data, rounds, args.workers)
        print("\n".join(results))
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
