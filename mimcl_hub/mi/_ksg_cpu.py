"""CPU kernel for all-pairs KSG: compiled (numba) early-stopping neighbour scans, 8 pairs per scan.

For one pair (i, j) and sample s the KSG-1 estimator needs ε = the k-th smallest joint max-norm
distance max(a_t, b_t) over the other samples t (a = distances in trajectory i, b = in j), then
n_x = #{t : a_t < ε} and n_y = #{t : b_t < ε}.

Dense evaluation costs O(N) per (pair, sample) plus a selection. Here:

* Each row a (trajectory i, sample s) is sorted once and shared by all pairs of i.
* ε is found by scanning t in increasing a_t and keeping the k smallest joint distances; the scan
  stops as soon as a_t reaches the current k-th smallest (every later t has a joint distance
  ≥ a_t). For independent trajectories this visits ~sqrt(k/N)·N samples, for coupled ones ~k.
* One scan serves 8 partners j at once (``LANES``): the a-order of row (i, s) is the same for all of
  them, and their b-values for one t are 8 consecutive doubles because distances are stored
  trajectory-minor, ``blocks[j // 8, s, t, j % 8]``. The k smallest per partner live in vector
  registers (``_simd``); the scan stops when it is done for all 8. Going on past a partner's own
  stopping point is harmless: what it would insert is not below its k-th smallest.
* n_x counts the scanned prefix of the sorted row, n_y the partner's row, both 8 lanes at a time.

Distances are computed in float64 (float32 inputs are widened exactly). The result is the same
estimator as the dense one (same distances, same strict comparisons), only cheaper; ``bench/
mi_throughput.py`` checks it against the per-pair cKDTree estimator.
"""

from __future__ import annotations

import os
import threading

import numpy as np

try:  # numba is a regular dependency; the torch path covers its absence.
    import numba

    if "NUMBA_THREADING_LAYER" not in os.environ:
        # GNU OpenMP (numba's usual choice here) kills forked children: Dataset.map(num_proc=N) forks
        # workers after the parent may already have run a parallel kernel. The workqueue layer is
        # fork-safe and as fast for these flat loops.
        numba.config.THREADING_LAYER = "workqueue"
    from ._simd import (
        LANES,
        vadd_psi,
        vcount_below,
        vcount_scalar_below,
        vfill,
        vlane,
        vlane_count,
        vload,
        vmax_absdiff,
        vnet_done,
        vnet_init,
        vnet_insert,
        vnet_kth,
        vregs,
        vstore,
    )

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - exercised only where numba is missing
    numba = None
    HAVE_NUMBA = False
    LANES = 8

__all__ = ["HAVE_NUMBA", "pairwise_ksg_cpu"]

# register-file slots of the kernels (see _simd.FIXED_SLOTS)
_ACC = 0  # per-lane running sum of psi(n_x + 1) + psi(n_y + 1)
_CX = 1  # n_x counts; in _sorted_rows: the rank of the current element
_CY = 2  # n_y counts
_CUR = 3  # ε per lane; in _distance_blocks / _sorted_rows: the current distance vector


def _distance_blocks(xb, blocks):
    """xb: (B, N, d, 8) trajectories, trajectory-minor. Fills blocks (B, N, N, 8) with the max-norm
    distances, blocks[b, s, t, l] = max_c |xb[b, s, c, l] − xb[b, t, c, l]|, +inf on s == t."""
    nb, n, d, _ = xb.shape
    x0 = xb.ctypes.data
    y0 = blocks.ctypes.data
    xs_b, xs_s, xs_c = xb.strides[0], xb.strides[1], xb.strides[2]
    ys_b, ys_s, ys_t = blocks.strides[0], blocks.strides[1], blocks.strides[2]
    for b in numba.prange(nb):
        regs = vregs(0)
        for s in range(n):
            vfill(regs, _CUR, np.inf)
            vstore(regs, _CUR, y0 + b * ys_b + s * ys_s + s * ys_t)
            for t in range(s + 1, n):
                vfill(regs, _CUR, 0.0)
                for c in range(d):
                    vmax_absdiff(regs, _CUR, x0 + b * xs_b + s * xs_s + c * xs_c, x0 + b * xs_b + t * xs_s + c * xs_c)
                vstore(regs, _CUR, y0 + b * ys_b + s * ys_s + t * ys_t)
                vstore(regs, _CUR, y0 + b * ys_b + t * ys_s + s * ys_t)


def _sorted_rows(blocks, p, sorted_dist, order):
    """blocks (B, N, N, 8) → sorted_dist (P, N, N) each row ascending, order (P, N, N) int32 the
    matching column indices. Ranks are counted 8 rows at a time: rank(t) = #{u < t : v_u <= v_t}
    + #{u > t : v_u < v_t}, a stable order that keeps ties by index."""
    nb, n = blocks.shape[0], blocks.shape[1]
    y0 = blocks.ctypes.data
    ys_b, ys_s, ys_t = blocks.strides[0], blocks.strides[1], blocks.strides[2]
    for w in numba.prange(nb * n):
        b = w // n
        s = w - b * n
        row = y0 + b * ys_b + s * ys_s
        regs = vregs(0)
        for t in range(n):
            vload(regs, _CUR, row + t * ys_t)
            vfill(regs, _CX, 0.0)
            for u in range(t):
                vcount_below(regs, _CX, row + u * ys_t, _CUR, 1)
            for u in range(t + 1, n):
                vcount_below(regs, _CX, row + u * ys_t, _CUR, 0)
            for lane in range(LANES):
                j = b * LANES + lane
                if j < p:
                    r = vlane_count(regs, _CX, lane)
                    sorted_dist[j, s, r] = vlane(regs, _CUR, lane)
                    order[j, s, r] = t


def _make_pairs_kernel(k: int):
    """The pairs kernel for one k (a compile-time constant: the network is k vector registers)."""

    def pairs_kernel(blocks, sorted_dist, order, items, psi, out):
        """KSG-1 MI of every pair (i, j), i < j, into the symmetric (P, P) ``out``.

        items: (W, 2) work items (i, b): trajectory i against the 8 trajectories of block b. Lanes
        whose j <= i or j >= P are computed and dropped.
        """
        p = out.shape[0]
        n = sorted_dist.shape[1]
        y0 = blocks.ctypes.data
        ys_b, ys_s, ys_t = blocks.strides[0], blocks.strides[1], blocks.strides[2]
        psi_addr = psi.ctypes.data
        for w in numba.prange(items.shape[0]):
            i = items[w, 0]
            b = items[w, 1]
            regs = vregs(k)
            vfill(regs, _ACC, 0.0)
            for s in range(n):
                row = y0 + b * ys_b + s * ys_s
                vnet_init(regs, k)
                stop = n
                for r in range(n):
                    a = sorted_dist[i, s, r]
                    if vnet_done(regs, k, a):
                        stop = r
                        break
                    vnet_insert(regs, k, a, row + order[i, s, r] * ys_t)
                vnet_kth(regs, k, _CUR)  # ε per lane
                vfill(regs, _CX, 0.0)
                vfill(regs, _CY, 0.0)
                for r in range(stop):  # every a_t < ε lies in the scanned prefix
                    vcount_scalar_below(regs, _CX, sorted_dist[i, s, r], _CUR)
                for t in range(n):
                    vcount_below(regs, _CY, row + t * ys_t, _CUR, 0)
                vadd_psi(regs, _ACC, _CX, _CY, psi_addr)
            for lane in range(LANES):
                j = b * LANES + lane
                if i < j < p:
                    mi = psi[k] + psi[n] - vlane(regs, _ACC, lane) / n
                    out[i, j] = mi
                    out[j, i] = mi

    # a distinct name per k keeps numba's on-disk cache entries apart
    pairs_kernel.__name__ = pairs_kernel.__qualname__ = f"pairs_kernel_k{k}"
    return numba.njit(parallel=True, cache=True)(pairs_kernel)


_PAIRS_KERNELS: dict = {}


def _pairs_kernel(k: int):
    """The compiled pairs kernel for k, made on first use (compiled once per k, then cached on disk)."""
    kernel = _PAIRS_KERNELS.get(k)
    if kernel is None:
        kernel = _PAIRS_KERNELS[k] = _make_pairs_kernel(k)
    return kernel


if HAVE_NUMBA:
    _distance_blocks = numba.njit(parallel=True, cache=True)(_distance_blocks)
    _sorted_rows = numba.njit(parallel=True, cache=True)(_sorted_rows)


def _work_items(p: int) -> np.ndarray:
    """(W, 2) int64 (i, block) for every trajectory i and every block holding some j > i."""
    nb = -(-p // LANES)
    first = (np.arange(p) + 1) // LANES
    counts = np.maximum(nb - first, 0)
    i = np.repeat(np.arange(p), counts)
    b = np.concatenate([np.arange(f, nb) for f in first]) if p else np.zeros(0, np.int64)
    return np.stack([i, b], axis=1).astype(np.int64)


def pairwise_ksg_cpu(traj: np.ndarray, k: int, psi: np.ndarray) -> np.ndarray:
    """KSG-1 MI between all pairs of trajectories.

    Args:
        traj: (P, N, d) samples (float32 or float64; distances are computed in float64).
        k: neighbour count (1 <= k < N).
        psi: (N + 1,) float64 digamma table, psi[m] = ψ(m).

    Returns:
        (P, P) float64 symmetric MI matrix in nats, zero diagonal.
    """
    if not HAVE_NUMBA:  # pragma: no cover
        raise RuntimeError("numba is not installed; use the torch backend")
    p, n, d = traj.shape
    out = np.zeros((p, p), dtype=np.float64)
    if p < 2:
        return out
    items = _work_items(p)
    psi = np.ascontiguousarray(psi, dtype=np.float64)
    kernel = _pairs_kernel(int(k))
    with _KERNEL_LOCK:  # one caller at a time: numba's workqueue layer aborts on concurrent launches
        xb, blocks, sorted_dist, order = _workspace(p, n, d)
        # trajectory-minor copy: trajectory j in block j // 8, lane j % 8; the padding lanes hold
        # all-zero trajectories (their results are dropped)
        xb[...] = 0.0
        j = np.arange(p)
        np.moveaxis(xb, 3, 1)[j // LANES, j % LANES] = traj
        _distance_blocks(xb, blocks)
        _sorted_rows(blocks, p, sorted_dist, order)
        kernel(blocks, sorted_dist, order, items, psi, out)
    return out


# The parallel kernels run one call at a time (they use every core anyway). numba's default fork-safe
# threading layer, workqueue, terminates the process when two threads launch parallel kernels at once;
# the lock turns that into waiting. A forked child gets a fresh lock (the parent's may be held).
_KERNEL_LOCK = threading.Lock()


def _fresh_lock_after_fork() -> None:
    global _KERNEL_LOCK
    _KERNEL_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_fresh_lock_after_fork)

# Scratch arrays are reused between calls (under the lock): fresh multi-megabyte arrays cost more in
# page faults than the kernels take at P = 64. Buffers above this size are not kept.
_WORKSPACE_KEEP_BYTES = 64 * 2**20
_workspace_buf: np.ndarray | None = None


def _workspace(p: int, n: int, d: int):
    """(xb (B, n, d, 8), blocks (B, n, n, 8), sorted_dist (p, n, n), order (p, n, n) int32) scratch
    arrays with B = ceil(p / 8), views of the kept buffer when it is large enough. Call under the lock."""
    global _workspace_buf
    nb = -(-p // LANES)
    sizes = (nb * LANES * n * d, nb * n * n * LANES, p * n * n)  # float64 elements; order: p·n·n int32
    need = 8 * sum(sizes) + 4 * p * n * n
    buf = _workspace_buf
    if buf is None or buf.nbytes < need:
        buf = np.empty(need, dtype=np.uint8)
        if need <= _WORKSPACE_KEEP_BYTES:
            _workspace_buf = buf
    views, at = [], 0
    for count in sizes:
        views.append(buf[at : at + 8 * count].view(np.float64))
        at += 8 * count
    order = buf[at : at + 4 * p * n * n].view(np.int32).reshape(p, n, n)
    return (
        views[0].reshape(nb, n, d, LANES),
        views[1].reshape(nb, n, n, LANES),
        views[2].reshape(p, n, n),
        order,
    )
