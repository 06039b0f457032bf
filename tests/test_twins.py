"""find_twins on procedural scenes with ground truth, on a real clip, and on bad input."""

import cv2
import numpy as np
import pytest

from mimcl_hub import ClipError
from mimcl_hub.data import patch_entities, patch_groups, render_scene
from mimcl_hub.mi import STATUS_NAMES, TwinOptions, find_twins, random_twins, select_twins

KINDS = ["static", "pan", "illumination", "pan+illumination"]


@pytest.fixture(scope="module")
def mined_scenes(scene_set):
    return {kind: [(scene, find_twins(scene.frames)) for scene in scene_set[kind]] for kind in KINDS}


def _far_from_entities(scene, boxes, margin=4):
    """Patches with no entity pixel within ``margin`` px (entities wander ~±6 px around frame 0)."""
    near = cv2.dilate((scene.labels > 0).astype(np.uint8), np.ones((2 * margin + 1, 2 * margin + 1), np.uint8))
    return np.array([near[y0:y1, x0:x1].sum() == 0 for x0, y0, x1, y1 in boxes])


@pytest.mark.parametrize("kind", KINDS)
def test_twin_precision_on_scenes(mined_scenes, kind):
    """Twin precision: an anchor on an entity (>= 60% of its patch) gets a twin on the same entity or one
    of its group. Twins on ambiguous patches (no label covers 60%) are left out of the count."""
    total = correct = 0
    for scene, result in mined_scenes[kind]:
        groups = patch_groups(scene.labels, scene.entity_group, result.boxes)
        for anchor, twin, _ in result.pairs:
            if groups[anchor] >= 0 and groups[twin] != -2:
                total += 1
                correct += groups[twin] == groups[anchor]
    assert total >= 40, f"too few scored twins ({total}) for a meaningful precision"
    assert correct / total >= 0.9, f"{kind}: twin precision {correct}/{total}"


@pytest.mark.parametrize("kind", KINDS)
def test_coupled_entities_have_higher_mi_than_distractors(mined_scenes, kind):
    within, across = [], []
    for scene, result in mined_scenes[kind]:
        groups = patch_groups(scene.labels, scene.entity_group, result.boxes)
        entities = patch_entities(scene.labels, result.boxes)
        m = result.mi_matrix
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                if groups[i] < 0 or groups[j] < 0 or not np.isfinite(m[i, j]):
                    continue
                if groups[i] == groups[j] and entities[i] != entities[j]:
                    within.append(m[i, j])  # two entities that move together
                elif groups[i] != groups[j]:
                    across.append(m[i, j])  # independent movers
    within, across = np.array(within), np.array(across)
    assert len(within) >= 20 and len(across) >= 100
    assert np.quantile(within, 0.1) > 1.0, f"coupled entities: {np.quantile(within, [0.1, 0.5])}"
    assert np.quantile(across, 0.9) < 0.25, f"independent movers: {np.quantile(across, [0.5, 0.9])}"
    assert within.min() > np.median(across) + 0.5


@pytest.mark.parametrize("kind", KINDS)
def test_static_background_is_invalid_even_under_pan(mined_scenes, kind):
    checked = 0
    for scene, result in mined_scenes[kind]:
        far = _far_from_entities(scene, result.boxes)
        checked += int(far.sum())
        assert not result.valid[far].any(), f"{kind} seed {scene.seed}: background patches {np.flatnonzero(far & result.valid)} valid"
        assert all(STATUS_NAMES[s] != "ok" for s in result.status[far])
    assert checked >= 30


def test_without_camera_compensation_a_pan_makes_background_valid(scene_set):
    """The control for the test above: the gate alone does not stop a pan."""
    scene = scene_set["pan"][0]
    far = _far_from_entities(scene, find_twins(scene.frames).boxes)
    raw = find_twins(scene.frames, compensate_camera=False)
    tracked = far & np.isin(raw.status, [STATUS_NAMES.index("ok"), STATUS_NAMES.index("static")])
    assert tracked.sum() >= 3
    assert raw.valid[tracked].all()  # every tracked background patch now "moves"...
    shared = raw.mi_matrix[np.ix_(tracked, tracked)]
    assert np.nanmin(shared) > 1.0  # ...and they all share the camera's motion


def test_result_shapes_and_consistency(scene_set):
    scene = scene_set["static"][1]
    r = find_twins(scene.frames, grid=6)
    p = 36
    t = scene.frames.shape[0]
    assert r.boxes.shape == (p, 4) and r.twin.shape == (p,) and r.mi.shape == (p,)
    assert r.valid.shape == (p,) and r.mi_matrix.shape == (p, p) and r.tracks.shape == (p, t, 2)
    assert r.boxes[:, [0, 1]].min() == 0 and r.boxes[:, 2].max() == 128 and r.boxes[:, 3].max() == 128
    m = r.mi_matrix
    assert np.allclose(np.nan_to_num(m, nan=-9), np.nan_to_num(m.T, nan=-9))
    assert np.isnan(np.diag(m)).all()
    assert np.isnan(m[~r.valid]).all() and np.isnan(m[:, ~r.valid]).all()
    for anchor, twin, mi in r.pairs:
        assert anchor != twin and r.valid[anchor] and r.valid[twin]
        assert mi > r.threshold and mi == pytest.approx(np.nanmax(m[anchor]))
    assert np.isnan(r.mi[~r.valid]).all()
    assert (r.twin[~r.valid] == -1).all()
    # tracks start at the patch centres
    centres = np.stack([(r.boxes[:, 0] + r.boxes[:, 2]) / 2, (r.boxes[:, 1] + r.boxes[:, 3]) / 2], -1)
    has = np.isfinite(r.tracks[:, 0, 0])
    assert np.allclose(r.tracks[has, 0], centres[has], atol=1e-4)


def test_deterministic(scene_set):
    frames = scene_set["pan"][2].frames
    a, b = find_twins(frames), find_twins(frames.copy())
    assert np.array_equal(a.twin, b.twin) and np.array_equal(a.valid, b.valid)
    assert np.array_equal(np.nan_to_num(a.mi_matrix), np.nan_to_num(b.mi_matrix)) and a.threshold == b.threshold


def test_threshold_and_exclude_neighbours(scene_set):
    frames = scene_set["static"][0].frames
    high = find_twins(frames, mi_threshold=50.0)
    assert (high.twin == -1).all() and np.isfinite(high.mi[high.valid]).all()
    apart = find_twins(frames, exclude_neighbours=True)
    for anchor, twin, _ in apart.pairs:
        (ra, ca), (rb, cb) = divmod(anchor, 8), divmod(twin, 8)
        assert max(abs(ra - rb), abs(ca - cb)) > 1


def test_surrogate_threshold_rejects_independent_movers():
    """Scenes of distractors only (no coupled entities): almost no twins survive the significance test."""
    twins = patches = 0
    for seed in range(4):
        scene = render_scene(seed, num_groups=0, num_distractors=6)
        r = find_twins(scene.frames)
        groups = patch_groups(scene.labels, scene.entity_group, r.boxes)
        entities = patch_entities(scene.labels, r.boxes)
        for anchor, twin, _ in r.pairs:  # twins across two different distractors are false
            if groups[anchor] >= 0 and groups[twin] >= 0:
                patches += 1
                twins += entities[anchor] != entities[twin]
    assert patches > 10
    assert twins / patches <= 0.1


def test_real_bikes_clip_gate_keeps_movers_and_drops_the_street(bikes_cyclist_clip):
    r = find_twins(bikes_cyclist_clip, clip_id="bikes@137")
    names = r.status_names()
    assert r.frame_size == (136, 320)
    assert 3 <= r.valid.sum() <= 24, names  # some movers, not the whole street
    assert names.count("static") >= 20
    assert 0 < r.gate < 0.3 and 0 < r.noise < 0.1
    assert len(r.pairs) >= 1


def test_colour_branch_adds_the_histogram_mi_of_luminance_change(scene_set):
    from mimcl_hub.mi import pairwise_histogram_mi, track_patches
    from mimcl_hub.mi.twins import colour_changes

    frames = scene_set["illumination"][0].frames
    plain = find_twins(frames)
    coloured = find_twins(frames, colour_weight=0.5)
    assert np.array_equal(plain.valid, coloured.valid)
    idx = np.flatnonzero(plain.valid)
    colours = track_patches(frames).colours[idx]
    expected = 0.5 * pairwise_histogram_mi(colour_changes(colours)[..., None], bins=4)
    diff = coloured.mi_matrix[np.ix_(idx, idx)] - plain.mi_matrix[np.ix_(idx, idx)]
    off = ~np.eye(idx.size, dtype=bool)
    assert np.allclose(diff[off], expected[off], atol=1e-9)
    assert np.abs(expected[off]).max() > 0.05
    # the global illumination ramp is removed: a frame-wide gain change alone is not shared information
    change = colour_changes(colours)
    assert np.abs(np.median(change, axis=0)).max() < 1e-9


def test_depth_channel_is_used(scene_set):
    frames = scene_set["static"][0].frames
    calls = []

    def depth(frame):  # a real per-frame map: brightness as pseudo-depth
        calls.append(frame.shape)
        return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0

    r = find_twins(frames, depth_fn=depth)
    assert len(calls) == frames.shape[0]
    assert r.valid.any()


# ----------------------------------------------------------------------------- selection helpers


def test_select_twins_by_hand():
    m = np.array(
        [
            [np.nan, 0.9, 0.1, 0.5],
            [0.9, np.nan, 0.3, 0.2],
            [0.1, 0.3, np.nan, 0.05],
            [0.5, 0.2, 0.05, np.nan],
        ]
    )
    valid = np.array([True, True, True, False])
    twin, best = select_twins(m, valid, threshold=0.2)
    assert twin.tolist() == [1, 0, 1, -1]
    assert best[:3].tolist() == [0.9, 0.9, 0.3] and np.isnan(best[3])
    twin, _ = select_twins(m, valid, threshold=0.35)
    assert twin.tolist() == [1, 0, -1, -1]
    forbidden = np.zeros((4, 4), bool)
    forbidden[0, 1] = forbidden[1, 0] = True
    twin, best = select_twins(m, valid, threshold=0.0, forbidden=forbidden)
    assert twin.tolist() == [2, 2, 1, -1]


def test_random_twins_ablation():
    valid = np.array([True, False, True, True, False, True])
    twin = random_twins(valid, seed=3)
    assert (twin[~valid] == -1).all()
    for i in np.flatnonzero(valid):
        assert twin[i] != i and valid[twin[i]]
    assert np.array_equal(twin, random_twins(valid, seed=3))
    assert (random_twins(np.array([True, False]), seed=0) == -1).all()
    counts = np.zeros((6, 6))
    for s in range(300):
        t = random_twins(valid, seed=s)
        counts[np.flatnonzero(valid), t[valid]] += 1
    # roughly uniform over the 3 other valid patches
    assert counts[0, [2, 3, 5]].min() > 60


# ----------------------------------------------------------------------------- bad input


def test_too_few_frames_names_the_clip(scene_set):
    frames = scene_set["static"][0].frames[:6]
    with pytest.raises(ClipError, match=r"clip 'short-one'.*6 frame.*k=5 needs at least 7"):
        find_twins(frames, clip_id="short-one")
    with pytest.raises(ClipError, match="1 frame"):
        find_twins(frames[:1], clip_id="x")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda f: f[..., 0], "grey"),
        (lambda f: f[..., :1], "grey"),
        (lambda f: np.concatenate([f, f[..., :1]], -1), "RGBA"),
        (lambda f: f.astype(np.float32), "uint8"),
        (lambda f: np.where(np.arange(3) == 0, np.nan, f.astype(np.float32)), "NaN"),
        (lambda f: f.astype(np.uint16), "uint8"),
        (lambda f: f[0], "grey"),
        (lambda f: f[:, :40, :40], "too small"),
        (lambda f: f.tolist(), "array"),
    ],
)
def test_bad_frames_raise_clear_errors(scene_set, make, message):
    frames = scene_set["static"][0].frames[:10]
    with pytest.raises(ClipError, match=message) as info:
        find_twins(make(frames), clip_id="bad-clip")
    assert "bad-clip" in str(info.value)


def test_bad_options():
    frames = np.zeros((10, 64, 64, 3), np.uint8)
    with pytest.raises(TypeError, match="unknown option"):
        find_twins(frames, gird=8)
    for bad in [dict(grid=0), dict(k=0), dict(fb_threshold=-1), dict(significance=1.0), dict(reduce="max"),
                dict(min_points=20)]:
        with pytest.raises(ValueError, match=next(iter(bad))):
            find_twins(frames, **bad)
    assert TwinOptions().grid == 8


def test_textureless_clip_has_no_valid_patch():
    frames = np.full((12, 96, 96, 3), 128, np.uint8)
    r = find_twins(frames)
    assert not r.valid.any() and (r.twin == -1).all()
    assert set(r.status_names()) == {"no_texture"}


def _same_result(a, b) -> bool:
    """Every array of two ``TwinPatches`` equal bit for bit (NaN where NaN), and the same scalars."""
    arrays = ("boxes", "twin", "mi", "valid", "mi_matrix", "tracks", "status", "motion")
    return (all(getattr(a, k).dtype == getattr(b, k).dtype and getattr(a, k).tobytes() == getattr(b, k).tobytes()
                for k in arrays)
            and (a.gate, a.noise, a.threshold, a.frame_size, a.options) == (b.gate, b.noise, b.threshold, b.frame_size,
                                                                           b.options))


def test_device_cpu_is_the_default_path_bit_for_bit(scene_set):
    """``device=None`` / ``"cpu"`` / ``torch.device("cpu")`` run the same numpy + compiled-kernel path: equal bits,
    with the colour branch and the surrogate test on; the device is not recorded among the options."""
    import torch

    frames = scene_set["pan+illumination"][1].frames
    ref = find_twins(frames, colour_weight=0.5)
    assert ref.pairs                                          # a clip with twins, so the comparison means something
    for device in ("cpu", torch.device("cpu")):
        assert _same_result(find_twins(frames, colour_weight=0.5, device=device), ref)
    assert "device" not in TwinOptions.__dataclass_fields__


def test_device_path_plumbing_matches_the_numpy_path(scene_set):
    """The off-CPU branch of the MI step (numpy -> float64 tensor on the device -> both estimators -> numpy), run
    here with CPU tensors (which ``pairwise_mi`` still sends to its CPU kernel), equals the numpy branch."""
    import torch

    from mimcl_hub.mi.twins import _motion_mi

    rng = np.random.default_rng(0)
    shared = rng.standard_normal((23, 2))
    series = np.stack([shared + s * rng.standard_normal((23, 2)) for s in (0.1, 0.5, 2.0, 9.0)] * 3)  # (12, 23, 2)
    colour = rng.standard_normal((12, 23))
    opts = TwinOptions(colour_weight=0.5)
    ref = _motion_mi(series, colour, opts)
    got = _motion_mi(series, colour, opts, torch.device("cpu"))
    assert isinstance(got, np.ndarray) and got.dtype == np.float64
    assert got.tobytes() == ref.tobytes() and ref[0, 1] > 0.5       # coupled pair: high MI


@pytest.mark.parametrize("device", ["tpu", "meta", 3.5])
def test_bad_device_is_a_clear_error(scene_set, device):
    with pytest.raises(ValueError, match="device must be None, 'cpu', 'cuda' or 'cuda:N'"):
        find_twins(scene_set["static"][0].frames, device=device)


def test_cuda_device_without_cuda_is_a_clear_error(scene_set):
    import torch

    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="only .* CUDA device"):
            find_twins(scene_set["static"][0].frames, device=f"cuda:{torch.cuda.device_count()}")
    else:
        with pytest.raises(ValueError, match=r"CUDA is not available here \(torch.cuda.is_available\(\) is False\)"):
            find_twins(scene_set["static"][0].frames, device="cuda")
