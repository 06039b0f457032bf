"""Pictures of mined twins: the clip's first frame with twin boxes joined by lines, and the MI
matrix as a heat map."""

from __future__ import annotations

import os
import tempfile
from typing import Optional

import numpy as np

from .twins import STATIC, TwinPatches

__all__ = ["plot_twins", "save_twin_figure"]


def plot_twins(frame: np.ndarray, result: TwinPatches, title: Optional[str] = None, max_pairs: int = 24):
    """Draw twins on ``frame`` (H, W, 3) uint8 (the clip's first frame) next to the MI heat map of
    the valid patches (ticks give their row-major patch indices).

    Valid patches are outlined thin white; static / untracked ones are shaded grey. The
    ``max_pairs`` highest-MI anchor→twin pairs are drawn as coloured boxes joined by a line whose
    colour encodes the MI (viridis). Returns a matplotlib Figure.
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
    finite = result.mi_matrix[np.isfinite(result.mi_matrix)]
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

    idx = np.flatnonzero(result.valid)
    shown = result.mi_matrix[np.ix_(idx, idx)] if idx.size else np.full((1, 1), np.nan)
    im = ax_mat.imshow(shown, cmap="viridis", vmin=0.0, vmax=max(vmax, 1e-9), interpolation="nearest")
    ax_mat.set_title(f"KSG MI between the {idx.size} valid patches (nats)", fontsize=9)
    step = max(1, int(np.ceil(idx.size / 16)))
    ticks = np.arange(0, idx.size, step)
    ax_mat.set_xticks(ticks, [str(i) for i in idx[ticks]], fontsize=7, rotation=90)
    ax_mat.set_yticks(ticks, [str(i) for i in idx[ticks]], fontsize=7)
    ax_mat.set_xlabel("patch index (row-major)")
    fig.colorbar(im, ax=ax_mat, fraction=0.046, pad=0.04)
    return fig


def save_twin_figure(frame: np.ndarray, result: TwinPatches, path: str, title: Optional[str] = None, dpi: int = 110) -> str:
    """Render ``plot_twins`` to a PNG at ``path``, atomically (temp file then rename). Returns the path."""
    import matplotlib.pyplot as plt

    fig = plot_twins(frame, result, title=title)
    directory = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=directory)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=dpi, format="png")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
