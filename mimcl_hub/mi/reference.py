"""Reference MI estimators: the analytic Gaussian MI and a plug-in histogram estimator.

* ``gaussian_mi`` — closed form for jointly Gaussian variables (Cover & Thomas, "Elements of
  Information Theory", 2nd ed., eq. 8.56 for the entropy of a Gaussian):
  I(X; Y) = ½ · log( det Σ_xx · det Σ_yy / det Σ ). Used by the tests as ground truth for KSG.
* ``histogram_mi`` — I = H(X) + H(Y) − H(X, Y) from equal-width binned counts, with the optional
  Miller–Madow bias correction (Paninski 2003, "Estimation of entropy and mutual information",
  Neural Computation 15). Cheap and robust for the low-dimensional colour-change trajectories.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["gaussian_mi", "gaussian_mi_from_rho", "histogram_mi", "pairwise_histogram_mi"]


def gaussian_mi(cov: np.ndarray, dx: int) -> float:
    """Exact MI in nats between the first ``dx`` and the remaining coordinates of a Gaussian.

    Args:
        cov: (dx + dy, dx + dy) symmetric positive-definite covariance of (X, Y).
        dx: dimension of X.
    """
    cov = np.asarray(cov, dtype=np.float64)
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1]:
        raise ValueError(f"cov must be a square matrix, got shape {cov.shape}")
    if isinstance(dx, bool) or not isinstance(dx, (int, np.integer)) or not 0 < dx < cov.shape[0]:
        raise ValueError(f"dx must be between 1 and {cov.shape[0] - 1}, got {dx}")
    if not np.allclose(cov, cov.T):
        raise ValueError("cov must be symmetric")
    _, logdet = np.linalg.slogdet(cov)
    _, logdet_x = np.linalg.slogdet(cov[:dx, :dx])
    _, logdet_y = np.linalg.slogdet(cov[dx:, dx:])
    if np.linalg.eigvalsh(cov).min() <= 0:
        raise ValueError("cov must be positive definite")
    return float(0.5 * (logdet_x + logdet_y - logdet))


def gaussian_mi_from_rho(rho: float, dim: int = 1) -> float:
    """MI of ``dim`` independent coordinate pairs, each with correlation ``rho``: −dim/2 · log(1 − ρ²)."""
    if not -1 < rho < 1:
        raise ValueError(f"rho must lie in (-1, 1), got {rho}")
    return float(-0.5 * dim * np.log1p(-rho * rho))


def _bin_codes(x: torch.Tensor, bins: int) -> torch.Tensor:
    """Equal-width bins per coordinate over each sample set, combined into one code.

    x: (..., N, d) → (..., N) int64 codes in [0, bins**d).
    """
    lo = x.amin(dim=-2, keepdim=True)
    hi = x.amax(dim=-2, keepdim=True)
    width = (hi - lo).clamp_min(torch.finfo(x.dtype).tiny)
    idx = ((x - lo) / width * bins).floor().clamp_(0, bins - 1).to(torch.int64)  # (..., N, d)
    weights = bins ** torch.arange(x.shape[-1], device=x.device)
    return (idx * weights).sum(-1)


def _entropy_from_codes(codes: torch.Tensor, num_codes: int, miller_madow: bool) -> torch.Tensor:
    """Plug-in entropy (nats) of integer codes. codes: (B, N) → (B,)."""
    b, n = codes.shape
    counts = torch.zeros(b, num_codes, dtype=torch.float64, device=codes.device)
    counts.scatter_add_(1, codes, torch.ones_like(codes, dtype=torch.float64))
    prob = counts / n
    h = -(prob * torch.log(prob.clamp_min(1e-300))).sum(-1)
    if miller_madow:
        h = h + ((counts > 0).sum(-1) - 1).to(torch.float64) / (2 * n)
    return h


def histogram_mi(x, y, bins: int = 4, miller_madow: bool = True):
    """Plug-in histogram MI in nats, batched.

    Args:
        x: (..., N, dx), y: (..., N, dy) numpy or torch. Each coordinate is cut into ``bins``
            equal-width bins over its own range; the joint histogram has bins**(dx + dy) cells, so
            keep dx + dy and ``bins`` small relative to N.
        bins: bins per coordinate (>= 2).
        miller_madow: add the (m − 1)/(2N) bias correction to each entropy.

    Returns:
        MI with the leading shape (...,), numpy if x was numpy.
    """
    was_numpy = isinstance(x, np.ndarray)
    tx = torch.as_tensor(x, dtype=torch.float64)
    ty = torch.as_tensor(y, dtype=torch.float64, device=tx.device)
    if tx.ndim < 2 or ty.ndim < 2 or tx.shape[:-1] != ty.shape[:-1]:
        raise ValueError(f"x and y must be (..., N, d) with the same (..., N): {tuple(tx.shape)} vs {tuple(ty.shape)}")
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 2:
        raise ValueError(f"bins must be an integer >= 2, got {bins!r}")
    if not (torch.isfinite(tx).all() and torch.isfinite(ty).all()):
        raise ValueError("x and y must not contain NaN or inf")
    lead = tx.shape[:-2]
    n = tx.shape[-2]
    cx = _bin_codes(tx, bins).reshape(-1, n)
    cy = _bin_codes(ty, bins).reshape(-1, n)
    nx, ny = bins ** tx.shape[-1], bins ** ty.shape[-1]
    hx = _entropy_from_codes(cx, nx, miller_madow)
    hy = _entropy_from_codes(cy, ny, miller_madow)
    hxy = _entropy_from_codes(cx * ny + cy, nx * ny, miller_madow)
    mi = (hx + hy - hxy).reshape(lead)
    return mi.cpu().numpy() if was_numpy else mi


def pairwise_histogram_mi(traj, bins: int = 4, miller_madow: bool = True):
    """Histogram MI between all pairs of P trajectories: traj (P, N, d) → (P, P), diagonal 0."""
    was_numpy = isinstance(traj, np.ndarray)
    t = torch.as_tensor(traj, dtype=torch.float64)
    if t.ndim != 3:
        raise ValueError(f"traj must have shape (P, N, d), got {tuple(t.shape)}")
    p = t.shape[0]
    ii, jj = torch.triu_indices(p, p, offset=1, device=t.device)
    out = torch.zeros(p, p, dtype=torch.float64, device=t.device)
    if p >= 2:
        mi = histogram_mi(t[ii], t[jj], bins=bins, miller_madow=miller_madow)
        out[ii, jj] = mi
        out[jj, ii] = mi
    return out.numpy() if was_numpy else out
