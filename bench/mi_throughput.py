"""All-pairs KSG mutual-information throughput: ``mimcl_hub.mi.pairwise_mi`` vs the per-pair
cKDTree KSG that common code (NPEET, scikit-learn's ``mutual_info_regression``) uses.

Not a test: run it by hand.

    python bench/mi_throughput.py            # full run (more repeats)
    python bench/mi_throughput.py --quick    # a couple of minutes at most on a laptop CPU
    python bench/mi_throughput.py --device cuda   # also time the torch backend on a GPU (P=1024)
    python bench/mi_throughput.py --device cuda --device_only --samples 24   # only the GPU vs CPU-kernel part

Device part (``--device`` other than cpu, or ``--device_only``): P = ``--num_patches`` (1024) trajectories of
``--samples`` displacement samples (63; a 25-frame clip gives 24), d = 2: pairs/s of the torch backend on the
device in float32 and float64 against the compiled CPU kernel (``backend="numba"``, all of this machine's cores)
on the same data; the float64 matrix must equal the CPU kernel's (max |diff| < 1e-9).

Data: P seeded 2-D trajectories of T = 64 time steps (random walks; groups of four follow a shared
"object" motion with individual noise of different strength, the rest move independently, so
the MI matrix has both near-zero and large entries). KSG wants roughly independent samples, so both
estimators see the frame-to-frame displacements: T − 1 = 63 samples of dimension 2 per trajectory
(pairwise_mi's input is (P, 63, 2)). k = 5 (the KSG paper's and the library's default).

Baseline (per pair, as in NPEET / scikit-learn, vectorised over samples, written here):
    z = [x, y];  ε = cKDTree(z).query(z, k=k+1, p=inf) distance to the (k+1)-th point (self first)
    n_x = cKDTree(x).query_ball_point(x, r=nextafter(ε, 0), p=inf, return_length=True) − 1
    (same for y);  I = ψ(k) + ψ(N) − mean(ψ(n_x + 1) + ψ(n_y + 1))
``nextafter(ε, 0)`` turns the ball's "≤ r" into the estimator's strict "< ε". (For data with exact
duplicates that give ε = 0 the two would differ — nextafter(0, 0) = 0 still counts the duplicates —
which is why the benchmark uses continuous data.) The trees are rebuilt for every pair, as that
code does; a variant that builds each trajectory's marginal tree once is timed for information.

Both must give the same matrix (max |Δ| < 1e-9) or the script fails loudly. Times are the best of
several repeats after a warm-up call (the warm-up also compiles numba's kernels).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np
import torch
from scipy.spatial import cKDTree
from scipy.special import digamma

from mimcl_hub.mi import pairwise_mi

T_STEPS = 64  # time steps per trajectory → T_STEPS − 1 displacement samples
DIM = 2
K = 5
TOL = 1e-9


# ----------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------


def make_displacements(p: int, steps: int = T_STEPS, dim: int = DIM, seed: int = 0) -> np.ndarray:
    """(p, steps − 1, dim) float64 frame-to-frame displacements of p seeded random-walk trajectories.

    Trajectories come in groups of four; in each group of four, three follow the group's object
    motion plus individual noise (std 0.1, 0.5, 1.5) and the fourth moves on its own.
    """
    rng = np.random.default_rng([seed, p, steps, dim])
    groups = (p + 3) // 4
    obj = rng.standard_normal((groups, steps, dim))
    vel = np.empty((p, steps, dim))
    noise = (0.1, 0.5, 1.5)
    for t in range(p):
        g, r = divmod(t, 4)
        own = rng.standard_normal((steps, dim))
        vel[t] = own if r == 3 else obj[g] + noise[r] * own
    pos = np.cumsum(vel, axis=1)  # positions at T time steps
    return np.ascontiguousarray(np.diff(pos, axis=1))  # T − 1 displacements


# ----------------------------------------------------------------------------------------------
# baseline: per-pair cKDTree KSG (NPEET / scikit-learn style)
# ----------------------------------------------------------------------------------------------


def _ksg_pair_ckdtree(x: np.ndarray, y: np.ndarray, k: int, tree_x=None, tree_y=None) -> float:
    n = x.shape[0]
    z = np.hstack([x, y])
    eps = cKDTree(z).query(z, k=k + 1, p=np.inf)[0][:, -1]
    r = np.nextafter(eps, 0)
    tx = cKDTree(x) if tree_x is None else tree_x
    ty = cKDTree(y) if tree_y is None else tree_y
    nx = tx.query_ball_point(x, r=r, p=np.inf, return_length=True) - 1
    ny = ty.query_ball_point(y, r=r, p=np.inf, return_length=True) - 1
    return float(digamma(k) + digamma(n) - np.mean(digamma(nx + 1) + digamma(ny + 1)))


def baseline_pairwise(traj: np.ndarray, k: int = K) -> np.ndarray:
    """(P, P) MI, one cKDTree KSG call per pair (trees rebuilt per pair, as per-pair code does)."""
    p = traj.shape[0]
    out = np.zeros((p, p))
    for i in range(p):
        for j in range(i + 1, p):
            out[i, j] = out[j, i] = _ksg_pair_ckdtree(traj[i], traj[j], k)
    return out


def baseline_pairwise_cached(traj: np.ndarray, k: int = K) -> np.ndarray:
    """Same, but each trajectory's marginal tree is built once and shared by its pairs."""
    p = traj.shape[0]
    trees = [cKDTree(t) for t in traj]
    out = np.zeros((p, p))
    for i in range(p):
        for j in range(i + 1, p):
            out[i, j] = out[j, i] = _ksg_pair_ckdtree(traj[i], traj[j], k, trees[i], trees[j])
    return out


# ----------------------------------------------------------------------------------------------
# timing helpers
# ----------------------------------------------------------------------------------------------


def best_time(fn, repeats: int, sync=None):
    """(best seconds, last result) of ``repeats`` calls after one untimed warm-up call."""
    result = fn()
    if sync is not None:
        sync()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        if sync is not None:
            sync()
        best = min(best, time.perf_counter() - t0)
    return best, result


def check_same(name: str, ours, ref: np.ndarray) -> float:
    ours = ours.detach().cpu().numpy() if isinstance(ours, torch.Tensor) else np.asarray(ours)
    diff = float(np.max(np.abs(ours.astype(np.float64) - ref)))
    if not np.isfinite(diff) or diff >= TOL:
        i, j = np.unravel_index(np.argmax(np.abs(ours - ref)), ref.shape)
        raise SystemExit(
            f"FAIL: {name} differs from the cKDTree baseline: max |diff| = {diff:.3e} >= {TOL:g} "
            f"(at pair ({i}, {j}): ours {ours[i, j]!r}, baseline {ref[i, j]!r})"
        )
    return diff


def pairs(p: int) -> int:
    return p * (p - 1) // 2


def time_torch_device(dev: torch.device, p: int, n: int, reps: int, seed: int) -> dict[str, float]:
    """Pairs/s of the torch backend on ``dev`` (float32 and float64) and of the CPU kernel at P = ``p``, N = ``n``
    displacement samples (d = 2); the float64 matrix is checked against the CPU kernel's. Returns the RESULT values."""
    traj = make_displacements(p, steps=n + 1, seed=seed)
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else None
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else str(dev)
    t_cpu, ref = best_time(lambda: pairwise_mi(traj, k=K, backend="numba"), reps)
    results = {"mi_pairs_per_s_cpu_kernel": pairs(p) / t_cpu}
    print(f"# CPU kernel (numba, {os.cpu_count()} CPUs): P={p} N={n} pairs={pairs(p)} {t_cpu:.4f} s -> "
          f"{pairs(p) / t_cpu:.3g} pairs/s")
    for dtype in (torch.float32, torch.float64):
        t = torch.as_tensor(traj, dtype=dtype, device=dev)
        t_dev, out = best_time(lambda: pairwise_mi(t, k=K, backend="torch"), reps, sync=sync)
        short = str(dtype).replace("torch.", "")
        results[f"mi_pairs_per_s_{dev.type}_{short}"] = pairs(p) / t_dev
        extra = ""
        if dtype == torch.float64:  # the same estimator in the same precision: the same matrix
            extra = f"  max|diff| vs CPU kernel {check_same(f'{dev} torch backend', out, ref):.1e}"
            results[f"mi_speedup_{dev.type}_float64_vs_cpu_kernel"] = t_cpu / t_dev
        print(f"# {name} torch backend {short}: P={p} N={n} pairs={pairs(p)} {t_dev:.4f} s -> "
              f"{pairs(p) / t_dev:.3g} pairs/s ({t_cpu / t_dev:.2f}x the CPU kernel){extra}")
    return results


def cpu_table(args, reps: int, base_reps: int) -> dict[int, float]:
    """The CPU table: ours (CPU kernel and torch backend) against the per-pair cKDTree baseline at P = 48, 64 and
    (ours only) 256, N = 63; fails loudly if any matrix differs. Returns the speed-ups over the baseline by P."""
    n = T_STEPS - 1
    print(
        f"# trajectories: {T_STEPS} time steps -> N = {n} displacement samples of dim {DIM}; k = {K}; "
        f"times: best of {reps} (ours; torch backend at P=256: {min(reps, 2)}) / {base_reps} (baseline) after one warm-up call"
    )
    print("# baseline = per-pair cKDTree KSG (joint query k+1, marginal query_ball_point at nextafter(eps, 0))")
    print()

    header = (
        f"{'P':>5} {'N':>4} {'pairs':>7} {'baseline_s':>11} {'ours_s':>9} {'speedup':>8} {'target':>7} "
        f"{'torch_cpu_s':>12} {'base_cached_s':>14} {'ours_pairs/s':>13} {'max|diff|':>10}"
    )
    print(header)
    print("-" * len(header))

    speedups = {}
    for p, target in ((48, 20), (64, 100)):
        traj = make_displacements(p, seed=args.seed)
        t_base, ref = best_time(lambda: baseline_pairwise(traj), base_reps)
        t_cached, ref_cached = best_time(lambda: baseline_pairwise_cached(traj), base_reps)
        t_ours, ours = best_time(lambda: pairwise_mi(traj, k=K, backend="numba"), reps)
        t_torch, ours_torch = best_time(lambda: pairwise_mi(traj, k=K, backend="torch"), reps)
        diff = max(
            check_same(f"P={p} pairwise_mi(numba)", ours, ref),
            check_same(f"P={p} pairwise_mi(torch)", ours_torch, ref),
            check_same(f"P={p} cached-tree baseline", ref_cached, ref),
        )
        speedups[p] = t_base / t_ours
        print(
            f"{p:>5} {n:>4} {pairs(p):>7} {t_base:>11.4f} {t_ours:>9.5f} {speedups[p]:>7.1f}x {'>=' + str(target) + 'x':>7} "
            f"{t_torch:>12.5f} {t_cached:>14.4f} {pairs(p) / t_ours:>13.3g} {diff:>10.1e}"
        )

    # larger P, ours only (the baseline would take ~P²/2 × per-pair time)
    p = 256
    traj = make_displacements(p, seed=args.seed)
    t_ours, ours = best_time(lambda: pairwise_mi(traj, k=K, backend="numba"), reps)
    t_torch, ours_torch = best_time(lambda: pairwise_mi(traj, k=K, backend="torch"), min(reps, 2))
    diff = check_same(f"P={p} torch vs numba", ours_torch, np.asarray(ours))
    # spot-check a few pairs against the baseline
    rng = np.random.default_rng(args.seed)
    for i, j in rng.choice(p, size=(8, 2), replace=True):
        if i != j:
            ref_ij = _ksg_pair_ckdtree(traj[i], traj[j], K)
            if not abs(ours[i, j] - ref_ij) < TOL:
                raise SystemExit(f"FAIL: P={p} pair ({i}, {j}): ours {ours[i, j]!r} vs baseline {ref_ij!r}")
    print(
        f"{p:>5} {n:>4} {pairs(p):>7} {'-':>11} {t_ours:>9.5f} {'-':>8} {'':>7} "
        f"{t_torch:>12.5f} {'-':>14} {pairs(p) / t_ours:>13.3g} {diff:>10.1e}"
    )
    return speedups


# ----------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repeats (finishes in well under 2 minutes on a small CPU)")
    ap.add_argument("--device", default="cpu",
                    help="'cuda' (or 'cuda:N') to also time the torch backend on a GPU against the CPU kernel")
    ap.add_argument("--num_patches", "--num-patches", type=int, default=1024,
                    help="trajectories P of the device part (default %(default)s)")
    ap.add_argument("--samples", type=int, default=T_STEPS - 1,
                    help="displacement samples N per trajectory in the device part (default %(default)s)")
    ap.add_argument("--device_only", "--device-only", action="store_true",
                    help="run only the device part (skip the CPU table against the cKDTree baseline)")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats for our calls (default 40, --quick 20)")
    ap.add_argument("--baseline-repeats", type=int, default=None, help="timed repeats for the baseline (default 3, --quick 2)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    reps = args.repeats or (20 if args.quick else 40)
    base_reps = args.baseline_repeats or (2 if args.quick else 3)

    try:
        import numba

        numba_threads = numba.get_num_threads()
    except ImportError:  # pragma: no cover
        numba_threads = "n/a (numba missing)"
    print(
        f"# mimcl_hub pairwise KSG MI throughput  (python {platform.python_version()}, torch {torch.__version__}, "
        f"{os.cpu_count()} CPUs, numba threads {numba_threads}, torch threads {torch.get_num_threads()})"
    )
    speedups = {} if args.device_only else cpu_table(args, reps, base_reps)

    # device part: torch backend on the device against the CPU kernel at P = --num_patches
    print()
    device_results = {}
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"# --device {args.device}: CUDA is not available here; GPU timing skipped")
    elif args.device != "cpu" or args.device_only:
        device_results = time_torch_device(torch.device(args.device), args.num_patches, args.samples, reps, args.seed)
    else:
        print("# GPU timing skipped (run with --device cuda on a machine with a GPU; P=1024 there)")

    print()
    for p, speedup in speedups.items():
        print(f"RESULT mi_speedup_p{p}={speedup:.1f}")
    for name, value in device_results.items():
        print(f"RESULT {name}={value:.4g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
