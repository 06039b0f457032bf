"""Patch tracking: a G×G grid over the first frame, a few corner points per patch, tracked through
the clip with OpenCV's pyramidal Lucas–Kanade and a forward–backward check.

Lucas–Kanade: B. D. Lucas, T. Kanade (1981); pyramidal form: J.-Y. Bouguet (2000), as in
``cv2.calcOpticalFlowPyrLK``. Forward–backward error: Z. Kalal, K. Mikolajczyk, J. Matas,
"Forward-Backward Error: Automatic Detection of Tracking Failures", ICPR 2010. Corners: J. Shi,
C. Tomasi, "Good features to track", CVPR 1994 (``cv2.cornerMinEigenVal``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import cv2
import numpy as np

__all__ = ["PatchTracks", "grid_boxes", "seed_points", "track_points", "track_patches", "reduce_by_patch"]


@dataclass
class PatchTracks:
    """Tracked points of a clip, grouped by grid patch.

    Attributes:
        boxes: (P, 4) int xyxy patch boxes in frame-0 pixels (P = grid**2, row-major).
        points: (Q, T, 2) float32 (x, y) of the points that survived every frame.
        point_patch: (Q,) int patch index of each surviving point.
        seeded: (P,) int points seeded per patch (before tracking).
        shifts: (P, T, 2) float displacement of each patch from frame 0 (median or mean of its
            points), NaN for patches without surviving points.
        colours: (P, T, 3) float32 mean RGB of each patch box carried along its track (NaN for
            patches without surviving points).
        depth: (P, T) float32 mean depth at the patch's points, or None without a depth model.
    """

    boxes: np.ndarray
    points: np.ndarray
    point_patch: np.ndarray
    seeded: np.ndarray
    shifts: np.ndarray
    colours: np.ndarray
    depth: Optional[np.ndarray] = None

    @property
    def num_patches(self) -> int:
        return int(self.boxes.shape[0])

    def survivors(self) -> np.ndarray:
        """(P,) number of surviving points per patch."""
        return np.bincount(self.point_patch, minlength=self.num_patches)


def grid_boxes(height: int, width: int, grid: int) -> np.ndarray:
    """(grid², 4) int xyxy boxes tiling an H×W frame row-major (edges rounded to whole pixels)."""
    if grid < 1:
        raise ValueError(f"grid must be >= 1, got {grid}")
    if height < grid or width < grid:
        raise ValueError(f"a {height}x{width} frame is too small for a {grid}x{grid} grid")
    ys = np.round(np.linspace(0, height, grid + 1)).astype(np.int64)
    xs = np.round(np.linspace(0, width, grid + 1)).astype(np.int64)
    boxes = [(xs[c], ys[r], xs[c + 1], ys[r + 1]) for r in range(grid) for c in range(grid)]
    return np.asarray(boxes, dtype=np.int64)


def seed_points(
    grey: np.ndarray, boxes: np.ndarray, per_patch: int = 9, quality: float = 0.01
) -> tuple[np.ndarray, np.ndarray]:
    """Shi–Tomasi corners spread over each box: the box is split into c×c cells
    (c = ceil(sqrt(per_patch))) and each cell contributes its strongest corner.

    Spreading the seeds makes a patch's median motion follow what covers most of the patch, not
    the strongest edge in it (often the outline of a neighbouring object). A corner is kept only
    if its min-eigenvalue response is at least ``quality`` × the strongest response in the whole
    frame, so flat patches (sky, walls) get no points rather than noise.

    Returns:
        points (Q, 2) float32 (x, y) and their patch indices (Q,) int64.
    """
    response = cv2.cornerMinEigenVal(grey, blockSize=3)
    floor = quality * float(response.max())
    if floor <= 0:
        return np.zeros((0, 2), np.float32), np.zeros(0, np.int64)
    cells = int(np.ceil(np.sqrt(per_patch)))
    pts, owner = [], []
    for p, (x0, y0, x1, y1) in enumerate(boxes):
        ys = np.linspace(y0, y1, cells + 1).round().astype(int)
        xs = np.linspace(x0, x1, cells + 1).round().astype(int)
        found = []
        for r in range(cells):
            for c in range(cells):
                cell = response[ys[r] : ys[r + 1], xs[c] : xs[c + 1]]
                if cell.size == 0:
                    continue
                iy, ix = np.unravel_index(int(np.argmax(cell)), cell.shape)
                if cell[iy, ix] >= floor:
                    found.append((cell[iy, ix], xs[c] + ix, ys[r] + iy))
        found.sort(key=lambda f: -f[0])
        for _, x, y in found[:per_patch]:
            pts.append((x, y))
            owner.append(p)
    if not pts:
        return np.zeros((0, 2), np.float32), np.zeros(0, np.int64)
    return np.asarray(pts, np.float32), np.asarray(owner, np.int64)


def track_points(
    greys: np.ndarray,
    points: np.ndarray,
    win_size: int = 9,
    max_level: int = 3,
    fb_threshold: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Track points through grey frames with pyramidal LK and a forward–backward check.

    Args:
        greys: (T, H, W) uint8.
        points: (Q, 2) float32 (x, y) in frame 0.
        fb_threshold: a point is lost when tracking it forward then backward lands more than this
            many pixels from where it started, when LK reports failure, or when it leaves the frame.

    Returns:
        tracks (Q, T, 2) float32 and alive (Q,) bool — True for points that survived every frame.
    """
    t_len, h, w = greys.shape
    q = points.shape[0]
    tracks = np.full((q, t_len, 2), np.nan, np.float32)
    alive = np.ones(q, bool)
    if q == 0:
        return tracks, alive
    tracks[:, 0] = points
    params = dict(
        winSize=(win_size, win_size),
        maxLevel=max_level,
        criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01),
    )
    for t in range(1, t_len):
        idx = np.flatnonzero(alive)
        if idx.size == 0:
            break
        p0 = tracks[idx, t - 1].reshape(-1, 1, 2)
        p1, st, _ = cv2.calcOpticalFlowPyrLK(greys[t - 1], greys[t], p0, None, **params)
        p0r, st_back, _ = cv2.calcOpticalFlowPyrLK(greys[t], greys[t - 1], p1, None, **params)
        p1 = p1.reshape(-1, 2)
        fb = np.linalg.norm(p0.reshape(-1, 2) - p0r.reshape(-1, 2), axis=1)
        inside = (p1[:, 0] >= 0) & (p1[:, 0] <= w - 1) & (p1[:, 1] >= 0) & (p1[:, 1] <= h - 1)
        ok = (st.ravel() == 1) & (st_back.ravel() == 1) & (fb < fb_threshold) & inside & np.isfinite(p1).all(1)
        tracks[idx[ok], t] = p1[ok]
        alive[idx[~ok]] = False
    return tracks, alive


def _box_means_along(frames: np.ndarray, boxes: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Mean RGB of each box translated by shifts[p, t] in frame t, via integral images.

    frames (T, H, W, 3) uint8, boxes (P, 4), shifts (P, T, 2) (NaN rows skipped) → (P, T, 3).
    """
    t_len, h, w, _ = frames.shape
    out = np.full((boxes.shape[0], t_len, 3), np.nan, np.float32)
    ok = np.isfinite(shifts).all(axis=(1, 2))
    if not ok.any():
        return out
    sh = np.round(shifts[ok]).astype(np.int64)  # (P', T, 2)
    x0 = np.clip(boxes[ok, None, 0] + sh[..., 0], 0, w)
    x1 = np.clip(boxes[ok, None, 2] + sh[..., 0], 0, w)
    y0 = np.clip(boxes[ok, None, 1] + sh[..., 1], 0, h)
    y1 = np.clip(boxes[ok, None, 3] + sh[..., 1], 0, h)
    area = ((x1 - x0) * (y1 - y0)).astype(np.float64)
    means = np.full(x0.shape + (3,), np.nan, np.float32)
    for t in range(t_len):
        ii = cv2.integral(frames[t])  # (H+1, W+1, 3) float64 / int32
        s = ii[y1[:, t], x1[:, t]] - ii[y0[:, t], x1[:, t]] - ii[y1[:, t], x0[:, t]] + ii[y0[:, t], x0[:, t]]
        a = area[:, t, None]
        means[:, t] = np.where(a > 0, s / np.maximum(a, 1), np.nan)
    out[ok] = means
    return out


def _depth_at(depth_fn: Callable[[np.ndarray], np.ndarray], frames: np.ndarray, tracks: np.ndarray,
              owner: np.ndarray, num_patches: int) -> np.ndarray:
    """Mean depth per patch and frame from a per-frame depth model. → (P, T) float32."""
    t_len, h, w, _ = frames.shape
    out = np.full((num_patches, t_len), np.nan, np.float32)
    counts = np.bincount(owner, minlength=num_patches)
    for t in range(t_len):
        d = np.asarray(depth_fn(frames[t]), dtype=np.float32)
        if d.ndim != 2:
            raise ValueError(f"depth_fn must return an (H, W) map, got shape {d.shape}")
        if d.shape != (h, w):
            d = cv2.resize(d, (w, h), interpolation=cv2.INTER_LINEAR)
        xi = np.clip(np.round(tracks[:, t, 0]).astype(int), 0, w - 1)
        yi = np.clip(np.round(tracks[:, t, 1]).astype(int), 0, h - 1)
        sums = np.bincount(owner, weights=d[yi, xi], minlength=num_patches)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, t] = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return out


def track_patches(
    frames: np.ndarray,
    grid: int = 8,
    points_per_patch: int = 9,
    corner_quality: float = 0.01,
    win_size: int = 9,
    max_level: int = 3,
    fb_threshold: float = 0.5,
    reduce: str = "median",
    depth_fn: Optional[Callable[[np.ndarray], np.ndarray]] = None,
) -> PatchTracks:
    """Seed and track points for every grid patch of a clip.

    Args:
        frames: (T, H, W, 3) uint8 RGB (validated by the caller).
        grid: patches per side (P = grid²).
        points_per_patch: at most this many corners are seeded per patch.
        reduce: how a patch's colour track follows its points: ``"median"`` or ``"mean"`` of the
            point displacements (median resists the odd point on the background).
        depth_fn: optional callable frame (H, W, 3) uint8 → depth (h, w); e.g. a wrapped
            ``transformers.pipeline("depth-estimation")``. Never required.
    """
    if reduce not in ("median", "mean"):
        raise ValueError(f"reduce must be 'median' or 'mean', got {reduce!r}")
    t_len, h, w, _ = frames.shape
    greys = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames])
    boxes = grid_boxes(h, w, grid)
    pts, owner = seed_points(greys[0], boxes, points_per_patch, corner_quality)
    seeded = np.bincount(owner, minlength=len(boxes))
    tracks, alive = track_points(greys, pts, win_size, max_level, fb_threshold)
    tracks, owner = tracks[alive], owner[alive]
    shifts = reduce_by_patch(tracks - tracks[:, :1], owner, len(boxes), reduce)
    colours = _box_means_along(frames, boxes, shifts)
    depth = _depth_at(depth_fn, frames, tracks, owner, len(boxes)) if depth_fn is not None else None
    return PatchTracks(
        boxes=boxes, points=tracks, point_patch=owner, seeded=seeded, shifts=shifts, colours=colours, depth=depth
    )


def reduce_by_patch(values: np.ndarray, owner: np.ndarray, num_patches: int, reduce: str = "median") -> np.ndarray:
    """Per-patch median (or mean) of per-point series: (Q, ...) → (P, ...), NaN for patches without points."""
    out = np.full((num_patches,) + values.shape[1:], np.nan)
    fn = np.median if reduce == "median" else np.mean
    for p in np.unique(owner):
        out[p] = fn(values[owner == p], axis=0)
    return out
