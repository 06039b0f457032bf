"""Camera-motion compensation and the tracking-noise estimate used by the entropy gate.

Global motion between consecutive frames is a 4-DoF similarity (rotation, uniform scale,
translation) fitted robustly to all surviving point tracks with RANSAC
(``cv2.estimateAffinePartial2D``; Fischler & Bolles 1981). The residual displacement of a point,
p_{t+1} − A_t p_t, is its motion relative to the scene; without this a camera pan makes every
patch mutually informative with every other.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["estimate_camera_motion", "residual_displacements", "tracking_noise", "IDENTITY"]

IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float64)
MIN_POINTS_FOR_FIT = 6


def _fit_per_frame(tracks: np.ndarray, use: np.ndarray, ransac_threshold: float):
    """RANSAC similarity per frame step on the points ``use`` (Q,) bool. → transforms, inliers."""
    q, t_len, _ = tracks.shape
    transforms = np.repeat(IDENTITY[None], t_len - 1, axis=0)
    inliers = np.zeros((q, t_len - 1), bool)
    idx = np.flatnonzero(use)
    for t in range(t_len - 1):
        m, mask = cv2.estimateAffinePartial2D(
            tracks[idx, t].astype(np.float32), tracks[idx, t + 1].astype(np.float32), method=cv2.RANSAC,
            ransacReprojThreshold=ransac_threshold, maxIters=2000, confidence=0.995,
        )
        if m is None or mask is None or not np.isfinite(m).all():
            inliers[idx, t] = True
            continue
        transforms[t] = m
        inliers[idx, t] = mask.ravel().astype(bool)
    return transforms, inliers


def estimate_camera_motion(
    tracks: np.ndarray, ransac_threshold: float = 0.5, static_fraction: float = 0.9, rounds: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """Frame-to-frame global similarity transforms, fitted to the points that follow the camera.

    A RANSAC similarity per frame step marks inliers. In a single frame the largest consistent
    set can be a moving object (textured objects carry many corners), so the static scene is
    chosen over the whole clip: the points that are inliers in at least ``static_fraction`` of the
    steps where the best point manages (its fraction scaled by that maximum), and the transforms
    are refitted on those points alone; this repeats for ``rounds`` rounds. Without it an object
    that covers much of the frame drags the fit and injects fake motion into the background.

    Args:
        tracks: (Q, T, 2) point positions (x, y) in every frame.
        ransac_threshold: RANSAC inlier distance in pixels.
        static_fraction: relative inlier fraction a point needs to count as static scene.
        rounds: refits on the static set.

    Returns:
        transforms (T−1, 2, 3) float64 mapping frame t to frame t+1 (identity where fewer than
        ``MIN_POINTS_FOR_FIT`` points exist or a fit fails), and inliers (Q, T−1) bool of the
        final fit, for all points.
    """
    q, t_len, _ = tracks.shape
    if q < MIN_POINTS_FOR_FIT or t_len < 2:
        return np.repeat(IDENTITY[None], max(t_len - 1, 0), axis=0), np.ones((q, max(t_len - 1, 0)), bool)
    transforms, inliers = _fit_per_frame(tracks, np.ones(q, bool), ransac_threshold)
    for _ in range(rounds):
        fraction = inliers.mean(axis=1)
        static = fraction >= static_fraction * fraction.max()
        if static.sum() < MIN_POINTS_FOR_FIT:
            break
        transforms, _ = _fit_per_frame(tracks, static, ransac_threshold)
        inliers = _inliers_of(tracks, transforms, ransac_threshold)
    return transforms, inliers


def _inliers_of(tracks: np.ndarray, transforms: np.ndarray, threshold: float) -> np.ndarray:
    """(Q, T−1) bool: points whose step t is explained by transforms[t] within ``threshold`` px."""
    return np.linalg.norm(residual_displacements(tracks, transforms), axis=-1) <= threshold


def residual_displacements(tracks: np.ndarray, transforms: np.ndarray) -> np.ndarray:
    """Per-point displacement not explained by the camera: p_{t+1} − (A_t p_t + b_t).

    tracks (Q, T, 2), transforms (T−1, 2, 3) → (Q, T−1, 2).
    """
    src = tracks[:, :-1].astype(np.float64)  # (Q, T-1, 2)
    a = transforms[:, :, :2]  # (T-1, 2, 2)
    b = transforms[:, :, 2]  # (T-1, 2)
    predicted = np.einsum("tij,qtj->qti", a, src) + b[None]
    return (tracks[:, 1:] - predicted).astype(np.float64)


def tracking_noise(residuals: np.ndarray, point_patch: np.ndarray, min_points: int = 3) -> float:
    """Robust per-frame tracking-noise σ (pixels): how much points of one patch disagree.

    Points seeded in one small patch mostly lie on one surface and share its motion, so their
    deviations from the patch's median residual displacement are what tracking alone jitters by.
    σ = 1.4826 · median |r − median_patch(r)| over x and y components, frames, and the points of
    patches with at least ``min_points`` survivors (the MAD estimate of a Gaussian σ). Unlike the
    spread of camera-inlier residuals, this does not grow with real scene motion.

    Args:
        residuals: (Q, T−1, 2) residual displacements of the points.
        point_patch: (Q,) patch index of each point.

    Returns:
        σ in px/frame; 0.0 when no patch has ``min_points`` points.
    """
    if residuals.shape[0] == 0:
        return 0.0
    counts = np.bincount(point_patch)
    keep = counts[point_patch] >= min_points
    if not keep.any():
        return 0.0
    r, owner = residuals[keep], point_patch[keep]
    deviation = np.empty_like(r)
    for p in np.unique(owner):
        sel = owner == p
        deviation[sel] = r[sel] - np.median(r[sel], axis=0)
    return float(1.4826 * np.median(np.abs(deviation)))
