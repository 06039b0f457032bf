"""Reference MI estimators (mimcl_hub.mi.reference): the analytic Gaussian MI and the plug-in
histogram MI (with and without the Miller–Madow correction), checked against formulas computed
independently here and against hand-countable tiny cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mimcl_hub.mi.reference import gaussian_mi, gaussian_mi_from_rho, histogram_mi, pairwise_histogram_mi


# ----------------------------------------------------------------------------------------------
# gaussian_mi / gaussian_mi_from_rho
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rho", [0.0, 0.1, -0.3, 0.5, 0.9, -0.99])
@pytest.mark.parametrize("scale", [(1.0, 1.0), (4.0, 0.25)])
def test_gaussian_mi_2x2_closed_form(rho, scale):
    sx, sy = scale  # variances: MI does not depend on them
    c = rho * math.sqrt(sx * sy)
    cov = np.array([[sx, c], [c, sy]])
    expected = -0.5 * math.log(1.0 - rho * rho)
    assert gaussian_mi(cov, 1) == pytest.approx(expected, abs=1e-12)
    assert isinstance(gaussian_mi(cov, 1), float)


def _block_formula(cov: np.ndarray, dx: int) -> float:
    """½ log(det Σxx · det Σyy / det Σ), via plain determinants (independent of the library's slogdet)."""
    return 0.5 * math.log(np.linalg.det(cov[:dx, :dx]) * np.linalg.det(cov[dx:, dx:]) / np.linalg.det(cov))


@pytest.mark.parametrize("n,dx", [(2, 1), (3, 1), (3, 2), (5, 2), (6, 3), (6, 5)])
def test_gaussian_mi_random_spd_block_formula(n, dx):
    rng = np.random.default_rng(100 + 10 * n + dx)
    a = rng.standard_normal((n, n))
    cov = a @ a.T + 0.5 * np.eye(n)
    value = gaussian_mi(cov, dx)
    assert value == pytest.approx(_block_formula(cov, dx), rel=1e-10, abs=1e-12)
    assert value >= 0.0
    # I(X; Y) = I(Y; X): swap the blocks.
    perm = np.r_[dx:n, 0:dx]
    assert gaussian_mi(cov[np.ix_(perm, perm)], n - dx) == pytest.approx(value, rel=1e-10, abs=1e-12)


def test_gaussian_mi_block_diagonal_is_zero():
    rng = np.random.default_rng(7)
    a, b = rng.standard_normal((2, 2)), rng.standard_normal((3, 3))
    cov = np.zeros((5, 5))
    cov[:2, :2] = a @ a.T + np.eye(2)
    cov[2:, 2:] = b @ b.T + np.eye(3)
    assert gaussian_mi(cov, 2) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("rho", [0.0, 0.3, 0.6, 0.9, -0.6])
def test_gaussian_mi_from_rho_matches_block_covariance(rho, dim):
    # X = (x_1..x_dim), Y = (y_1..y_dim), corr(x_c, y_c) = rho, every other pair uncorrelated.
    cov = np.eye(2 * dim)
    for c in range(dim):
        cov[c, dim + c] = cov[dim + c, c] = rho
    expected = -0.5 * dim * math.log(1.0 - rho * rho)
    assert gaussian_mi_from_rho(rho, dim) == pytest.approx(expected, abs=1e-12)
    assert gaussian_mi(cov, dim) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("rho", [1.0, -1.0, 1.5, float("nan")])
def test_gaussian_mi_from_rho_rejects_bad_rho(rho):
    with pytest.raises(ValueError, match="rho"):
        gaussian_mi_from_rho(rho)


@pytest.mark.parametrize(
    "cov,dx,match",
    [
        (np.eye(3)[:2], 1, "square"),  # 2x3
        (np.ones(4), 1, "square"),  # 1-D
        (np.ones((2, 2, 2)), 1, "square"),  # 3-D
        (np.array([[1.0, 0.5], [0.2, 1.0]]), 1, "symmetric"),
        (np.array([[1.0, 2.0], [2.0, 1.0]]), 1, "positive definite"),  # indefinite
        (np.array([[1.0, 1.0], [1.0, 1.0]]), 1, "positive definite"),  # singular (PSD, not PD)
        (-np.eye(2), 1, "positive definite"),
        (np.eye(3), 0, "dx"),
        (np.eye(3), 3, "dx"),
        (np.eye(3), -1, "dx"),
    ],
)
def test_gaussian_mi_rejects_bad_covariance(cov, dx, match):
    with pytest.raises(ValueError, match=match):
        gaussian_mi(cov, dx)


# ----------------------------------------------------------------------------------------------
# histogram_mi
# ----------------------------------------------------------------------------------------------

ZZOO = np.array([0.0, 0.0, 1.0, 1.0])[:, None]  # (4, 1)
ZOZO = np.array([0.0, 1.0, 0.0, 1.0])[:, None]


def test_histogram_mi_identical_binary_is_log2():
    # Two equally likely bins, Y = X: H(X) = H(Y) = H(X, Y) = log 2 → I = log 2.
    assert float(histogram_mi(ZZOO, ZZOO, bins=2, miller_madow=False)) == pytest.approx(math.log(2), abs=1e-12)
    # Miller–Madow adds (m − 1) / (2N) to each entropy: m = 2, 2, 2 occupied cells, N = 4 → + 1/8.
    assert float(histogram_mi(ZZOO, ZZOO, bins=2, miller_madow=True)) == pytest.approx(math.log(2) + 1 / 8, abs=1e-12)


def test_histogram_mi_independent_pattern_is_zero():
    # All four (x, y) combinations once: H(X, Y) = log 4 = H(X) + H(Y) → I = 0.
    assert float(histogram_mi(ZZOO, ZOZO, bins=2, miller_madow=False)) == pytest.approx(0.0, abs=1e-12)
    # Miller–Madow: +1/8 +1/8 for the marginals, +3/8 for the 4 joint cells → −1/8.
    assert float(histogram_mi(ZZOO, ZOZO, bins=2, miller_madow=True)) == pytest.approx(-1 / 8, abs=1e-12)


def test_histogram_mi_hand_counted_unbalanced_case():
    # x = 0 0 0 1, y = 0 0 1 1 (bins=2 on [0, 1]): joint cells (0,0)×2, (0,1)×1, (1,1)×1.
    x = np.array([0.0, 0.0, 0.0, 1.0])[:, None]
    y = np.array([0.0, 0.0, 1.0, 1.0])[:, None]
    h = lambda *p: -sum(q * math.log(q) for q in p)  # noqa: E731
    expected = h(3 / 4, 1 / 4) + h(1 / 2, 1 / 2) - h(1 / 2, 1 / 4, 1 / 4)
    assert float(histogram_mi(x, y, bins=2, miller_madow=False)) == pytest.approx(expected, abs=1e-12)
    expected_mm = expected + (1 + 1 - 2) / 8  # (m-1)/(2N): marginals 2 cells each, joint 3 cells
    assert float(histogram_mi(x, y, bins=2, miller_madow=True)) == pytest.approx(expected_mm, abs=1e-12)


def test_histogram_mi_two_dimensional_coordinates():
    # Four distinct 2-D points on the corners of a square, Y = X: 4 equiprobable cells → log 4.
    x = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    assert float(histogram_mi(x, x, bins=2, miller_madow=False)) == pytest.approx(math.log(4), abs=1e-12)
    # Y only sees the first coordinate of X: I = H(first coordinate) = log 2.
    assert float(histogram_mi(x, x[:, :1], bins=2, miller_madow=False)) == pytest.approx(math.log(2), abs=1e-12)


def test_histogram_mi_invariant_to_per_coordinate_affine_maps():
    # Bins are equal-width over each coordinate's own range, so positive affine maps change nothing.
    rng = np.random.default_rng(3)
    x = rng.standard_normal((200, 2))
    y = x[:, :1] + 0.5 * rng.standard_normal((200, 1))
    base = histogram_mi(x, y, bins=4)
    moved = histogram_mi(x * np.array([3.0, 0.01]) + np.array([-5.0, 2.0]), 7.0 * y + 1.0, bins=4)
    assert float(moved) == pytest.approx(float(base), abs=1e-12)
    assert float(base) > 0.1  # dependent


def test_histogram_mi_batched_shapes_and_types():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 50, 1))
    y = x + rng.standard_normal((2, 3, 50, 2))  # dy = 2 broadcast from dx = 1
    out = histogram_mi(x, y, bins=3)
    assert isinstance(out, np.ndarray) and out.shape == (2, 3)
    for a in range(2):
        for b in range(3):
            assert out[a, b] == pytest.approx(float(histogram_mi(x[a, b], y[a, b], bins=3)), abs=1e-12)
    # Unbatched: 0-d numpy array.
    single = histogram_mi(x[0, 0], y[0, 0], bins=3)
    assert isinstance(single, np.ndarray) and single.shape == ()
    # Torch in → torch out, same values (float32 input is binned in float64).
    t_out = histogram_mi(torch.from_numpy(x), torch.from_numpy(y), bins=3)
    assert isinstance(t_out, torch.Tensor) and tuple(t_out.shape) == (2, 3)
    np.testing.assert_allclose(t_out.numpy(), out, atol=1e-12)
    t32 = histogram_mi(torch.from_numpy(x).float(), torch.from_numpy(y).float(), bins=3)
    assert isinstance(t32, torch.Tensor) and tuple(t32.shape) == (2, 3)
    np.testing.assert_allclose(t32.numpy(), out, atol=1e-9)


def test_histogram_mi_dependent_vs_independent():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((8, 500, 1))
    indep = histogram_mi(x, rng.standard_normal((8, 500, 1)), bins=4)
    dep = histogram_mi(x, x + 0.1 * rng.standard_normal((8, 500, 1)), bins=4)
    assert np.all(np.abs(indep) < 0.05)
    assert np.all(dep > 0.5)  # at most H(binned X) ≈ 1 nat with 4 equal-width bins


@pytest.mark.parametrize(
    "x,y,kw,match",
    [
        (np.zeros((4, 1)), np.zeros((5, 1)), {}, "same"),  # N mismatch
        (np.zeros((2, 4, 1)), np.zeros((3, 4, 1)), {}, "same"),  # leading-shape mismatch
        (np.zeros(4), np.zeros(4), {}, r"\(\.\.\., N, d\)"),  # 1-D
        (np.zeros((4, 1)), np.zeros((4, 1)), {"bins": 1}, "bins"),
        (np.array([[0.0], [np.nan], [1.0]]), np.zeros((3, 1)), {}, "NaN"),
        (np.zeros((3, 1)), np.array([[0.0], [np.nan], [1.0]]), {}, "NaN"),
    ],
)
def test_histogram_mi_rejects_bad_input(x, y, kw, match):
    with pytest.raises(ValueError, match=match):
        histogram_mi(x, y, **kw)


# ----------------------------------------------------------------------------------------------
# pairwise_histogram_mi
# ----------------------------------------------------------------------------------------------


def test_pairwise_histogram_mi_matches_per_pair():
    rng = np.random.default_rng(6)
    base = rng.standard_normal((60, 2))
    traj = np.stack([base + s * rng.standard_normal((60, 2)) for s in (0.1, 0.5, 1.0, 3.0)] + [rng.standard_normal((60, 2))])
    m = pairwise_histogram_mi(traj, bins=3)
    assert isinstance(m, np.ndarray) and m.shape == (5, 5)
    np.testing.assert_array_equal(m, m.T)
    np.testing.assert_array_equal(np.diag(m), 0.0)
    for i in range(5):
        for j in range(5):
            if i != j:
                assert m[i, j] == pytest.approx(float(histogram_mi(traj[i], traj[j], bins=3)), abs=1e-12)
    for mm in (False, True):
        assert pairwise_histogram_mi(traj, bins=3, miller_madow=mm)[0, 3] == pytest.approx(
            float(histogram_mi(traj[0], traj[3], bins=3, miller_madow=mm)), abs=1e-12
        )
    mt = pairwise_histogram_mi(torch.from_numpy(traj), bins=3)
    assert isinstance(mt, torch.Tensor) and tuple(mt.shape) == (5, 5)
    np.testing.assert_allclose(mt.numpy(), m, atol=1e-12)


def test_pairwise_histogram_mi_single_trajectory_and_bad_ndim():
    one = pairwise_histogram_mi(np.zeros((1, 10, 2)))
    assert isinstance(one, np.ndarray)
    np.testing.assert_array_equal(one, [[0.0]])
    with pytest.raises(ValueError, match=r"\(P, N, d\)"):
        pairwise_histogram_mi(np.zeros((10, 2)))
    with pytest.raises(ValueError, match=r"\(P, N, d\)"):
        pairwise_histogram_mi(np.zeros((2, 2, 10, 2)))


def test_histogram_mi_rejects_inf_and_fractional_bins():
    x = np.array([[0.0], [1.0], [2.0], [np.inf]])
    with pytest.raises(ValueError, match="NaN or inf"):
        histogram_mi(x, np.arange(4.0)[:, None], bins=2)
    with pytest.raises(ValueError, match="bins must be an integer"):
        histogram_mi(np.zeros((4, 1)), np.zeros((4, 1)), bins=2.5)
    with pytest.raises(ValueError, match="dx must be"):
        gaussian_mi(np.eye(3), 1.5)
