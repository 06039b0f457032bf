"""Pictures of mined twins: the clip's first frame with twin boxes joined by lines, and next to it the MI
matrix as a heat map (a ``TwinPatches`` from ``find_twins``) or, for twins read back from a mined dataset's
columns (``mimcl_hub.data.MinedTwins``: rows do not store the P×P matrix), the G×G grid of each patch's
best-partner MI."""

from __future__ import annotations

import os
from typing import Optional

import numpy as np

from .twins import STATIC, TwinPatches

__all__ = ["plot_twins", "save_figure", "save_twin_figure"]


def plot_twins(frame: np.ndarray, result: TwinPatches, title: Optional[str] = None, max_pairs: int = 24):
    """Draw twins on ``frame`` (H, W, 3) uint8 (the clip's first frame) next to an MI panel.

    ``result``: a ``TwinPatches`` or any object with its ``boxes``, ``twin``, ``mi``, ``valid``, ``status`` and
    ``pairs`` (``mimcl_hub.data.MinedTwins``). Valid patches are outlined thin white; static / untracked ones
    are shaded grey. The ``max_pairs`` highest-MI anchor→twin pairs are drawn as coloured boxes joined by a
    line whose colour encodes the MI (viridis). The right-hand panel is the MI heat map of the valid patches
    (ticks give their row-major patch indices) when ``result.mi_matrix`` exists, else the G×G grid of each
    patch's best-partner MI ``result.mi`` (invalid patches blank, a dot on each patch that has a twin).
    Returns a matplotlib Figure.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    aspect = frame.shape[1] / frame.shape[0]
    height = 4.4
    fig, (ax_img, ax_mat) = plt.subplots(
        1, 2, figsize=(height * aspect + height * 1.3, height), gridspec_kw={"width_ratios": [aspect, 1.0]},
        layout="constrained",
    )
    ax_img.imshow(frame)
    ax_img.set_axis_off()
    for i, (x0, y0, x1, y1) in enumerate(result.boxes):
        if result.valid[i]:
            ax_img.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="white", lw=0.4, alpha=0.6))
        else:
            alpha = 0.35 if result.status[i] == STATIC else 0.55
            ax_img.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fc="black", ec="none", alpha=alpha))

    pairs = sorted(result.pairs, key=lambda t: -t[2])[:max_pairs]
    matrix = getattr(result, "mi_matrix", None)
    scores = np.asarray(matrix if matrix is not None else result.mi, np.float64)
    finite = scores[np.isfinite(scores)]
    vmax = float(finite.max()) if finite.size else 1.0
    cmap = plt.get_cmap("viridis")
    for a, b, mi in pairs:
        colour = cmap(min(1.0, max(0.0, mi / max(vmax, 1e-9))))
        ca = result.boxes[a].reshape(2, 2).mean(0)
        cb = result.boxes[b].reshape(2, 2).mean(0)
        for idx in (a, b):
            x0, y0, x1, y1 = result.boxes[idx]
            ax_img.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec=colour, lw=1.6))
        ax_img.plot([ca[0], cb[0]], [ca[1], cb[1]], color=colour, lw=1.4)
        ax_img.plot([ca[0]], [ca[1]], "o", color=colour, ms=3)
    n_valid = int(result.valid.sum())
    ax_img.set_title(
        (title + " — " if title else "") + f"{len(result.pairs)} twins, {n_valid}/{len(result.valid)} valid patches",
        fontsize=9,
    )

    if matrix is not None:
        im = _matrix_panel(ax_mat, result, vmax)
    else:
        im = _best_partner_panel(ax_mat, result, vmax)
    fig.colorbar(im, ax=ax_mat, fraction=0.046, pad=0.04)
    return fig


def _matrix_panel(ax, result, vmax: float):
    """The (V, V) KSG MI matrix of the V valid patches."""
    idx = np.flatnonzero(result.valid)
    shown = result.mi_matrix[np.ix_(idx, idx)] if idx.size else np.full((1, 1), np.nan)
    im = ax.imshow(shown, cmap="viridis", vmin=0.0, vmax=max(vmax, 1e-9), interpolation="nearest")
    ax.set_title(f"KSG MI between the {idx.size} valid patches (nats)", fontsize=9)
    step = max(1, int(np.ceil(idx.size / 16)))
    ticks = np.arange(0, idx.size, step)
    ax.set_xticks(ticks, [str(i) for i in idx[ticks]], fontsize=7, rotation=90)
    ax.set_yticks(ticks, [str(i) for i in idx[ticks]], fontsize=7)
    ax.set_xlabel("patch index (row-major)")
    return im


def _best_partner_panel(ax, result, vmax: float):
    """Each patch's best-partner MI on the G×G patch grid (P = G², row-major as the boxes); invalid patches are
    NaN (blank), patches with a twin carry a white dot."""
    p = len(result.valid)
    g = int(round(np.sqrt(p)))
    rows, cols = (g, g) if g * g == p else (1, p)
    grid = np.where(np.asarray(result.valid, bool), np.asarray(result.mi, np.float64), np.nan).reshape(rows, cols)
    im = ax.imshow(grid, cmap="viridis", vmin=0.0, vmax=max(vmax, 1e-9), interpolation="nearest")
    has_twin = np.flatnonzero(np.asarray(result.twin) >= 0)
    ax.plot(has_twin % cols, has_twin // cols, "o", color="white", ms=3, ls="none")
    ax.set_title(f"best-partner KSG MI of each patch (nats), {rows}x{cols} grid; blank: invalid", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    return im


def save_figure(fig, path: str, dpi: int = 110) -> str:
    """Write a matplotlib Figure to a PNG at ``path`` atomically (:func:`mimcl_hub._atomic.atomic_write_bytes`:
    the usual file permissions, never a half-written picture) and close it."""
    import io

    import matplotlib.pyplot as plt

    from .._atomic import atomic_write_bytes

    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, dpi=dpi, format="png")
    finally:
        plt.close(fig)
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def save_twin_figure(frame: np.ndarray, result: TwinPatches, path: str, title: Optional[str] = None, dpi: int = 110) -> str:
    """Render ``plot_twins`` to a PNG at ``path``, atomically (temp file then rename). Returns the path."""
    return save_figure(plot_twins(frame, result, title=title), path, dpi=dpi)
