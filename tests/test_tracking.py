"""Lucas–Kanade patch tracking, camera-motion compensation and the tracking-noise estimate."""

import cv2
import numpy as np
import pytest

from mimcl_hub.mi import estimate_camera_motion, grid_boxes, residual_displacements, track_patches, tracking_noise
from mimcl_hub.mi.tracking import reduce_by_patch, seed_points, track_points


def _texture(h=160, w=160, seed=0):
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 2.0)
    img = (img - img.min()) / (img.max() - img.min()) * 255
    return img.astype(np.uint8)


def _shifted_clip(shifts, size=128, seed=0):
    """Frames of a static texture seen through a window moved by ``shifts`` (T, 2) px (sub-pixel)."""
    world = _texture(size + 40, size + 40, seed)
    frames = []
    for dx, dy in shifts:
        m = np.array([[1, 0, -(20 + dx)], [0, 1, -(20 + dy)]], np.float64)
        g = cv2.warpAffine(world, m, (size, size), flags=cv2.INTER_LINEAR)
        frames.append(np.repeat(g[..., None], 3, -1))
    return np.stack(frames)


def test_grid_boxes_tile_the_frame():
    boxes = grid_boxes(136, 320, 8)
    assert boxes.shape == (64, 4)
    area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).sum()
    assert area == 136 * 320
    cover = np.zeros((136, 320), int)
    for x0, y0, x1, y1 in boxes:
        cover[y0:y1, x0:x1] += 1
    assert (cover == 1).all()
    with pytest.raises(ValueError, match="grid"):
        grid_boxes(10, 10, 0)
    with pytest.raises(ValueError, match="too small"):
        grid_boxes(4, 100, 8)


def test_seed_points_are_spread_and_skip_flat_patches():
    grey = _texture(128, 128)
    grey[:70, :70] = 90  # a flat region covering patches 0, 1, 4, 5 with a margin
    boxes = grid_boxes(128, 128, 4)
    pts, owner = seed_points(grey, boxes, per_patch=9)
    counts = np.bincount(owner, minlength=16)
    assert counts[0] == 0 and counts[1] == 0 and counts[4] == 0 and counts[5] == 0  # flat quadrant
    assert counts[[2, 3, 6, 7, 8, 15]].min() >= 6
    for p in np.unique(owner):
        x0, y0, x1, y1 = boxes[p]
        inside = pts[owner == p]
        assert ((inside[:, 0] >= x0) & (inside[:, 0] < x1) & (inside[:, 1] >= y0) & (inside[:, 1] < y1)).all()
        # spread: points in at least 3 of the 3x3 cells' rows
        rows = np.unique(((inside[:, 1] - y0) // ((y1 - y0) / 3)).astype(int))
        assert rows.size >= 2


def test_track_points_follows_a_known_subpixel_translation():
    steps = np.array([[0, 0], [1.3, -0.7], [2.9, -1.1], [4.2, 0.4], [5.0, 1.6], [6.7, 2.2]])
    frames = _shifted_clip(steps)
    greys = frames[..., 0]
    pts, _ = seed_points(greys[0], grid_boxes(128, 128, 4), per_patch=4)
    tracks, alive = track_points(greys, pts)
    assert alive.mean() > 0.8
    expected = pts[alive][:, None, :] - steps[None]  # content moves opposite to the window
    err = np.abs(tracks[alive] - expected)
    assert np.median(err) < 0.05 and err.max() < 0.5


def test_forward_backward_check_drops_points_on_a_scene_change():
    frames = _shifted_clip(np.zeros((4, 2)))
    other = _shifted_clip(np.zeros((4, 2)), seed=7)
    clip = np.concatenate([frames[:2], other[:2]])
    pts, _ = seed_points(clip[0, ..., 0], grid_boxes(128, 128, 4), per_patch=4)
    _, alive = track_points(clip[..., 0], pts)
    assert alive.mean() < 0.2


def test_camera_motion_recovers_a_similarity_with_moving_outliers(rng):
    q, t = 200, 10
    pts0 = rng.uniform(0, 200, (q, 2))
    tracks = np.empty((q, t, 2))
    tracks[:, 0] = pts0
    truth = []
    for k in range(1, t):
        ang, s, tx, ty = rng.normal(0, 0.01), 1 + rng.normal(0, 0.005), rng.normal(0, 2), rng.normal(0, 2)
        a = s * np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
        m = np.hstack([a, [[tx], [ty]]])
        truth.append(m)
        tracks[:, k] = tracks[:, k - 1] @ a.T + [tx, ty]
    movers = np.arange(70)  # 35% of the points belong to an object with its own random motion
    tracks[movers, 1:] += np.cumsum(rng.normal(0, 1.5, (70, t - 1, 2)), axis=1)
    tracks += rng.normal(0, 0.02, tracks.shape)
    transforms, inliers = estimate_camera_motion(tracks.astype(np.float32))
    assert np.abs(transforms - np.array(truth)).max() < 0.05
    assert inliers[100:].mean() > 0.95
    res = residual_displacements(tracks, transforms)
    assert np.abs(res[100:]).max() < 0.25  # static scene: only noise left
    assert np.abs(res[movers]).mean() > 0.5  # object motion kept


def test_camera_motion_identity_with_too_few_points():
    transforms, inliers = estimate_camera_motion(np.zeros((3, 5, 2), np.float32))
    assert transforms.shape == (4, 2, 3) and np.allclose(transforms, [[1, 0, 0], [0, 1, 0]])
    assert inliers.all()


def test_tracking_noise_is_the_within_patch_sigma(rng):
    q, n = 400, 30
    owner = np.repeat(np.arange(40), 10)
    patch_motion = rng.normal(0, 2.0, (40, n, 2))  # large real motion, shared by a patch's points
    res = patch_motion[owner] + rng.normal(0, 0.1, (q, n, 2))
    assert tracking_noise(res, owner) == pytest.approx(0.1, rel=0.15)
    assert tracking_noise(res[:0], owner[:0]) == 0.0
    assert tracking_noise(res[:2], np.array([0, 1])) == 0.0  # no patch with 3 points


def test_reduce_by_patch():
    values = np.array([[1.0], [3.0], [10.0], [5.0]])
    owner = np.array([0, 0, 0, 2])
    med = reduce_by_patch(values, owner, 3, "median")
    mean = reduce_by_patch(values, owner, 3, "mean")
    assert med[0, 0] == 3.0 and mean[0, 0] == pytest.approx(14 / 3) and np.isnan(med[1, 0]) and med[2, 0] == 5.0


def test_track_patches_colours_and_depth():
    steps = np.stack([np.arange(8) * 0.8, np.zeros(8)], -1)
    frames = _shifted_clip(steps)
    moving = track_patches(frames, grid=4)
    ok = moving.survivors() > 0
    assert ok.sum() >= 12
    assert np.allclose(moving.shifts[ok][:, -1], [-5.6, 0.0], atol=0.1)
    frames = (frames.astype(np.float32) * np.linspace(0.85, 1.0, 8)[:, None, None, None]).astype(np.uint8)
    tracks = track_patches(frames, grid=4, depth_fn=lambda f: np.full(f.shape[:2], 2.5, np.float32))
    assert tracks.colours.shape == (16, 8, 3) and tracks.depth.shape == (16, 8)
    ok = tracks.survivors() > 0
    lum = tracks.colours[ok].mean(-1)
    assert (np.diff(lum, axis=1) > 0).mean() > 0.9  # brightness ramp is seen by every patch
    assert np.allclose(tracks.depth[ok], 2.5)
    with pytest.raises(ValueError, match="reduce"):
        track_patches(frames, reduce="max")
    with pytest.raises(ValueError, match="depth_fn"):
        track_patches(frames, grid=4, depth_fn=lambda f: np.zeros(5))
