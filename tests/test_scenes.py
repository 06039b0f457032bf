"""Procedural scenes (mimcl_hub.data.scenes): determinism, ground truth, motion statistics,
camera, illumination, patch ground truth and the datasets wrapper."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from mimcl_hub.data.scenes import (
    BACKGROUND,
    MIXED,
    Scene,
    make_scenes,
    patch_entities,
    patch_groups,
    render_scene,
    scene_seed,
)

H = W = 128
GRID_BOXES = np.array([(x, y, x + 16, y + 16) for y in range(0, H, 16) for x in range(0, W, 16)])


def _background_only(seed: int, **kw) -> Scene:
    """The same seed without entities: same background, camera (and illumination) streams."""
    return render_scene(seed, num_groups=0, num_distractors=0, **kw)


def _boxes_at(scene: Scene, t: int, grow: float = 0.0) -> np.ndarray:
    """(E, 4) float boxes x0, y0, x1, y1 (pixel-centre coords, inclusive) of the entities at frame t."""
    half = (scene.sizes - 1) / 2.0 + grow
    return np.concatenate([scene.positions[t] - half, scene.positions[t] + half], axis=1)


def _grey(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float64)


# --------------------------------------------------------------------------------------------
# render_scene
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pan,illumination", [(False, False), (True, True)])
def test_shapes_and_dtypes(pan, illumination):
    s = render_scene(5, pan=pan, illumination=illumination)
    T, E = 48, 6
    assert s.frames.shape == (T, H, W, 3) and s.frames.dtype == np.uint8
    assert s.labels.shape == (H, W) and s.labels.dtype == np.int32
    assert s.entity_group.dtype == np.int32
    assert s.entity_group.tolist() == [-1, 0, 0, 1, 1, 2, 3]  # groups first, then one id per distractor
    assert s.positions.shape == (T, E, 2) and s.positions.dtype == np.float64
    assert s.camera.shape == (T, 2) and np.all(s.camera[0] == 0)
    assert s.sizes.shape == (E, 2) and s.gain.shape == (T, 3)
    assert s.seed == 5 and s.num_entities == E
    assert set(np.unique(s.labels).tolist()) == set(range(E + 1))
    # background texture spreads over the grey range and has local contrast (corners for LK)
    grey = _grey(s.frames[0])
    assert np.percentile(grey, 95) - np.percentile(grey, 5) > 100
    corners = cv2.goodFeaturesToTrack(grey.astype(np.float32), 500, 0.01, 3)
    assert corners is not None and len(corners) > 150


def test_deterministic():
    a, b, c = render_scene(3), render_scene(3), render_scene(4)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.labels, b.labels)
    assert np.array_equal(a.positions, b.positions)
    assert not np.array_equal(a.frames, c.frames)


def test_entity_sizes_cover_grid_patches():
    s = render_scene(0)
    assert np.all(s.sizes >= 24) and np.all(s.sizes <= 44)
    for seed in range(6):
        s = render_scene(seed)
        ent = patch_entities(s.labels, GRID_BOXES)
        counts = [(ent == e).sum() for e in range(1, s.num_entities + 1)]
        assert min(counts) >= 1, (seed, counts)


@pytest.mark.parametrize("pan", [False, True])
def test_labels_are_the_entities_at_frame_0(pan):
    seed = 11
    s, bg = render_scene(seed, pan=pan), _background_only(seed, pan=pan)
    assert np.array_equal(s.camera, bg.camera)
    differs = np.any(s.frames[0] != bg.frames[0], axis=-1)
    assert not np.any(differs & (s.labels == 0)), "pixels outside the labels must be pure background"
    assert differs[s.labels > 0].mean() > 0.95, "labelled pixels must show the entity's texture"
    # the label mask of each entity is centred on its frame-0 position and has its size
    ys, xs = np.mgrid[0:H, 0:W]
    for e in range(1, s.num_entities + 1):
        m = s.labels == e
        assert abs(xs[m].mean() - s.positions[0, e - 1, 0]) < 0.5
        assert abs(ys[m].mean() - s.positions[0, e - 1, 1]) < 0.5
        assert xs[m].max() - xs[m].min() + 1 == s.sizes[e - 1, 0]
        assert ys[m].max() - ys[m].min() + 1 == s.sizes[e - 1, 1]


@pytest.mark.parametrize("pan", [False, True])
def test_positions_follow_the_pixels(pan):
    """In every frame, the pixels that differ from the entity-free render lie in the entity boxes
    given by ``positions`` / ``sizes``, and are centred on ``positions``."""
    seed = 7
    s, bg = render_scene(seed, num_frames=24, pan=pan), _background_only(seed, num_frames=24, pan=pan)
    ys, xs = np.mgrid[0:H, 0:W]
    for t in range(s.frames.shape[0]):
        differs = np.abs(s.frames[t].astype(int) - bg.frames[t].astype(int)).max(axis=-1) > 3
        inside = np.zeros((H, W), bool)
        for e, (x0, y0, x1, y1) in enumerate(_boxes_at(s, t, grow=1.0)):
            box = (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)
            inside |= box
            m = differs & box
            assert abs(xs[m].mean() - s.positions[t, e, 0]) < 1.0, (t, e)
            assert abs(ys[m].mean() - s.positions[t, e, 1]) < 1.0, (t, e)
        assert not np.any(differs & ~inside), f"frame {t}: entity pixels outside the ground-truth boxes"


def test_group_coupling_and_distractor_independence():
    for seed in range(3):
        s = render_scene(seed, num_frames=200)
        d = np.diff(s.positions, axis=0)  # (T-1, E, 2) frame-to-frame displacements
        assert 1.0 < d.std() < 3.0  # a few px/frame
        groups = s.entity_group[1:]
        for i, j in itertools.combinations(range(s.num_entities), 2):
            for axis in range(2):
                r = np.corrcoef(d[:, i, axis], d[:, j, axis])[0, 1]
                if groups[i] == groups[j]:
                    assert r > 0.9, (seed, i, j, axis, r)
                else:
                    assert abs(r) < 0.3, (seed, i, j, axis, r)


def test_coupling_noise_controls_coupling():
    d = np.diff(render_scene(0, num_frames=200, coupling_noise=1.0).positions, axis=0)
    r = np.corrcoef(d[:, 0, 0], d[:, 1, 0])[0, 1]
    assert 0.2 < r < 0.8  # 1 / (1 + 1) = 0.5 expected


@pytest.mark.parametrize("pan,counts", [
    (False, (2, 2, 2)),
    (True, (2, 2, 2)),
    (False, (3, 2, 1)),  # 7 entities: needs the regular-grid layout
    (True, (1, 2, 0)),
])
def test_entities_stay_in_frame_and_never_overlap(pan, counts):
    num_groups, entities_per_group, num_distractors = counts
    for seed in range(5):
        s = render_scene(seed, num_frames=200, pan=pan, num_groups=num_groups,
                         entities_per_group=entities_per_group, num_distractors=num_distractors)
        assert s.num_entities == num_groups * entities_per_group + num_distractors
        for t in range(s.frames.shape[0]):
            b = _boxes_at(s, t)
            assert b[:, :2].min() >= 0 and b[:, 2].max() <= W - 1 and b[:, 3].max() <= H - 1, (seed, t)
            for i, j in itertools.combinations(range(len(b)), 2):
                apart_x = b[i, 2] < b[j, 0] or b[j, 2] < b[i, 0]
                apart_y = b[i, 3] < b[j, 1] or b[j, 3] < b[i, 1]
                assert apart_x or apart_y, (seed, t, i, j)


def test_static_camera_keeps_background_still():
    s = render_scene(2)
    assert np.all(s.camera == 0)
    outside = np.ones((H, W), bool)
    ys, xs = np.mgrid[0:H, 0:W]
    for t in range(s.frames.shape[0]):
        for x0, y0, x1, y1 in _boxes_at(s, t, grow=1.0):
            outside &= ~((xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1))
    assert outside.mean() > 0.2
    assert np.all(s.frames[:, outside] == s.frames[0, outside])


def test_pan_moves_background_by_camera():
    seed = 1
    s, bg = render_scene(seed, pan=True), _background_only(seed, pan=True)
    cam = s.camera
    assert np.abs(cam).max() > 3 and np.ptp(cam, axis=0).max() <= 12.0 + 1e-9  # pan_range
    speed = np.abs(np.diff(cam, axis=0)).mean()
    assert 0.5 < speed < 4.0  # a few px / frame
    window = cv2.createHanningWindow((W, H), cv2.CV_64F)
    for t in (1, 5, 10, 20, 47):
        (dx, dy), _ = cv2.phaseCorrelate(_grey(bg.frames[0]), _grey(bg.frames[t]), window)
        assert np.hypot(dx + cam[t, 0], dy + cam[t, 1]) < 0.6, (t, (dx, dy), cam[t])
    # with entities in front: every pixel outside the entity boxes is that same moving background
    ys, xs = np.mgrid[0:H, 0:W]
    for t in range(s.frames.shape[0]):
        outside = np.ones((H, W), bool)
        for x0, y0, x1, y1 in _boxes_at(s, t, grow=1.0):
            outside &= ~((xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1))
        assert np.array_equal(s.frames[t][outside], bg.frames[t][outside]), t
    # the entities also move with the camera: positions are world offsets minus camera
    no_pan = render_scene(seed, pan=False)
    assert not np.allclose(no_pan.positions, s.positions)


@pytest.mark.parametrize("pan", [False, True])
def test_lucas_kanade_tracks_the_ground_truth(pan):
    """Corners away from entity borders are tracked by pyramidal LK to ~0.1 px of the truth."""
    s = render_scene(3, pan=pan)
    g0, g1 = (cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in s.frames[:2])
    pts = cv2.goodFeaturesToTrack(g0, 400, 0.01, 4).reshape(-1, 2)
    ij = pts.round().astype(int)
    lab = s.labels[ij[:, 1], ij[:, 0]]
    edges = cv2.morphologyEx(s.labels.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    far = cv2.distanceTransform((~edges).astype(np.uint8), cv2.DIST_L2, 5)[ij[:, 1], ij[:, 0]] >= 8
    nxt, status, _ = cv2.calcOpticalFlowPyrLK(g0, g1, pts.reshape(-1, 1, 2).astype(np.float32), None,
                                              winSize=(15, 15), maxLevel=2)
    e = np.maximum(lab - 1, 0)
    expected = np.where(lab[:, None] > 0, s.positions[1][e] - s.positions[0][e], -s.camera[1])
    err = np.linalg.norm(nxt.reshape(-1, 2) - pts - expected, axis=1)
    ok = far & (status.ravel() == 1)
    assert (ok & (lab > 0)).sum() >= 10 and (ok & (lab == 0)).sum() >= 20
    assert np.median(err[ok & (lab > 0)]) < 0.15 and np.median(err[ok & (lab == 0)]) < 0.15


def test_illumination_changes_brightness():
    seed = 4
    plain, lit = render_scene(seed), render_scene(seed, illumination=True)
    assert np.all(plain.gain == 1)
    brightness = lit.frames.reshape(lit.frames.shape[0], -1).mean(axis=1)
    ratio = brightness[-1] / brightness[0]
    assert abs(ratio - 1) > 0.2
    assert np.all(np.abs(np.diff(brightness)) < 0.05 * brightness.max())  # smooth, no jumps
    # same scene content, just multiplied by the recorded gain (up to rounding / clipping)
    expected = plain.frames * lit.gain[:, None, None, :]
    ok = expected < 254.5
    assert np.abs(lit.frames[ok] - np.rint(expected[ok])).max() <= 1
    assert np.array_equal(plain.labels, lit.labels)


def test_no_entities_and_distractors_only():
    s = render_scene(0, num_groups=0, num_distractors=0, num_frames=4)
    assert s.positions.shape == (4, 0, 2) and np.all(s.labels == 0) and s.entity_group.tolist() == [-1]
    s = render_scene(0, num_groups=0, entities_per_group=0, num_distractors=3, num_frames=4)
    assert s.entity_group.tolist() == [-1, 0, 1, 2]


# --------------------------------------------------------------------------------------------
# patch ground truth
# --------------------------------------------------------------------------------------------


def test_patch_groups_synthetic():
    labels = np.zeros((32, 48), np.int32)
    labels[0:16, 0:16] = 1  # patch 0: entity 1 only
    labels[0:16, 16:26] = 2  # patch 1: 10/16 columns = 0.625 of entity 2
    labels[0:16, 32:40] = 3  # patch 2: half entity 3, half background -> mixed (tie)
    labels[16:32, 0:16] = 0  # patch 3: background
    labels[16:32, 16:22] = 1  # patch 4: 6 + 6 columns of entities 1, 2; 4 background -> mixed
    labels[16:32, 22:28] = 2
    entity_group = np.array([-1, 0, 0, 5], np.int32)
    boxes = np.array([(0, 0, 16, 16), (16, 0, 32, 16), (32, 0, 48, 16), (0, 16, 16, 32), (16, 16, 32, 32)])
    assert patch_entities(labels, boxes).tolist() == [1, 2, MIXED, 0, MIXED]
    assert patch_groups(labels, entity_group, boxes).tolist() == [0, 0, MIXED, BACKGROUND, MIXED]
    assert patch_groups(labels, entity_group, boxes, min_fraction=0.7).tolist() == [0, MIXED, MIXED, BACKGROUND, MIXED]
    assert patch_groups(labels, entity_group, boxes, min_fraction=0.3).tolist()[4] == MIXED  # 6 vs 6: a tie


def test_patch_groups_on_a_scene_grid():
    s = render_scene(0)
    groups = patch_groups(s.labels, s.entity_group, GRID_BOXES)
    ents = patch_entities(s.labels, GRID_BOXES)
    assert groups.shape == (64,)
    assert (groups == BACKGROUND).sum() > 10
    assert set(groups[groups >= 0].tolist()) == set(s.entity_group[1:].tolist())  # every group is seen
    for p, (x0, y0, x1, y1) in enumerate(GRID_BOXES):
        patch = s.labels[y0:y1, x0:x1]
        if groups[p] == BACKGROUND:
            assert (patch == 0).mean() >= 0.6
        elif groups[p] >= 0:
            assert (patch == ents[p]).mean() >= 0.6 and s.entity_group[ents[p]] == groups[p]
        else:
            assert np.bincount(patch.ravel()).max() / patch.size < 0.6


@pytest.mark.parametrize("boxes", [
    np.array([[0, 0, 16, 200]]),  # outside the frame
    np.array([[-1, 0, 16, 16]]),
    np.array([[8, 8, 8, 16]]),  # empty
    np.array([[0.0, 0.0, 16.0, 16.0]]),  # not integers
    np.array([0, 0, 16, 16]),  # not (P, 4)
])
def test_patch_groups_rejects_bad_boxes(boxes):
    labels = np.zeros((64, 64), np.int32)
    with pytest.raises(ValueError, match="boxes"):
        patch_groups(labels, np.array([-1]), boxes)


def test_patch_groups_rejects_bad_args():
    labels = np.zeros((64, 64), np.int32)
    labels[:8, :8] = 2
    with pytest.raises(ValueError, match="min_fraction"):
        patch_entities(labels, GRID_BOXES[:1], min_fraction=0)
    with pytest.raises(ValueError, match="entity_group"):
        patch_groups(labels, np.array([-1, 0]), GRID_BOXES[:1])
    with pytest.raises(ValueError, match="labels"):
        patch_entities(labels.astype(np.float32), GRID_BOXES[:1])


# --------------------------------------------------------------------------------------------
# make_scenes
# --------------------------------------------------------------------------------------------


def test_make_scenes_dataset(tmp_path):
    from datasets import Array2D, Array3D, Array4D, Value

    ds = make_scenes(2, seed=3, num_frames=4, pan=True, cache_dir=str(tmp_path))
    assert len(ds) == 2
    assert {"clip_id", "frames", "labels", "entity_group", "pan", "illumination"} <= set(ds.column_names)
    f = ds.features
    assert isinstance(f["frames"], Array4D) and f["frames"].shape == (4, H, W, 3) and f["frames"].dtype == "uint8"
    assert isinstance(f["labels"], Array2D) and f["labels"].shape == (H, W) and f["labels"].dtype == "int32"
    assert isinstance(f["positions"], Array3D) and f["positions"].shape == (4, 6, 2)
    assert f["entity_group"].feature == Value("int32")
    assert f["pan"] == Value("bool") and f["illumination"] == Value("bool")
    assert list(ds["clip_id"]) == ["scene-3-0", "scene-3-1"]

    row = ds.with_format("numpy")[1]
    # datasets' numpy formatter upcasts integer arrays to int64; the values are the uint8 frames
    assert row["frames"].shape == (4, H, W, 3) and np.issubdtype(row["frames"].dtype, np.integer)
    assert row["labels"].shape == (H, W) and np.issubdtype(row["labels"].dtype, np.integer)
    u8 = ds.with_format("numpy", columns=["frames"], dtype=np.uint8, output_all_columns=True)[1]
    assert u8["frames"].dtype == np.uint8 and np.array_equal(u8["frames"], row["frames"])
    assert u8["clip_id"] == "scene-3-1"
    assert bool(row["pan"]) and not bool(row["illumination"])
    ref = render_scene(scene_seed(3, 1), num_frames=4, pan=True)
    assert int(row["seed"]) == ref.seed
    assert np.array_equal(row["frames"], ref.frames) and np.array_equal(row["labels"], ref.labels)
    assert row["entity_group"].tolist() == ref.entity_group.tolist()
    assert np.allclose(row["positions"], ref.positions, atol=1e-4)
    assert np.allclose(row["camera"], ref.camera, atol=1e-4)

    again = make_scenes(2, seed=3, num_frames=4, pan=True, cache_dir=str(tmp_path / "other"))
    assert np.array_equal(again.with_format("numpy")[0]["frames"], ds.with_format("numpy")[0]["frames"])
    other = make_scenes(1, seed=4, num_frames=4, pan=True, cache_dir=str(tmp_path))
    assert not np.array_equal(other.with_format("numpy")[0]["frames"], ds.with_format("numpy")[0]["frames"])


def test_scene_seed_is_derived_from_seed_and_index():
    seeds = {scene_seed(s, i) for s in range(3) for i in range(3)}
    assert len(seeds) == 9 and scene_seed(1, 2) == scene_seed(1, 2)


# --------------------------------------------------------------------------------------------
# bad arguments
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs,name", [
    ({"num_frames": 1}, "num_frames"),
    ({"height": 16}, "height"),
    ({"width": 8}, "width"),
    ({"num_groups": -1}, "num_groups"),
    ({"entities_per_group": 0}, "entities_per_group"),
    ({"num_distractors": -2}, "num_distractors"),
    ({"coupling_noise": -0.1}, "coupling_noise"),
    ({"entity_size": (40, 20)}, "entity_size"),
    ({"entity_size": (4, 8)}, "entity_size"),
    ({"mean_reversion": 1.5}, "mean_reversion"),
    ({"motion_std": float("nan")}, "motion_std"),
    ({"pan": "yes"}, "pan"),
    ({"illumination_gain": (0.8,)}, "illumination_gain"),
    ({"shapes": ("star",)}, "shapes"),
    ({"num_distractors": 20}, "entity_size"),  # cannot fit
    ({"entity_size": (60, 60)}, "entity_size"),
])
def test_bad_render_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        render_scene(0, **kwargs)


def test_bad_seed_and_unknown_option():
    with pytest.raises(ValueError, match="seed"):
        render_scene(-1)
    with pytest.raises(ValueError, match="seed"):
        render_scene(1.5)
    with pytest.raises(TypeError):
        render_scene(0, no_such_option=1)


@pytest.mark.parametrize("n", [0, -1, 2.0, True])
def test_make_scenes_bad_n(n):
    with pytest.raises(ValueError, match="n must be"):
        make_scenes(n)


def test_make_scenes_validates_render_arguments_first():
    with pytest.raises(ValueError, match="num_frames"):
        make_scenes(2, num_frames=1)
    with pytest.raises(ValueError, match="seed"):
        make_scenes(2, seed=-3)
