"""CPU kernel for all-pairs KSG: a compiled (numba) early-stopping neighbour scan.

For one pair (i, j) and sample s the KSG-1 estimator needs ε = the k-th smallest joint max-norm
distance max(a_t, b_t) over the other samples t (a = distances in trajectory i, b = in j), then
n_x = #{t : a_t < ε} and n_y = #{t : b_t < ε}.

Dense evaluation costs O(N) per (pair, sample). Here each row a is sorted once per trajectory and
shared by all its pairs, so:

* ε is found by scanning t in increasing a_t and keeping the k smallest joint distances; the scan
  stops as soon as a_t reaches the current k-th smallest (every later t has a joint distance
  ≥ a_t). For independent trajectories this visits ~sqrt(k/N)·N samples, for coupled ones ~k.
* n_x and n_y are binary searches in the sorted rows.

The result is bit-for-bit the same estimator as the dense one (same distances, same strict
comparisons), only cheaper.
"""

from __future__ import annotations

import numpy as np

try:  # numba is a regular dependency; the torch path covers its absence.
    import os

    import numba

    if "NUMBA_THREADING_LAYER" not in os.environ:
        # GNU OpenMP (numba's usual choice here) kills forked children: Dataset.map(num_proc=N) forks
        # workers after the parent may already have run a parallel kernel. The workqueue layer is
        # fork-safe and as fast for these flat loops.
        numba.config.THREADING_LAYER = "workqueue"
    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - exercised only where numba is missing
    numba = None
    HAVE_NUMBA = False

__all__ = ["HAVE_NUMBA", "pairwise_ksg_cpu"]


def _lower_bound(row, value):
    """Number of entries of the ascending 1-D ``row`` strictly below ``value``."""
    lo = 0
    hi = row.shape[0]
    while lo < hi:
        mid = (lo + hi) >> 1
        if row[mid] < value:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _neighbour_lists(traj, dist, order, sorted_dist):
    """traj: (P, N, d). Fills dist (P, N, N) max-norm distances with +inf diagonals, sorted_dist
    (P, N, N) each row sorted ascending, and order (P, N, N) int32 the matching column indices.

    Rows are sorted by insertion while they are computed: for N in the tens this beats a
    general-purpose argsort (no allocation, the row stays in L1).
    """
    p, n, d = traj.shape
    for i in numba.prange(p):
        for s in range(n):
            for t in range(n):
                if s == t:
                    m = np.inf
                else:
                    m = abs(traj[i, s, 0] - traj[i, t, 0])
                    for c in range(1, d):
                        m = max(m, abs(traj[i, s, c] - traj[i, t, c]))
                dist[i, s, t] = m
                u = t
                while u > 0 and sorted_dist[i, s, u - 1] > m:
                    sorted_dist[i, s, u] = sorted_dist[i, s, u - 1]
                    order[i, s, u] = order[i, s, u - 1]
                    u -= 1
                sorted_dist[i, s, u] = m
                order[i, s, u] = t


def _pairs_kernel(dist, order, sorted_dist, pair_i, pair_j, k, psi, out):
    """dist, sorted_dist: (P, N, N) with +inf diagonals; order: (P, N, N) argsort of dist rows.

    Writes the KSG-1 MI of pair (i, j) = (pair_i[q], pair_j[q]) into out[i, j] and out[j, i] of the
    (P, P) matrix ``out``. The k smallest joint
    distances are kept sorted in ``best`` with a branch-free min/max insertion network.
    """
    n = dist.shape[1]
    for q in numba.prange(pair_i.shape[0]):
        i = pair_i[q]
        j = pair_j[q]
        best = np.empty(k, dtype=dist.dtype)
        acc = 0.0
        for s in range(n):
            for m in range(k):
                best[m] = np.inf
            for r in range(n):
                a = sorted_dist[i, s, r]
                if a >= best[k - 1]:
                    break  # every later sample has joint distance >= a
                b = dist[j, s, order[i, s, r]]
                joint = max(a, b)
                for m in range(k - 1, 0, -1):
                    best[m] = max(best[m - 1], min(best[m], joint))
                best[0] = min(best[0], joint)
            eps = best[k - 1]
            nx = _lower_bound(sorted_dist[i, s], eps)
            ny = _lower_bound(sorted_dist[j, s], eps)
            acc += psi[nx + 1] + psi[ny + 1]
        mi = psi[k] + psi[n] - acc / n
        out[i, j] = mi
        out[j, i] = mi


if HAVE_NUMBA:
    _lower_bound = numba.njit(cache=True, inline="always")(_lower_bound)
    _pairs_kernel = numba.njit(parallel=True, cache=True)(_pairs_kernel)
    _neighbour_lists = numba.njit(parallel=True, cache=True)(_neighbour_lists)


def pairwise_ksg_cpu(traj: np.ndarray, k: int, psi: np.ndarray) -> np.ndarray:
    """KSG-1 MI between all pairs of trajectories.

    Args:
        traj: (P, N, d) samples (float32 or float64; distances are computed in this dtype).
        k: neighbour count (1 <= k < N).
        psi: (N + 1,) float64 digamma table, psi[m] = ψ(m).

    Returns:
        (P, P) float64 symmetric MI matrix in nats, zero diagonal.
    """
    if not HAVE_NUMBA:  # pragma: no cover
        raise RuntimeError("numba is not installed; use the torch backend")
    traj = np.ascontiguousarray(traj)
    p, n, _ = traj.shape
    dist = np.empty((p, n, n), dtype=traj.dtype)
    order = np.empty((p, n, n), dtype=np.int32)
    sorted_dist = np.empty((p, n, n), dtype=traj.dtype)
    _neighbour_lists(traj, dist, order, sorted_dist)
    pair_i, pair_j = np.triu_indices(p, 1)
    out = np.zeros((p, p), dtype=np.float64)
    _pairs_kernel(dist, order, sorted_dist, pair_i.astype(np.int64), pair_j.astype(np.int64), int(k), psi, out)
    return out
