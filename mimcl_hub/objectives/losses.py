"""Self-supervised losses as pure functions of tensors.

Each function documents its paper (arXiv id) and the shapes it takes. None of them talks to
``torch.distributed`` itself: to use the global batch under DDP, pass tensors gathered with
:func:`mimcl_hub.objectives.distributed.gather_with_grad` (see each docstring); the objectives in
this package do that for you.

Errors: every function raises ``ValueError`` for wrong ranks / shapes, mismatched batch sizes,
non-positive temperatures and batches too small for the statistics it needs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["info_nce", "moco_info_nce", "nnclr_info_nce", "negative_cosine", "barlow_twins", "vicreg", "dino"]


# --------------------------------------------------------------------------- checks

def _check_2d(name: str, x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (N, D), got {tuple(x.shape)}")
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{name} must be non-empty, got shape {tuple(x.shape)}")


def _check_pair(n1: str, a: torch.Tensor, n2: str, b: torch.Tensor) -> None:
    _check_2d(n1, a)
    _check_2d(n2, b)
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"{n1} and {n2} must have the same batch size, got {a.shape[0]} and {b.shape[0]}")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"{n1} and {n2} must have the same feature size, got {a.shape[1]} and {b.shape[1]}")


def _check_positive(name: str, v: float | torch.Tensor) -> None:
    """A Python number must be > 0. A 0-d tensor (an objective's scheduled buffer, e.g. DINO's teacher
    temperature, set from validated values) is not read back to the host here: that would stall a GPU."""
    if isinstance(v, torch.Tensor):
        if v.numel() != 1:
            raise ValueError(f"{name} must be a number or a 0-d tensor, got shape {tuple(v.shape)}")
        return
    if not float(v) > 0:
        raise ValueError(f"{name} must be > 0, got {v}")


def _check_min_batch(what: str, n: int, minimum: int = 2) -> None:
    if n < minimum:
        raise ValueError(f"{what} needs a batch of at least {minimum} samples, got {n}")


# --------------------------------------------------------------------------- SimCLR

def info_nce(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1, *,
             z1_all: torch.Tensor | None = None, z2_all: torch.Tensor | None = None,
             rank: int = 0) -> torch.Tensor:
    """NT-Xent / InfoNCE over 2N views (SimCLR, Chen et al. 2020, arXiv 2002.05709, eq. 1).

    Embeddings are L2-normalised; for anchor ``z1[i]`` the positive is ``z2[i]`` (and vice versa),
    the other 2N−2 embeddings of both views are negatives, the anchor itself is excluded:

        ℓ(i) = −log exp(s(i, pos)/τ) / Σ_{k ≠ i} exp(s(i, k)/τ),   loss = mean over the 2N anchors.

    Gathered negatives (DDP): pass the global batches ``z1_all``, ``z2_all`` (W·n, D) — e.g.
    ``gather_with_grad(z1)`` — and this process' ``rank``; the local rows are then the anchors
    (found at global rows ``rank·n … rank·n+n−1``) and all 2·W·n − 2 others are negatives. The
    returned value is the mean over *local* anchors; its mean over ranks equals the single-process
    loss on the concatenated batch (gradient scaling: see ``distributed`` module docstring).

    Args:
        z1, z2: (n, D) embeddings of the two views (local batch).
        temperature: τ > 0.
        z1_all, z2_all: optional (N, D) global batches containing ``z1`` / ``z2`` at the rank offset.
        rank: index of the local chunk inside ``z1_all`` / ``z2_all``.

    Returns:
        scalar tensor.
    """
    _check_pair("z1", z1, "z2", z2)
    _check_positive("temperature", temperature)
    if (z1_all is None) != (z2_all is None):
        raise ValueError("pass both z1_all and z2_all, or neither")
    n = z1.shape[0]
    if z1_all is None:
        z1_all, z2_all, offset = z1, z2, 0
    else:
        _check_pair("z1_all", z1_all, "z2_all", z2_all)
        if z1_all.shape[1] != z1.shape[1]:
            raise ValueError(f"z1_all has feature size {z1_all.shape[1]}, z1 has {z1.shape[1]}")
        if rank < 0 or (rank + 1) * n > z1_all.shape[0]:
            raise ValueError(f"rank {rank} with local batch {n} does not fit in the global batch of "
                             f"{z1_all.shape[0]} rows")
        offset = rank * n
    big_n = z1_all.shape[0]
    _check_min_batch("info_nce (negatives)", big_n)

    anchors = F.normalize(torch.cat([z1, z2], dim=0), dim=1)            # (2n, D)
    cands = F.normalize(torch.cat([z1_all, z2_all], dim=0), dim=1)      # (2N, D)
    logits = anchors @ cands.T / temperature                             # (2n, 2N)

    local = torch.arange(n, device=z1.device) + offset
    self_idx = torch.cat([local, local + big_n])                         # anchor's own column
    pos_idx = torch.cat([local + big_n, local])                          # the other view
    rows = torch.arange(2 * n, device=z1.device)
    is_self = torch.zeros_like(logits, dtype=torch.bool)
    is_self[rows, self_idx] = True
    logits = logits.masked_fill(is_self, float("-inf"))
    return F.cross_entropy(logits, pos_idx)


# --------------------------------------------------------------------------- MoCo

def moco_info_nce(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """MoCo v2 contrastive loss (He et al. 2019, arXiv 1911.05722; Chen et al. 2020, arXiv 2003.04297).

    For each query the positive is its key, the K queue entries are negatives:
    ``ℓ = −log exp(q·k/τ) / (exp(q·k/τ) + Σ_j exp(q·queue_j/τ))``, mean over N.
    ``q``, ``k`` and ``queue`` are L2-normalised inside; ``k`` and ``queue`` are treated as
    constants (stop-gradient), as they come from the momentum encoder.

    Args:
        q: (N, D) queries (online encoder).
        k: (N, D) keys (momentum encoder).
        queue: (K, D) negatives, K ≥ 1.
        temperature: τ > 0.
    """
    _check_pair("q", q, "k", k)
    _check_2d("queue", queue)
    if queue.shape[1] != q.shape[1]:
        raise ValueError(f"queue must have feature size {q.shape[1]} like q, got {tuple(queue.shape)}")
    _check_positive("temperature", temperature)
    q = F.normalize(q, dim=1)
    k = F.normalize(k.detach(), dim=1)
    queue = F.normalize(queue.detach(), dim=1)
    pos = (q * k).sum(dim=1, keepdim=True)                               # (N, 1)
    neg = q @ queue.T                                                    # (N, K)
    logits = torch.cat([pos, neg], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))


# --------------------------------------------------------------------------- NNCLR

def nnclr_info_nce(nn_z: torch.Tensor, p: torch.Tensor, temperature: float = 0.1, *,
                   p_all: torch.Tensor | None = None, rank: int = 0) -> torch.Tensor:
    """NNCLR's loss (Dwibedi et al. 2021, arXiv 2104.14548, eq. 2), one direction.

    ``ℓ(i) = −log exp(NN(z_i)·p_i/τ) / Σ_k exp(NN(z_i)·p_k/τ)``, mean over the n local rows, with
    L2-normalised vectors; the nearest neighbours are constants (they come from the support set).

    Args:
        nn_z: (n, D) nearest neighbours of view-1 embeddings in the support set.
        p: (n, D) predictions of view 2.
        temperature: τ > 0.
        p_all: optional (N, D) predictions of all processes (``gather_with_grad(p)``) used as the
            candidates; the positive of local row i is global row ``rank·n + i``.
    """
    _check_pair("nn_z", nn_z, "p", p)
    _check_positive("temperature", temperature)
    n = p.shape[0]
    if p_all is None:
        p_all, offset = p, 0
    else:
        _check_2d("p_all", p_all)
        if p_all.shape[1] != p.shape[1] or rank < 0 or (rank + 1) * n > p_all.shape[0]:
            raise ValueError(f"p_all {tuple(p_all.shape)} does not hold the local batch {tuple(p.shape)} at rank {rank}")
        offset = rank * n
    _check_min_batch("nnclr_info_nce (negatives)", p_all.shape[0])
    logits = F.normalize(nn_z.detach(), dim=1) @ F.normalize(p_all, dim=1).T / temperature
    return F.cross_entropy(logits, torch.arange(n, device=p.device) + offset)


# --------------------------------------------------------------------------- BYOL / SimSiam

def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """−cos(p, stop-grad(z)), mean over N (SimSiam, Chen & He 2020, arXiv 2011.10566, eq. 1).

    BYOL (Grill et al. 2020, arXiv 2006.07733) writes its loss as ``‖p̄ − z̄‖² = 2 − 2·cos(p, z)``
    — the same objective up to the affine map ``2 + 2·negative_cosine``, so gradients differ only
    by the factor 2. Range: [−1, 1].

    Args:
        p: (N, D) predictions (online branch).
        z: (N, D) targets (detached here).
    """
    _check_pair("p", p, "z", z)
    return -F.cosine_similarity(p, z.detach(), dim=1).mean()


# --------------------------------------------------------------------------- Barlow Twins

def _standardise(z: torch.Tensor, eps: float) -> torch.Tensor:
    """Batch-standardise each dimension like a BatchNorm1d(affine=False) in training mode."""
    mean = z.mean(dim=0, keepdim=True)
    var = z.var(dim=0, unbiased=False, keepdim=True)
    return (z - mean) / torch.sqrt(var + eps)


def barlow_twins(z1: torch.Tensor, z2: torch.Tensor, lambd: float = 5e-3, eps: float = 1e-5, *,
                 return_terms: bool = False):
    """Barlow Twins redundancy-reduction loss (Zbontar et al. 2021, arXiv 2103.03230, eq. 1–2).

    Each dimension is standardised over the batch (mean 0, *biased* variance 1 + eps, i.e. the
    official code's ``BatchNorm1d(affine=False)``), ``C = z̃1ᵀ z̃2 / N`` is the (D, D)
    cross-correlation, and

        loss = Σ_i (1 − C_ii)² + λ · Σ_{i≠j} C_ij².

    Global batch statistics under DDP: pass ``gather_with_grad(z1), gather_with_grad(z2)``.

    Args:
        z1, z2: (N, D) embeddings, N ≥ 2.
        lambd: λ ≥ 0, weight of the redundancy (off-diagonal) term (paper: 5e-3).
        eps: added to the variance.
        return_terms: also return ``{"on_diag": …, "off_diag": …}`` (unweighted tensors).
    """
    _check_pair("z1", z1, "z2", z2)
    _check_min_batch("barlow_twins (batch statistics)", z1.shape[0])
    if lambd < 0:
        raise ValueError(f"lambd must be >= 0, got {lambd}")
    n, d = z1.shape
    c = _standardise(z1, eps).T @ _standardise(z2, eps) / n             # (D, D)
    diag = torch.diagonal(c)
    on_diag = (1 - diag).pow(2).sum()
    off_diag = c.pow(2).sum() - diag.pow(2).sum()
    loss = on_diag + lambd * off_diag
    if return_terms:
        return loss, {"on_diag": on_diag, "off_diag": off_diag}
    return loss


# --------------------------------------------------------------------------- VICReg

def _variance_hinge(z: torch.Tensor, eps: float) -> torch.Tensor:
    std = torch.sqrt(z.var(dim=0) + eps)                                  # unbiased variance
    return F.relu(1.0 - std).mean()


def _covariance_penalty(z: torch.Tensor) -> torch.Tensor:
    n, d = z.shape
    zc = z - z.mean(dim=0, keepdim=True)
    cov = zc.T @ zc / (n - 1)
    return (cov.pow(2).sum() - torch.diagonal(cov).pow(2).sum()) / d


def vicreg(z1: torch.Tensor, z2: torch.Tensor, sim_weight: float = 25.0, var_weight: float = 25.0,
           cov_weight: float = 1.0, eps: float = 1e-4, *, return_terms: bool = False):
    """VICReg (Bardes, Ponce & LeCun 2021, arXiv 2105.04906, eq. 1–6; official code conventions).

    * invariance  s = MSE(z1, z2), mean over N·D;
    * variance    v = ½ [mean_j relu(1 − std_j(z1)) + mean_j relu(1 − std_j(z2))],
      std = sqrt(unbiased var + eps) (the ½ follows the official implementation);
    * covariance  c = Σ_{i≠j} Cov(z1)_ij² / D + Σ_{i≠j} Cov(z2)_ij² / D (unbiased covariance).

    loss = sim_weight·s + var_weight·v + cov_weight·c (paper: λ = μ = 25, ν = 1).
    Global batch statistics under DDP: pass ``gather_with_grad(z1), gather_with_grad(z2)``.

    Args:
        z1, z2: (N, D) embeddings, N ≥ 2.
        return_terms: also return ``{"invariance", "variance", "covariance"}`` (unweighted tensors).
    """
    _check_pair("z1", z1, "z2", z2)
    _check_min_batch("vicreg (batch statistics)", z1.shape[0])
    for name, w in (("sim_weight", sim_weight), ("var_weight", var_weight), ("cov_weight", cov_weight)):
        if w < 0:
            raise ValueError(f"{name} must be >= 0, got {w}")
    _check_positive("eps", eps)
    inv = F.mse_loss(z1, z2)
    var = 0.5 * (_variance_hinge(z1, eps) + _variance_hinge(z2, eps))
    cov = _covariance_penalty(z1) + _covariance_penalty(z2)
    loss = sim_weight * inv + var_weight * var + cov_weight * cov
    if return_terms:
        return loss, {"invariance": inv, "variance": var, "covariance": cov}
    return loss


# --------------------------------------------------------------------------- DINO

def _as_views(name: str, x) -> list[torch.Tensor]:
    if isinstance(x, torch.Tensor):
        if x.ndim != 3:
            raise ValueError(f"{name} as a tensor must be stacked views (V, N, K), got {tuple(x.shape)}")
        return list(x.unbind(0))
    if isinstance(x, Sequence) and len(x) > 0 and all(isinstance(v, torch.Tensor) for v in x):
        return list(x)
    raise ValueError(f"{name} must be a non-empty list of (N, K) tensors or a (V, N, K) tensor")


def dino(student_logits, teacher_logits, center: torch.Tensor, student_temp: float = 0.1,
         teacher_temp: float = 0.04) -> torch.Tensor:
    """DINO self-distillation loss (Caron et al. 2021, arXiv 2104.14294, eq. 2–3, Alg. 1).

    Teacher targets ``softmax((t − center)/teacher_temp)`` (centred and sharpened, stop-gradient);
    student ``log_softmax(s/student_temp)``; cross-entropy ``−Σ_k P_t log P_s`` averaged over the
    batch and over every pair (student view i, teacher view j) with i ≠ j. The teacher's V_t views
    are the *first* V_t student views (the global crops), so pairs with the same index are skipped;
    extra student views (local crops) pair with every teacher view.

    Args:
        student_logits: list of V_s tensors (N, K), or a stacked (V_s, N, K) tensor.
        teacher_logits: list of V_t tensors (N, K), or a stacked (V_t, N, K) tensor; V_t ≤ V_s.
        center: (K,) or (1, K) running mean of teacher logits.
        student_temp, teacher_temp: temperatures > 0 (paper: 0.1 and 0.04–0.07).
    """
    s_views = _as_views("student_logits", student_logits)
    t_views = _as_views("teacher_logits", teacher_logits)
    _check_positive("student_temp", student_temp)
    _check_positive("teacher_temp", teacher_temp)
    if len(t_views) > len(s_views):
        raise ValueError(f"teacher has {len(t_views)} views but student only {len(s_views)}; the teacher's "
                         "views must be the first student views")
    ref = s_views[0]
    _check_2d("student_logits[0]", ref)
    for i, v in enumerate(s_views + t_views):
        name = f"student_logits[{i}]" if i < len(s_views) else f"teacher_logits[{i - len(s_views)}]"
        _check_2d(name, v)
        if v.shape != ref.shape:
            raise ValueError(f"{name} has shape {tuple(v.shape)}, expected {tuple(ref.shape)} like student_logits[0]")
    k = ref.shape[1]
    if center.numel() != k or not (center.ndim == 1 or (center.ndim == 2 and center.shape[0] == 1)):
        raise ValueError(f"center must have shape ({k},) or (1, {k}), got {tuple(center.shape)}")
    center = center.reshape(1, k).detach()
    targets = [F.softmax((t.detach() - center) / teacher_temp, dim=1) for t in t_views]
    log_probs = [F.log_softmax(s / student_temp, dim=1) for s in s_views]
    total, pairs = 0.0, 0
    for j, p_t in enumerate(targets):
        for i, lp_s in enumerate(log_probs):
            if i == j:
                continue
            total = total + (-(p_t * lp_s).sum(dim=1)).mean()
            pairs += 1
    if pairs == 0:
        raise ValueError("dino needs at least one (student, teacher) pair of different views, e.g. 2 views")
    return total / pairs
