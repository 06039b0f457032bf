"""Each loss against its formula written out independently (numpy, plain loops) on tiny inputs."""

import math

import numpy as np
import pytest
import torch

from mimcl_hub.objectives import losses

# N = 3 samples, D = 2 dims: small enough to check by hand.
Z1 = np.array([[1.0, 0.0], [0.6, 0.8], [-0.5, 0.2]])
Z2 = np.array([[0.9, 0.1], [0.0, 1.0], [-0.7, -0.3]])


def t(a):
    return torch.tensor(a, dtype=torch.float64)


def unit(v):
    return v / np.linalg.norm(v)


def nt_xent_per_anchor(z1, z2, tau):
    """Loss of each of the 2N anchors, written as the SimCLR paper's l(i, j)."""
    z = [unit(v) for v in np.concatenate([z1, z2])]
    n2 = len(z)
    n = n2 // 2
    out = []
    for i in range(n2):
        pos = (i + n) % n2
        denom = sum(math.exp(z[i] @ z[k] / tau) for k in range(n2) if k != i)
        out.append(-math.log(math.exp(z[i] @ z[pos] / tau) / denom))
    return out


# ------------------------------------------------------------------------- info_nce

@pytest.mark.parametrize("tau", [0.1, 0.5, 1.0])
def test_info_nce_matches_hand_formula(tau):
    expected = np.mean(nt_xent_per_anchor(Z1, Z2, tau))
    got = losses.info_nce(t(Z1), t(Z2), temperature=tau)
    assert got.item() == pytest.approx(expected, rel=1e-10)


def test_info_nce_is_scale_invariant_and_symmetric():
    a = losses.info_nce(t(Z1), t(Z2), 0.2)
    assert losses.info_nce(3 * t(Z1), 0.5 * t(Z2), 0.2).item() == pytest.approx(a.item(), rel=1e-10)
    assert losses.info_nce(t(Z2), t(Z1), 0.2).item() == pytest.approx(a.item(), rel=1e-10)


def test_info_nce_with_global_batch_and_rank_offset():
    rng = np.random.default_rng(0)
    g1, g2 = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    per_anchor = nt_xent_per_anchor(g1, g2, 0.3)          # anchors 0..5 = view 1, 6..11 = view 2
    n = 3
    per_rank = []
    for r in range(2):
        rows = list(range(r * n, r * n + n))
        expected = np.mean([per_anchor[i] for i in rows] + [per_anchor[6 + i] for i in rows])
        got = losses.info_nce(t(g1[rows]), t(g2[rows]), 0.3, z1_all=t(g1), z2_all=t(g2), rank=r)
        assert got.item() == pytest.approx(expected, rel=1e-10)
        per_rank.append(got.item())
    full = losses.info_nce(t(g1), t(g2), 0.3).item()
    assert np.mean(per_rank) == pytest.approx(full, rel=1e-10)


def test_info_nce_errors():
    with pytest.raises(ValueError, match="same batch size"):
        losses.info_nce(torch.randn(3, 2), torch.randn(4, 2))
    with pytest.raises(ValueError, match="same feature size"):
        losses.info_nce(torch.randn(3, 2), torch.randn(3, 5))
    with pytest.raises(ValueError, match=r"shape \(N, D\)"):
        losses.info_nce(torch.randn(3), torch.randn(3))
    with pytest.raises(ValueError, match="temperature"):
        losses.info_nce(torch.randn(3, 2), torch.randn(3, 2), temperature=0.0)
    with pytest.raises(ValueError, match="at least 2"):
        losses.info_nce(torch.randn(1, 2), torch.randn(1, 2))
    with pytest.raises(ValueError, match="both z1_all and z2_all"):
        losses.info_nce(torch.randn(3, 2), torch.randn(3, 2), z1_all=torch.randn(6, 2))
    with pytest.raises(ValueError, match="does not fit"):
        losses.info_nce(torch.randn(3, 2), torch.randn(3, 2), z1_all=torch.randn(6, 2), z2_all=torch.randn(6, 2), rank=2)


# ------------------------------------------------------------------------- MoCo

def test_moco_info_nce_matches_hand_formula():
    queue = np.array([[1.0, 1.0], [-1.0, 0.5], [0.2, -0.9], [0.0, 2.0]])
    tau = 0.2
    expected = []
    for q, k in zip(Z1, Z2):
        q, k = unit(q), unit(k)
        pos = math.exp(q @ k / tau)
        neg = sum(math.exp(q @ unit(u) / tau) for u in queue)
        expected.append(-math.log(pos / (pos + neg)))
    got = losses.moco_info_nce(t(Z1), t(Z2), t(queue), temperature=tau)
    assert got.item() == pytest.approx(np.mean(expected), rel=1e-10)


def test_moco_keys_and_queue_get_no_gradient():
    q, k, queue = torch.randn(4, 3, requires_grad=True), torch.randn(4, 3, requires_grad=True), torch.randn(5, 3, requires_grad=True)
    losses.moco_info_nce(q, k, queue).backward()
    assert q.grad is not None and k.grad is None and queue.grad is None


def test_moco_errors():
    with pytest.raises(ValueError, match="queue must have feature size"):
        losses.moco_info_nce(torch.randn(3, 2), torch.randn(3, 2), torch.randn(5, 4))
    with pytest.raises(ValueError, match="same batch size"):
        losses.moco_info_nce(torch.randn(3, 2), torch.randn(2, 2), torch.randn(5, 2))
    with pytest.raises(ValueError, match="temperature"):
        losses.moco_info_nce(torch.randn(3, 2), torch.randn(3, 2), torch.randn(5, 2), temperature=-1)


# ------------------------------------------------------------------------- NNCLR

def test_nnclr_info_nce_matches_hand_formula():
    tau = 0.1
    expected = []
    for i in range(3):
        a = unit(Z1[i])
        denom = sum(math.exp(a @ unit(Z2[k]) / tau) for k in range(3))
        expected.append(-math.log(math.exp(a @ unit(Z2[i]) / tau) / denom))
    assert losses.nnclr_info_nce(t(Z1), t(Z2), tau).item() == pytest.approx(np.mean(expected), rel=1e-10)


# ------------------------------------------------------------------------- negative cosine

def test_negative_cosine_matches_hand_formula_and_stops_gradient():
    expected = -np.mean([unit(p) @ unit(z) for p, z in zip(Z1, Z2)])
    p, z = t(Z1).requires_grad_(), t(Z2).requires_grad_()
    got = losses.negative_cosine(p, z)
    assert got.item() == pytest.approx(expected, rel=1e-10)
    got.backward()
    assert p.grad is not None and z.grad is None
    # BYOL's normalised MSE is 2 - 2 cos = 2 + 2 * negative_cosine
    byol = np.mean([np.sum((unit(a) - unit(b)) ** 2) for a, b in zip(Z1, Z2)])
    assert byol == pytest.approx(2 + 2 * expected, rel=1e-10)


def test_negative_cosine_errors():
    with pytest.raises(ValueError, match="same batch size"):
        losses.negative_cosine(torch.randn(3, 2), torch.randn(2, 2))


# ------------------------------------------------------------------------- Barlow Twins

def test_barlow_twins_matches_hand_formula():
    lambd, eps = 0.3, 1e-5
    n, d = Z1.shape

    def standardise(z):
        out = np.zeros_like(z)
        for j in range(d):
            col = z[:, j]
            mean = sum(col) / n
            var = sum((c - mean) ** 2 for c in col) / n               # biased, as BatchNorm
            out[:, j] = (col - mean) / math.sqrt(var + eps)
        return out

    a, b = standardise(Z1), standardise(Z2)
    c = [[sum(a[k, i] * b[k, j] for k in range(n)) / n for j in range(d)] for i in range(d)]
    on = sum((1 - c[i][i]) ** 2 for i in range(d))
    off = sum(c[i][j] ** 2 for i in range(d) for j in range(d) if i != j)
    loss, terms = losses.barlow_twins(t(Z1), t(Z2), lambd=lambd, eps=eps, return_terms=True)
    assert terms["on_diag"].item() == pytest.approx(on, rel=1e-10)
    assert terms["off_diag"].item() == pytest.approx(off, rel=1e-10)
    assert loss.item() == pytest.approx(on + lambd * off, rel=1e-10)
    assert losses.barlow_twins(t(Z1), t(Z2), lambd=lambd, eps=eps).item() == pytest.approx(loss.item())


def test_barlow_twins_identical_views_have_no_on_diagonal_loss():
    z = torch.randn(16, 4, dtype=torch.float64)
    _, terms = losses.barlow_twins(z, z, eps=0.0, return_terms=True)
    assert terms["on_diag"].item() == pytest.approx(0.0, abs=1e-12)


def test_barlow_twins_errors():
    with pytest.raises(ValueError, match="at least 2"):
        losses.barlow_twins(torch.randn(1, 3), torch.randn(1, 3))
    with pytest.raises(ValueError, match="same batch size"):
        losses.barlow_twins(torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match="lambd"):
        losses.barlow_twins(torch.randn(4, 3), torch.randn(4, 3), lambd=-1)


# ------------------------------------------------------------------------- VICReg

def test_vicreg_matches_hand_formula():
    eps = 1e-4
    n, d = Z1.shape
    inv = sum((Z1[k, j] - Z2[k, j]) ** 2 for k in range(n) for j in range(d)) / (n * d)

    def var_term(z):
        total = 0.0
        for j in range(d):
            mean = sum(z[:, j]) / n
            var = sum((z[k, j] - mean) ** 2 for k in range(n)) / (n - 1)
            total += max(0.0, 1 - math.sqrt(var + eps))
        return total / d

    def cov_term(z):
        means = [sum(z[:, j]) / n for j in range(d)]
        total = 0.0
        for i in range(d):
            for j in range(d):
                if i != j:
                    cij = sum((z[k, i] - means[i]) * (z[k, j] - means[j]) for k in range(n)) / (n - 1)
                    total += cij ** 2
        return total / d

    var = 0.5 * (var_term(Z1) + var_term(Z2))
    cov = cov_term(Z1) + cov_term(Z2)
    loss, terms = losses.vicreg(t(Z1), t(Z2), sim_weight=2.0, var_weight=3.0, cov_weight=5.0, eps=eps, return_terms=True)
    assert terms["invariance"].item() == pytest.approx(inv, rel=1e-10)
    assert terms["variance"].item() == pytest.approx(var, rel=1e-10)
    assert terms["covariance"].item() == pytest.approx(cov, rel=1e-10)
    assert loss.item() == pytest.approx(2 * inv + 3 * var + 5 * cov, rel=1e-10)
    default = losses.vicreg(t(Z1), t(Z2)).item()
    assert default == pytest.approx(25 * inv + 25 * var + 1 * cov, rel=1e-10)


def test_vicreg_errors():
    with pytest.raises(ValueError, match="at least 2"):
        losses.vicreg(torch.randn(1, 3), torch.randn(1, 3))
    with pytest.raises(ValueError, match="same feature size"):
        losses.vicreg(torch.randn(4, 3), torch.randn(4, 2))
    with pytest.raises(ValueError, match="var_weight"):
        losses.vicreg(torch.randn(4, 3), torch.randn(4, 3), var_weight=-1.0)


# ------------------------------------------------------------------------- DINO

def softmax(v):
    e = np.exp(v - np.max(v))
    return e / e.sum()


def test_dino_matches_hand_formula_two_views():
    rng = np.random.default_rng(1)
    s = rng.normal(size=(2, 3, 4))      # 2 views, N = 3, K = 4
    te = rng.normal(size=(2, 3, 4))
    center = rng.normal(size=4) * 0.1
    ts, tt = 0.1, 0.04
    pair_losses = []
    for i, j in [(0, 1), (1, 0)]:      # student view i against teacher view j != i
        per_sample = []
        for b in range(3):
            p_t = softmax((te[j, b] - center) / tt)
            log_p_s = np.log(softmax(s[i, b] / ts))
            per_sample.append(-(p_t * log_p_s).sum())
        pair_losses.append(np.mean(per_sample))
    expected = np.mean(pair_losses)
    as_list = losses.dino([t(s[0]), t(s[1])], [t(te[0]), t(te[1])], t(center), student_temp=ts, teacher_temp=tt)
    as_stack = losses.dino(t(s), t(te), t(center)[None], student_temp=ts, teacher_temp=tt)
    assert as_list.item() == pytest.approx(expected, rel=1e-10)
    assert as_stack.item() == pytest.approx(expected, rel=1e-10)


def test_dino_multicrop_pairs_and_teacher_gets_no_gradient():
    s = [torch.randn(2, 5, requires_grad=True) for _ in range(3)]
    te = [torch.randn(2, 5, requires_grad=True) for _ in range(2)]
    center = torch.zeros(5)
    loss = losses.dino(s, te, center)
    # pairs: (s1,t0), (s2,t0), (s0,t1), (s2,t1) -> 4 pairs
    manual = 0.0
    for j, tv in enumerate(te):
        for i, sv in enumerate(s):
            if i != j:
                manual += -(torch.softmax(tv / 0.04, 1) * torch.log_softmax(sv / 0.1, 1)).sum(1).mean()
    assert loss.item() == pytest.approx((manual / 4).item(), rel=1e-6)
    loss.backward()
    assert all(v.grad is not None for v in s) and all(v.grad is None for v in te)


def test_dino_errors():
    s, te, c = [torch.randn(2, 4)] * 2, [torch.randn(2, 4)] * 2, torch.zeros(4)
    with pytest.raises(ValueError, match="center"):
        losses.dino(s, te, torch.zeros(5))
    with pytest.raises(ValueError, match="at least one"):
        losses.dino(s[:1], te[:1], c)
    with pytest.raises(ValueError, match="teacher has 2 views"):
        losses.dino(s[:1], te, c)
    with pytest.raises(ValueError, match="teacher_temp"):
        losses.dino(s, te, c, teacher_temp=0)
    with pytest.raises(ValueError, match="expected"):
        losses.dino([torch.randn(2, 4), torch.randn(3, 4)], te, c)
    with pytest.raises(ValueError, match=r"\(V, N, K\)"):
        losses.dino(torch.randn(2, 4), te, c)
