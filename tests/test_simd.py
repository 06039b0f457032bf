"""The 8-lane vector intrinsics of ``mimcl_hub.mi._simd``, each against numpy on the same data."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from mimcl_hub.mi._simd import (
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

RNG = np.random.default_rng(7)


@numba.njit
def _roundtrip(src, dst, lanes):
    regs = vregs(0)
    vload(regs, 2, src.ctypes.data)
    vstore(regs, 2, dst.ctypes.data)
    for lane in range(LANES):
        lanes[lane] = vlane(regs, 2, lane)
    vfill(regs, 1, 2.5)
    vstore(regs, 1, dst.ctypes.data + 8 * LANES)


def test_load_store_lane_fill():
    src = RNG.standard_normal(LANES)
    dst = np.zeros(2 * LANES)
    lanes = np.zeros(LANES)
    _roundtrip(src, dst, lanes)
    np.testing.assert_array_equal(dst[:LANES], src)
    np.testing.assert_array_equal(lanes, src)
    np.testing.assert_array_equal(dst[LANES:], 2.5)


@numba.njit
def _chebyshev(x, y, out):
    """x, y: (d, 8) → out (8,) = max over rows of |x − y|, through vmax_absdiff."""
    regs = vregs(0)
    vfill(regs, 0, 0.0)
    for c in range(x.shape[0]):
        vmax_absdiff(regs, 0, x.ctypes.data + c * x.strides[0], y.ctypes.data + c * y.strides[0])
    vstore(regs, 0, out.ctypes.data)


@pytest.mark.parametrize("d", [1, 2, 5])
def test_max_absdiff_is_the_max_norm(d):
    x, y = RNG.standard_normal((2, d, LANES))
    out = np.zeros(LANES)
    _chebyshev(x, y, out)
    np.testing.assert_array_equal(out, np.abs(x - y).max(axis=0))


@numba.njit
def _counts(rows, scalars, ref, out):
    """Counts per lane of rows < ref, rows <= ref and scalars < ref → out (3, 8) int64."""
    regs = vregs(0)
    vload(regs, 3, ref.ctypes.data)
    vfill(regs, 0, 0.0)
    vfill(regs, 1, 0.0)
    vfill(regs, 2, 0.0)
    for r in range(rows.shape[0]):
        vcount_below(regs, 0, rows.ctypes.data + r * rows.strides[0], 3, 0)
        vcount_below(regs, 1, rows.ctypes.data + r * rows.strides[0], 3, 1)
    for a in scalars:
        vcount_scalar_below(regs, 2, a, 3)
    for lane in range(LANES):
        out[0, lane] = vlane_count(regs, 0, lane)
        out[1, lane] = vlane_count(regs, 1, lane)
        out[2, lane] = vlane_count(regs, 2, lane)


def test_counts_strict_inclusive_and_scalar_with_ties():
    rows = np.round(RNG.standard_normal((40, LANES)), 1)  # many exact ties
    scalars = np.round(RNG.standard_normal(33), 1)
    ref = rows[5].copy()
    out = np.zeros((3, LANES), np.int64)
    _counts(rows, scalars, ref, out)
    np.testing.assert_array_equal(out[0], (rows < ref).sum(0))
    np.testing.assert_array_equal(out[1], (rows <= ref).sum(0))
    np.testing.assert_array_equal(out[2], (scalars[:, None] < ref).sum(0))


def _make_network(k):
    @numba.njit
    def network(a_values, rows, kth, done):
        """Insert max(a_r, rows[r]) for every r; kth (8,) ← k-th smallest per lane; done[r] = whether
        a_r >= the k-th smallest in every lane just before inserting r."""
        regs = vregs(k)
        vnet_init(regs, k)
        for r in range(rows.shape[0]):
            done[r] = vnet_done(regs, k, a_values[r])
            vnet_insert(regs, k, a_values[r], rows.ctypes.data + r * rows.strides[0])
        vnet_kth(regs, k, 0)
        vstore(regs, 0, kth.ctypes.data)

    return network


@pytest.mark.parametrize("k", [1, 2, 5, 9])
def test_network_keeps_the_k_smallest(k):
    n = 30
    a_values = np.sort(np.round(RNG.random(n), 2))
    rows = np.round(RNG.random((n, LANES)), 2)
    kth = np.zeros(LANES)
    done = np.zeros(n, np.bool_)
    _make_network(k)(a_values, rows, kth, done)
    joint = np.maximum(a_values[:, None], rows)  # (n, 8)
    np.testing.assert_array_equal(kth, np.sort(joint, axis=0)[k - 1])
    for r in range(n):
        before = np.sort(joint[:r], axis=0)[k - 1] if r >= k else np.full(LANES, np.inf)
        assert done[r] == bool(np.all(a_values[r] >= before))


@numba.njit
def _psi_from_counts(thresholds_x, thresholds_y, grid, psi, out):
    """For each s: cx[l] = #{g in grid : g < thresholds_x[s, l]} (same for y); out += psi[cx+1] + psi[cy+1]."""
    regs = vregs(0)
    vfill(regs, 0, 0.0)
    for s in range(thresholds_x.shape[0]):
        vfill(regs, 1, 0.0)
        vfill(regs, 2, 0.0)
        vload(regs, 3, thresholds_x.ctypes.data + s * thresholds_x.strides[0])
        for g in grid:
            vcount_scalar_below(regs, 1, g, 3)
        vload(regs, 3, thresholds_y.ctypes.data + s * thresholds_y.strides[0])
        for g in grid:
            vcount_scalar_below(regs, 2, g, 3)
        vadd_psi(regs, 0, 1, 2, psi.ctypes.data)
    vstore(regs, 0, out.ctypes.data)


def test_add_psi_looks_up_both_counts():
    from scipy.special import digamma

    grid = np.arange(20, dtype=np.float64)
    tx = RNG.integers(0, 21, size=(6, LANES)).astype(np.float64)
    ty = RNG.integers(0, 21, size=(6, LANES)).astype(np.float64)
    psi = digamma(np.arange(1, 23, dtype=np.float64))
    psi = np.concatenate([[np.nan], psi])  # psi[m] = ψ(m)
    out = np.zeros(LANES)
    _psi_from_counts(tx, ty, grid, psi, out)
    cx = (grid[None, None, :] < tx[..., None]).sum(-1)
    cy = (grid[None, None, :] < ty[..., None]).sum(-1)
    expected = np.zeros(LANES)
    for s in range(tx.shape[0]):
        expected += psi[cx[s] + 1] + psi[cy[s] + 1]
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12)


def test_slot_and_k_must_be_literal():
    @numba.njit
    def uses_runtime_slot(m):
        regs = vregs(0)
        vfill(regs, m, 1.0)

    with pytest.raises(numba.core.errors.TypingError):
        uses_runtime_slot(1)

    @numba.njit
    def uses_out_of_range_slot():
        regs = vregs(0)
        vfill(regs, 7, 1.0)

    with pytest.raises(numba.core.errors.TypingError):
        uses_out_of_range_slot()
