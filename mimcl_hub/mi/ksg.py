"""Kraskov–Stögbauer–Grassberger (KSG) mutual-information estimator, batched in torch.

Reference: A. Kraskov, H. Stögbauer, P. Grassberger, "Estimating mutual information",
Phys. Rev. E 69, 066138 (2004) — estimator 1 (their eq. 8), max-norm in every space:

    I(X; Y) = ψ(k) + ψ(N) − ⟨ ψ(n_x + 1) + ψ(n_y + 1) ⟩

where, for sample i, ε_i is the max-norm distance to its k-th nearest neighbour in the joint space
Z = (X, Y), and n_x (n_y) counts the other samples strictly closer than ε_i in X (Y) alone.
The max-norm of Z is the larger of the max-norms of X and Y, so the joint distance matrix is the
element-wise maximum of the two marginal ones: everything here is dense (N, N) tensor algebra,
batched over any leading dimensions and over all pairs of trajectories at once.

KSG assumes the N samples are (roughly) independent draws. Feed it frame-to-frame displacements of
trajectories, not raw positions (see DESIGN.md, "MI matrix").
"""

from __future__ import annotations

from typing import Union

import numpy as np
import torch

from ._ksg_cpu import HAVE_NUMBA, pairwise_ksg_cpu

ArrayLike = Union[np.ndarray, torch.Tensor]

__all__ = ["ksg_mi", "pairwise_mi", "chebyshev_distances"]


def _as_tensor(a: ArrayLike, name: str) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        t = a
    elif isinstance(a, np.ndarray):
        a = np.ascontiguousarray(a)
        t = torch.from_numpy(a if a.flags.writeable else a.copy())
    else:
        raise TypeError(f"{name} must be a numpy array or a torch tensor, got {type(a).__name__}")
    if not (t.is_floating_point() or t.dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)):
        raise TypeError(f"{name} must hold real numbers, got dtype {t.dtype}")
    if not t.is_floating_point():
        t = t.to(torch.float64)
    if t.ndim < 2:
        raise ValueError(f"{name} must have shape (..., N, d), got {tuple(t.shape)}")
    if t.shape[-1] < 1:
        raise ValueError(f"{name} must have at least one coordinate per sample (d >= 1), got shape {tuple(t.shape)}")
    if torch.isnan(t).any() or torch.isinf(t).any():
        raise ValueError(f"{name} contains NaN or inf values")
    return t


def _check_k(k: int, n: int) -> None:
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if n <= k:
        raise ValueError(f"KSG with k={k} needs more than {k} samples, got N={n}")


def chebyshev_distances(x: torch.Tensor) -> torch.Tensor:
    """Max-norm distance matrix within each sample set.

    x: (..., N, d) → (..., N, N) with D[..., i, j] = max_c |x[..., i, c] − x[..., j, c]|.
    """
    d = x.shape[-1]
    out = (x[..., :, None, 0] - x[..., None, :, 0]).abs()
    for c in range(1, d):
        out = torch.maximum(out, (x[..., :, None, c] - x[..., None, :, c]).abs())
    return out


def _digamma_table(n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """ψ(m) for m = 0..n (ψ(0) is never used; set to NaN so a bug shows)."""
    m = torch.arange(n + 1, dtype=torch.float64)
    table = torch.special.digamma(m)
    table[0] = float("nan")
    return table.to(dtype=dtype, device=device)


def _ksg_from_distances(dx: torch.Tensor, dy: torch.Tensor, k: int, psi: torch.Tensor) -> torch.Tensor:
    """KSG-1 from marginal max-norm distance matrices whose diagonals are +inf.

    dx, dy: (..., N, N) → MI (...,) in nats.
    """
    n = dx.shape[-1]
    joint = torch.maximum(dx, dy)
    eps = torch.topk(joint, k, dim=-1, largest=False).values[..., -1:]  # (..., N, 1) k-th smallest
    nx = (dx < eps).sum(-1)
    ny = (dy < eps).sum(-1)
    avg = (psi[nx + 1] + psi[ny + 1]).mean(-1)
    return psi[k] + psi[n] - avg


def _inf_diagonal(d: torch.Tensor) -> torch.Tensor:
    n = d.shape[-1]
    eye = torch.eye(n, dtype=torch.bool, device=d.device)
    return d.masked_fill(eye, float("inf"))


def ksg_mi(x: ArrayLike, y: ArrayLike, k: int = 5) -> ArrayLike:
    """KSG estimator 1 of I(X; Y) in nats (Kraskov et al. 2004, eq. 8), max-norm.

    Args:
        x: (..., N, dx) samples of X; numpy array or torch tensor (any device).
        y: (..., N, dy) samples of Y, paired with x row by row; same leading shape and N.
        k: number of nearest neighbours in the joint space (default 5, as in the paper).

    Returns:
        MI with the leading batch shape (...,): a numpy array (a 0-d array for unbatched input)
        if x was numpy, else a tensor on x's device. Values are not clipped: independent
        variables give estimates scattered around 0, occasionally slightly negative.
    """
    was_numpy = isinstance(x, np.ndarray)
    tx = _as_tensor(x, "x")
    ty = _as_tensor(y, "y").to(device=tx.device)
    dtype = torch.promote_types(tx.dtype, ty.dtype)
    tx, ty = tx.to(dtype), ty.to(dtype)
    if tx.shape[:-1] != ty.shape[:-1]:
        raise ValueError(
            f"x and y must share leading shape and sample count: x {tuple(tx.shape)} vs y {tuple(ty.shape)}"
        )
    n = tx.shape[-2]
    _check_k(k, n)
    psi = _digamma_table(n, dtype, tx.device)
    dx = _inf_diagonal(chebyshev_distances(tx))
    dy = _inf_diagonal(chebyshev_distances(ty))
    mi = _ksg_from_distances(dx, dy, int(k), psi)
    if was_numpy:
        return mi.cpu().numpy()
    return mi


def _auto_chunk(n: int, budget_elements: int) -> int:
    return max(1, budget_elements // max(1, n * n))


def pairwise_mi(
    traj: ArrayLike,
    k: int = 5,
    backend: str = "auto",
    chunk_size: int | None = None,
    memory_budget: int = 2**25,
) -> ArrayLike:
    """KSG MI between every pair of trajectories, all pairs at once.

    Args:
        traj: (P, N, d) — P trajectories of N samples each (e.g. frame-to-frame displacements,
            N = T − 1), numpy or torch, CPU or GPU.
        k: KSG neighbour count.
        backend: ``"numba"`` (compiled early-stopping scans over pre-sorted neighbour lists, 8
            pairs per scan in vector registers; the fastest on CPU, see ``_ksg_cpu``), ``"torch"``
            (dense, chunked tensor algebra; the GPU path) or ``"auto"`` (torch for CUDA tensors,
            numba otherwise when installed). For float64 input both give the same values; the
            numba path computes float32 input in float64 (exactly widened), the torch path in
            float32.
        chunk_size: pairs per dense tensor op (torch backend); default from ``memory_budget``.
        memory_budget: elements of one (pairs, N, N) working tensor of the torch backend (default
            2**25, 128 MiB in float32), which bounds memory for P in the hundreds or thousands.

    Returns:
        (P, P) symmetric matrix of MI in nats, same kind (numpy / torch) and device as the input.
        Its diagonal is 0: the MI of a trajectory with itself is not estimated.
    """
    if backend not in ("auto", "torch", "numba"):
        raise ValueError(f"backend must be 'auto', 'torch' or 'numba', got {backend!r}")
    if backend == "numba" and not HAVE_NUMBA:
        raise ValueError("backend='numba' needs the numba package (pip install numba)")
    on_cpu = isinstance(traj, np.ndarray) or (isinstance(traj, torch.Tensor) and traj.device.type == "cpu")
    if backend == "numba" or (backend == "auto" and HAVE_NUMBA and on_cpu):
        return _pairwise_mi_numba(traj, k)
    was_numpy = isinstance(traj, np.ndarray)
    t = _as_tensor(traj, "traj")
    _check_trajectories(t.shape, k)
    p, n, _ = t.shape
    out = torch.zeros(p, p, dtype=t.dtype, device=t.device)
    if p >= 2:
        ii, jj = torch.triu_indices(p, p, offset=1, device=t.device)
        dist = _inf_diagonal(chebyshev_distances(t))  # (P, N, N)
        psi = _digamma_table(n, t.dtype, t.device)
        step = chunk_size if chunk_size is not None else _auto_chunk(n, memory_budget)
        if step < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        mi = torch.cat(
            [
                _ksg_from_distances(dist[ii[s : s + step]], dist[jj[s : s + step]], int(k), psi)
                for s in range(0, ii.numel(), step)
            ]
        )
        out[ii, jj] = mi
        out[jj, ii] = mi
    if was_numpy:
        return out.cpu().numpy()
    return out


def _check_trajectories(shape, k: int) -> None:
    if len(shape) != 3:
        raise ValueError(f"traj must have shape (P, N, d), got {tuple(shape)}")
    if shape[2] < 1:
        raise ValueError(f"traj must have at least one coordinate per sample (d >= 1), got shape {tuple(shape)}")
    _check_k(k, shape[1])


def _pairwise_mi_numba(traj: ArrayLike, k: int) -> ArrayLike:
    """The CPU path of ``pairwise_mi``: validated once, numpy in and out, no tensor round trips."""
    if isinstance(traj, torch.Tensor):
        t = _as_tensor(traj.detach(), "traj")  # checks type, dtype and finiteness
        _check_trajectories(t.shape, k)
        return torch.from_numpy(_ksg_numba(t.cpu().numpy(), k)).to(device=traj.device, dtype=t.dtype)
    if not isinstance(traj, np.ndarray):
        raise TypeError(f"traj must be a numpy array or a torch tensor, got {type(traj).__name__}")
    if traj.dtype.kind not in "fiu":
        raise TypeError(f"traj must hold real numbers, got dtype {traj.dtype}")
    a = traj if traj.dtype.kind == "f" else traj.astype(np.float64)
    _check_trajectories(a.shape, k)
    if not np.isfinite(a).all():
        raise ValueError("traj contains NaN or inf values")
    return _ksg_numba(a, k)


def _ksg_numba(a: np.ndarray, k: int) -> np.ndarray:
    """All-pairs KSG of validated (P, N, d) float trajectories with the compiled kernel."""
    psi = _digamma_table(a.shape[1], torch.float64, torch.device("cpu")).numpy()
    return pairwise_ksg_cpu(a, int(k), psi).astype(a.dtype, copy=False)
