"""Training throughput: the full recipe loop against the bare model step, and against lightly.

Not a test: run it by hand.

    python bench/train_throughput.py            # full run (more steps and rounds)
    python bench/train_throughput.py --quick    # a few minutes on a 2-core CPU
    python bench/train_throughput.py --device cuda --workers 8 --video_dataset scenes:160   # on a GPU, batch 256
    python bench/train_throughput.py --device cuda --data_wait 0,4,8 --skip-formats --skip-loop --skip-peer

Model and batch (the ResNet-18 CPU recipe with SimCLR in both branches): ``resnet18_cifar`` (timm
ResNet-18 with the CIFAR stem) at 32 px, batch 32 images (two views each) + 32 twin pairs, AdamW,
and the precision / memory format of ``TrainConfig``'s defaults (bf16 autocast, channels_last),
which the first table shows to be the fastest here.

1. **Precision / format** — images/s of the bare step (below) in fp32 / bf16 autocast x
   contiguous / channels_last.
2. **Pipeline efficiency** — images/s of ``mimcl_hub.train.train`` (the full loop: the offline
   default clips, DataLoader + augmentation, both InfoAug branches, grad clipping, optimizer,
   scheduler, logging) divided by images/s of the *bare* step on the same model: backbone + both
   objectives' heads, forward / backward / ``optimizer.step`` on pre-made tensors of the same shapes
   (views (32, 3, 32, 32) x 2, twins (32, 3, 32, 32) x 2), the same precision, memory format and
   optimizer (``build_optimizer``). The loop's rate is read from its own log (``samples_per_second``
   per logging window, the first window — worker start, first-step set-up — left out); the bare
   phases run before, between and after the loop runs, in this process. Images = view-branch images
   per step for both (32), so the ratio compares the same work.
3. **Peer** — the same objective (SimCLR), backbone, batch, precision and optimizer step, with the
   data and loss from ``mimcl_hub`` (``TwinContrastiveDataset`` with ``twin_mode="none"`` over the
   same clips, ``collate_contrastive``, the SimCLR objective: projection MLP + ``info_nce``)
   against lightly (``SimCLRTransform`` on PIL images of the same frames, the same settings: crop
   scale (0.2, 1), flip 0.5, colour jitter 0.4 / 0.1 hue with p 0.8, grey 0.2, no blur, CIFAR
   normalisation; ``SimCLRProjectionHead`` 512-512-128; ``NTXentLoss`` at τ = 0.2). Both run the
   same step (one backbone forward over both views) and the same DataLoader settings as the
   recipe; rounds alternate between the two. lightly is a benchmark-only dependency
   (``pip install -e ".[bench]"``, see pyproject); without it this part is skipped with a message.

4. **Data wait** (``--data_wait 0,4,8``) — for each DataLoader worker count, the share of the full loop's time
   that the training process spends blocked in ``next()`` on the DataLoader iterator (the time of every call,
   over the time from the first to the last call after ``WAIT_WARMUP`` warm-up batches: each interval between
   two calls is one step plus its wait for data). The timing wraps ``_BaseDataLoaderIter.__next__`` during the
   run; nothing else changes.

``--device cuda`` runs all of it on the GPU (``train()`` picks CUDA itself; the bare and peer steps move their
model and batches there, autocast on CUDA, and synchronise before reading a clock) at batch 256 (``--batch``),
what a GPU run uses; ``--device cpu`` keeps ``train()`` on the CPU too (``ACCELERATE_USE_CPU``).

Numbers move with the machine's load (a second busy process slows the two-thread bf16 step
several-fold here): before each timed phase the script waits (``--max-wait``, default 60 s) until
other processes leave the cores idle, prints how busy they were and the load average, runs the
compared things alternately, and reports medians.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time

import torch

import _idle  # bench/ is the script's folder, first on sys.path

IMG = 32
BATCH = 32                       # --batch (default 32 on the CPU, 256 with --device cuda)
MODEL = "resnet18_cifar"
DEVICE = torch.device("cpu")     # --device
WAIT_WARMUP = 5                  # data wait: batches left out at the start (worker start, first-step set-up)


def sync() -> None:
    """Wait for queued GPU work (a clock read after it measures the work, not its launch)."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


MAX_WAIT = 60.0
OTHERS: list[float] = []


def wait_idle(threshold: float = 0.15) -> None:
    """Wait (at most ``MAX_WAIT`` s) until other processes keep less than ``threshold`` of a core busy; the
    last reading is kept in ``OTHERS`` (printed with the results)."""
    if MAX_WAIT > 0:
        OTHERS.append(_idle.wait_idle(MAX_WAIT, threshold))


def recipe_config(output_dir: str, max_steps: int, logging_steps: int, **overrides):
    from mimcl_hub.train import CPU_RECIPE_DEFAULTS, TrainConfig

    values = {**CPU_RECIPE_DEFAULTS, "output_dir": output_dir, "model_name": MODEL, "objective": "simclr",
              "img_size": IMG, "per_device_train_batch_size": BATCH, "twin_batch_size": BATCH,
              "max_steps": max_steps, "logging_steps": logging_steps, "save_steps": 0, "eval_dataset": "none",
              "report_to": "none", "disable_tqdm": True, "overwrite_output_dir": True, "seed": 0}
    values.update(overrides)
    return TrainConfig(**values)


# ----------------------------------------------------------------------------------------------
# bare step
# ----------------------------------------------------------------------------------------------


class BareStep:
    """Backbone + InfoAug heads + optimizer of a ``TrainConfig``, stepped on pre-made tensors."""

    def __init__(self, config, bf16: bool | None = None, channels_last: bool | None = None):
        from mimcl_hub.models import create_backbone
        from mimcl_hub.objectives import build_infoaug
        from mimcl_hub.train import build_optimizer

        torch.manual_seed(0)
        self.bf16 = config.mixed_precision == "bf16" if bf16 is None else bf16
        cl = config.channels_last if channels_last is None else channels_last
        fmt = torch.channels_last if cl else torch.contiguous_format
        self.backbone = create_backbone(config.model_name, img_size=config.img_size).to(DEVICE, memory_format=fmt)
        view_kwargs, mi_kwargs = config.objective_kwargs()
        self.objective = build_infoaug(config.objective, config.mi_objective_name, feature_dim=self.backbone.num_features,
                                       mi_weight=config.mi_weight, twin_mode=config.twin_mode,
                                       view_kwargs=view_kwargs, mi_kwargs=mi_kwargs)
        self.objective.build_targets(self.backbone)
        self.objective.to(DEVICE)
        self.optimizer = build_optimizer(config, self.backbone, self.objective)
        b, s = config.per_device_train_batch_size, config.img_size
        twins = config.twin_batch_size or b
        g = torch.Generator().manual_seed(0)

        def batch(n):
            return torch.randn(n, 3, s, s, generator=g).to(DEVICE).contiguous(memory_format=fmt)

        self.views = (batch(b), batch(b))
        self.twins = (batch(twins), batch(twins))
        self.batch = b
        self.backbone.train(), self.objective.train()

    def step(self) -> None:
        with torch.autocast(DEVICE.type, dtype=torch.bfloat16, enabled=self.bf16):
            out = self.objective(self.backbone, self.views, self.twins)
        out.loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def rates(self, steps: int, warmup: int = 1) -> list[float]:
        """images/s of each of ``steps`` timed steps (after ``warmup`` untimed ones); on a GPU one figure for all
        ``steps`` (timed between two synchronisations, as the loop runs them: queued, not one by one)."""
        for _ in range(warmup):
            self.step()
        if DEVICE.type == "cuda":
            if steps == 0:
                sync()
                return []
            sync()
            t0 = time.perf_counter()
            for _ in range(steps):
                self.step()
            sync()
            return [steps * self.batch / (time.perf_counter() - t0)]
        out = []
        for _ in range(steps):
            t0 = time.perf_counter()
            self.step()
            out.append(self.batch / (time.perf_counter() - t0))
        return out


# ----------------------------------------------------------------------------------------------
# the full loop
# ----------------------------------------------------------------------------------------------


def recipe_rates(tmp: str, windows: int, logging_steps: int, **overrides) -> tuple[list[float], float]:
    """Run ``train()``; images/s of every logging window but the first, and the mean twin batch."""
    from mimcl_hub.train import train

    out = tempfile.mkdtemp(dir=tmp)
    config = recipe_config(out, (windows + 1) * logging_steps, logging_steps, **overrides)
    train(config)
    rates, twins = [], []
    with open(os.path.join(out, "trainer_log.jsonl")) as f:
        logs = [json.loads(line) for line in f]
    logs = [r for r in logs if "samples_per_second" in r]
    for r in logs[1:]:
        rates.append(float(r["samples_per_second"]))
        twins.append(float(r.get("twin_batch", 0.0)))
    shutil.rmtree(out, ignore_errors=True)
    return rates, (sum(twins) / len(twins) if twins else float("nan"))


class NextTimer:
    """Times every ``next()`` on a DataLoader iterator while active (``_BaseDataLoaderIter.__next__``, which the
    single- and multi-process iterators inherit): ``calls`` holds (id of the dataset, start, end, got a batch)."""

    def __enter__(self) -> "NextTimer":
        from torch.utils.data.dataloader import _BaseDataLoaderIter

        self.cls, self.original, self.calls = _BaseDataLoaderIter, _BaseDataLoaderIter.__next__, []
        original, calls = self.original, self.calls

        def timed_next(it):
            t0, ok = time.perf_counter(), False
            try:
                batch = original(it)
                ok = True
                return batch
            finally:
                calls.append((id(it._dataset), t0, time.perf_counter(), ok))

        self.cls.__next__ = timed_next
        return self

    def __exit__(self, *exc) -> None:
        self.cls.__next__ = self.original


def data_wait(tmp: str, workers: int, steps: int, **overrides) -> tuple[float, float, int]:
    """Run ``train()`` for ``steps`` steps with ``workers`` DataLoader workers; returns (share of the loop's time
    blocked in ``next()`` on its DataLoader, batches/s, batches timed), after ``WAIT_WARMUP`` batches."""
    from mimcl_hub.train import train

    out = tempfile.mkdtemp(dir=tmp)
    config = recipe_config(out, steps, steps, **{**overrides, "dataloader_num_workers": workers})
    with NextTimer() as timer:
        train(config)
    shutil.rmtree(out, ignore_errors=True)
    by_dataset: dict[int, list] = {}
    for call in timer.calls:
        by_dataset.setdefault(call[0], []).append(call[1:])
    calls = max(by_dataset.values(), key=len)[WAIT_WARMUP:]      # the training set's loader (the busiest one)
    if len(calls) < 3:
        raise SystemExit(f"data wait: only {len(calls)} timed batches; raise the steps (WAIT_WARMUP = {WAIT_WARMUP})")
    total = calls[-1][0] - calls[0][0]                            # from the first timed call to the last one
    waited = sum(end - start for start, end, _ in calls[:-1])     # each interval: one wait + one step
    batches = sum(ok for _, _, ok in calls[:-1])
    return waited / total, batches / total, batches


# ----------------------------------------------------------------------------------------------
# peer: lightly
# ----------------------------------------------------------------------------------------------


class PeerRunner:
    """One data pipeline + head + loss on the shared backbone recipe; ``rates(n)`` times n steps."""

    def __init__(self, name: str, loader, head: torch.nn.Module, loss_fn, config):
        from mimcl_hub.models import create_backbone

        torch.manual_seed(0)
        self.name = name
        self.fmt = torch.channels_last if config.channels_last else torch.contiguous_format
        self.bf16 = config.mixed_precision == "bf16"
        self.backbone = create_backbone(config.model_name, img_size=config.img_size).to(DEVICE, memory_format=self.fmt)
        self.head = head.to(DEVICE)
        self.loss_fn = loss_fn
        params = list(self.backbone.parameters()) + list(head.parameters())
        self.optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay, fused=True)
        self.loader = loader
        self.epoch = 0
        self.it = None

    def _next(self):
        while True:
            if self.it is None:
                if hasattr(self.loader.dataset, "set_epoch"):
                    self.loader.dataset.set_epoch(self.epoch)
                self.it = iter(self.loader)
                self.epoch += 1
            try:
                return next(self.it)
            except StopIteration:
                self.it = None

    def step(self) -> int:
        x1, x2 = self._next()
        x1 = x1.to(DEVICE, non_blocking=True).contiguous(memory_format=self.fmt)
        x2 = x2.to(DEVICE, non_blocking=True).contiguous(memory_format=self.fmt)
        with torch.autocast(DEVICE.type, dtype=torch.bfloat16, enabled=self.bf16):
            f = self.backbone(torch.cat([x1, x2]))
            z1, z2 = self.head(f).chunk(2)
            loss = self.loss_fn(z1, z2)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return x1.shape[0]

    def rate(self, steps: int) -> float:
        sync()
        t0 = time.perf_counter()
        n = sum(self.step() for _ in range(steps))
        sync()
        return n / (time.perf_counter() - t0)


def peer_runners(config, workers: int):
    """(ours, lightly) runners, or (ours, None) with the reason when lightly is not installed."""
    from torch.utils.data import DataLoader

    from mimcl_hub.models import backbone_data_config, create_backbone
    from mimcl_hub.objectives import build_objective
    from mimcl_hub.data import (AugmentConfig, TwinContrastiveDataset, collate_contrastive,
                                default_video_dataset, load_twin_clips)

    data_cfg = backbone_data_config(create_backbone(config.model_name, img_size=config.img_size))
    mean, std = tuple(data_cfg["mean"]), tuple(data_cfg["std"])
    augment = AugmentConfig(img_size=config.img_size, mean=mean, std=std)
    bank = load_twin_clips(default_video_dataset(max_side=config.max_side))
    ours_ds = TwinContrastiveDataset(bank, augment, twin_mode="none", seed=0)
    loader_kwargs = dict(batch_size=config.per_device_train_batch_size, shuffle=True, drop_last=True,
                         num_workers=workers, persistent_workers=workers > 0, pin_memory=DEVICE.type == "cuda")

    def ours_collate(items):
        batch = collate_contrastive(items)
        return batch["view1"], batch["view2"]

    simclr = build_objective("simclr", 512, temperature=0.2)
    from mimcl_hub.objectives.losses import info_nce

    ours = PeerRunner("mimcl_hub", DataLoader(ours_ds, collate_fn=ours_collate, **loader_kwargs), simclr.projector,
                      lambda z1, z2: info_nce(z1, z2, 0.2), config)
    try:
        from lightly.loss import NTXentLoss
        from lightly.models.modules import SimCLRProjectionHead
        from lightly.transforms import SimCLRTransform
    except ImportError as e:
        return ours, None, f"lightly is not installed ({e}); install the bench extra: pip install -e '.[bench]'"
    from PIL import Image

    frames = [Image.fromarray(f.permute(1, 2, 0).contiguous().numpy()) for clip in bank.frames for f in clip]
    transform = SimCLRTransform(input_size=config.img_size, cj_prob=augment.jitter_p, cj_strength=0.5,
                                min_scale=augment.crop_scale[0], random_gray_scale=augment.grayscale_p,
                                gaussian_blur=0.0, hf_prob=augment.flip_p, normalize={"mean": mean, "std": std})
    assert abs(0.5 * 0.8 - augment.jitter_strength) < 1e-9  # lightly: cj_strength x cj_bright (0.8) etc.

    class Frames(torch.utils.data.Dataset):
        def __len__(self):
            return len(frames)

        def __getitem__(self, i):
            v1, v2 = transform(frames[i])
            return v1, v2

    theirs = PeerRunner("lightly", DataLoader(Frames(), **loader_kwargs), SimCLRProjectionHead(512, 512, 128),
                        NTXentLoss(temperature=0.2), config)
    import lightly

    return ours, theirs, f"lightly {lightly.__version__}"


# ----------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------


def med(xs) -> float:
    return statistics.median(xs) if xs else float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer steps and rounds (a few minutes on a 2-core CPU)")
    ap.add_argument("--skip-formats", action="store_true", help="skip the precision / memory-format table")
    ap.add_argument("--skip-peer", action="store_true", help="skip the lightly comparison")
    ap.add_argument("--max-wait", type=float, default=60.0,
                    help="before each timed phase wait up to this many seconds for other processes to leave the "
                         "cores idle (< 0.15 cores busy over 1 s); 0 disables (default %(default)s)")
    ap.add_argument("--workers", type=int, default=None,
                    help="DataLoader workers for the loop and the peer runs (default: TrainConfig's default)")
    ap.add_argument("--device", default="cpu", help="'cpu' (default) or 'cuda' / 'cuda:N' (then --batch 256)")
    ap.add_argument("--batch", type=int, default=None,
                    help="images per step (two views each) and twin pairs per step (default 32; 256 on CUDA)")
    ap.add_argument("--video_dataset", default=None,
                    help="training clips of the full-loop runs (a --video_dataset value of the recipes, e.g. "
                         "scenes:160; default: the offline default clips); the peer runs use the default clips")
    ap.add_argument("--skip-loop", action="store_true", help="skip the pipeline-efficiency runs")
    ap.add_argument("--data_wait", default="",
                    help="comma-separated DataLoader worker counts, e.g. 0,4,8: the share of the full loop's time "
                         "blocked waiting for data with each (default: not measured)")
    args = ap.parse_args(argv)

    import logging

    import datasets

    global MAX_WAIT, DEVICE, BATCH
    MAX_WAIT = args.max_wait
    DEVICE = torch.device(args.device)
    if DEVICE.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: CUDA is not available here (torch.cuda.is_available() is False)")
    if DEVICE.type not in ("cpu", "cuda"):
        raise SystemExit(f"--device must be cpu, cuda or cuda:N, got {args.device!r}")
    if DEVICE.type == "cpu":
        os.environ["ACCELERATE_USE_CPU"] = "1"      # train() on the CPU too, where the bare and peer steps run
    elif DEVICE.index is not None:
        torch.cuda.set_device(DEVICE)               # train()'s Accelerator uses the current device
    gpu = DEVICE.type == "cuda"
    BATCH = args.batch or (256 if gpu else 32)
    try:
        wait_workers = [int(w) for w in args.data_wait.split(",") if w.strip()]
    except ValueError:
        raise SystemExit(f"--data_wait must be comma-separated integers, e.g. 0,4,8; got {args.data_wait!r}")

    datasets.disable_progress_bars()
    logging.getLogger("mimcl_hub").setLevel(logging.WARNING)
    quick = args.quick
    log_steps = (10 if quick else 20) if gpu else (2 if quick else 4)     # a GPU step is ~100x shorter
    windows = 3 if quick else 4
    loop_runs = 2
    bare_steps = (20 if quick else 50) if gpu else (3 if quick else 6)
    peer_rounds = 3 if quick else 5
    peer_steps = (10 if quick else 20) if gpu else (3 if quick else 5)
    wait_steps = 30 if quick else 80
    fmt_steps = (10 if quick else 20) if gpu else (1 if quick else 2)

    tmp = tempfile.mkdtemp(prefix="train_bench_")
    try:
        overrides = {} if args.workers is None else {"dataloader_num_workers": args.workers}
        loop_overrides = dict(overrides, video_dataset=args.video_dataset) if args.video_dataset else overrides
        base = recipe_config(os.path.join(tmp, "cfg"), 10, 2, **overrides)
        workers = base.dataloader_num_workers
        where = f"{torch.cuda.get_device_name(DEVICE)}, CUDA {torch.version.cuda}" if gpu else "CPU"
        print(f"# mimcl_hub training throughput on {where}  (python {platform.python_version()}, torch "
              f"{torch.__version__}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
              f"load average {load()})")
        print(f"# {MODEL} at {IMG} px, batch {BATCH} images (2 views) + {BATCH} twin pairs, SimCLR both branches, "
              f"{base.optimizer}; recipe defaults: mixed_precision={base.mixed_precision}, "
              f"channels_last={base.channels_last}, dataloader_num_workers={workers}; full-loop data: "
              f"{args.video_dataset or 'the offline default clips'}")

        # 1. precision / memory format of the bare step ------------------------------------------------
        if not args.skip_formats:
            print()
            header = f"{'bare step':<28} {'images/s':>9} {'vs fp32 contiguous':>19}"
            print(header)
            print("-" * len(header))
            variants = [("fp32, contiguous", False, False), ("fp32, channels_last", False, True),
                        ("bf16 autocast, contiguous", True, False), ("bf16 autocast, channels_last", True, True)]
            steppers = {name: BareStep(base, bf16=bf, channels_last=cl) for name, bf, cl in variants}
            rates = {name: [] for name in steppers}
            for name, s in steppers.items():
                s.rates(0, warmup=1)
            for _ in range(2):  # alternate, so the load hits them alike
                for name, s in steppers.items():
                    wait_idle()
                    rates[name] += s.rates(fmt_steps, warmup=0)
            ref = med(rates[variants[0][0]])
            for name, _, _ in variants:
                print(f"{name:<28} {med(rates[name]):>9.2f} {med(rates[name]) / ref:>18.2f}x")
            del steppers
            print(f"# load average {load()}")

        # 2. pipeline efficiency ---------------------------------------------------------------------
        loop_rates, bare_rates, efficiency = [], [], None
        if not args.skip_loop:
            print()
            bare = BareStep(base)
            bare.rates(0, warmup=2)
            wait_idle()
            bare_rates = bare.rates(bare_steps, warmup=0)
            twin_batches = []
            phases = [("bare", med(bare_rates))]
            for run in range(loop_runs):
                wait_idle()
                r, tb = recipe_rates(tmp, windows, log_steps, **loop_overrides)
                loop_rates += r
                twin_batches.append(tb)
                phases.append((f"loop run {run + 1}", med(r)))
                bare.rates(0, warmup=1)
                wait_idle()
                b = bare.rates(bare_steps, warmup=0)
                bare_rates += b
                phases.append(("bare", med(b)))
            efficiency = med(loop_rates) / med(bare_rates)
            header = f"{'phase (in order)':<20} {'images/s':>9}"
            print(header)
            print("-" * len(header))
            for name, rate in phases:
                print(f"{name:<20} {rate:>9.2f}")
            unit = f"{len(bare_rates)} timings of {bare_steps} steps" if gpu else f"{len(bare_rates)} steps"
            print(f"{'bare, median':<20} {med(bare_rates):>9.2f}   ({unit})")
            print(f"{'full loop, median':<20} {med(loop_rates):>9.2f}   ({len(loop_rates)} windows of {log_steps} "
                  f"steps; mean twin batch {statistics.mean(twin_batches):.1f} of {BATCH})")
            print(f"# pipeline efficiency = {efficiency:.3f}; load average {load()}")
            del bare

        # 3. peer: lightly ---------------------------------------------------------------------------
        peer_ratio = None
        if not args.skip_peer:
            print()
            ours, theirs, note = peer_runners(base, workers)
            if theirs is None:
                print(f"# peer comparison skipped: {note}")
            else:
                for r in (ours, theirs):
                    r.rate(2)  # warm-up (workers, oneDNN primitives)
                got = {ours.name: [], theirs.name: []}
                for i in range(peer_rounds):
                    pair = (ours, theirs) if i % 2 == 0 else (theirs, ours)
                    for r in pair:
                        wait_idle()
                        got[r.name].append(r.rate(peer_steps))
                header = f"{'SimCLR step, same backbone / batch / precision':<48} {'images/s':>9}"
                print(header)
                print("-" * len(header))
                print(f"{'mimcl_hub data + projection head + info_nce':<48} {med(got[ours.name]):>9.2f}")
                print(f"{'lightly SimCLRTransform + head + NTXentLoss':<48} {med(got[theirs.name]):>9.2f}")
                peer_rates = (med(got[ours.name]), med(got[theirs.name]))
                peer_ratio = peer_rates[0] / peer_rates[1]
                print(f"# {note}; medians of {peer_rounds} alternating rounds of {peer_steps} steps; "
                      f"DataLoader workers {workers}; ours / lightly = {peer_ratio:.3f}; load average {load()}")
        # 4. data wait -------------------------------------------------------------------------------
        waits = {}
        if wait_workers:
            print()
            header = f"{'DataLoader workers':<20} {'data wait share':>16} {'batches/s':>10} {'images/s':>9}"
            print(header)
            print("-" * len(header))
            for w in wait_workers:
                wait_idle()
                share, per_s, n = data_wait(tmp, w, wait_steps, **loop_overrides)
                waits[w] = (share, per_s * BATCH)
                print(f"{w:<20} {share:>16.3f} {per_s:>10.2f} {per_s * BATCH:>9.1f}")
            print(f"# share of the full loop's time blocked in next(loader), {wait_steps} steps of {BATCH} per run, "
                  f"the first {WAIT_WARMUP} batches left out; load average {load()}")
        if OTHERS:
            print(f"# other processes before each timed phase: {min(OTHERS):.2f}..{max(OTHERS):.2f} cores busy "
                  f"(median {med(OTHERS):.2f}; waited up to {MAX_WAIT:.0f} s for < 0.15)")
        print()
        if peer_ratio is not None:
            print(f"RESULT peer_speed_ratio_vs_lightly={peer_ratio:.3f}")
            print(f"RESULT peer_images_per_s_ours={peer_rates[0]:.2f}")
            print(f"RESULT peer_images_per_s_lightly={peer_rates[1]:.2f}")
        if efficiency is not None:
            print(f"RESULT loop_images_per_s={med(loop_rates):.2f}")
            print(f"RESULT bare_images_per_s={med(bare_rates):.2f}")
            print(f"RESULT pipeline_efficiency={efficiency:.3f}")
        for w, (share, images) in waits.items():
            print(f"RESULT data_wait_share_workers{w}={share:.3f}")
            print(f"RESULT data_wait_images_per_s_workers{w}={images:.1f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
