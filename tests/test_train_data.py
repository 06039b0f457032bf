"""The InfoAug dual-branch training data (mimcl_hub.data: augment, clipbank, contrastive, resolve, default): items, determinism, twin pairs,
crops centred on the tracks, collation, image datasets, the dataset factory and bad input."""

import time

import datasets
import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF

from mimcl_hub.data import bundled_clips, load_clip_frames, make_scenes, mine_dataset
from mimcl_hub.data import (
    AugmentConfig,
    ClipBank,
    ImageContrastiveDataset,
    TwinContrastiveDataset,
    build_train_dataset,
    collate_contrastive,
    default_video_dataset,
    load_twin_clips,
)

S = 32


@pytest.fixture(scope="module")
def mined():
    """Two procedural scenes of 16 frames, mined at full size (128x128)."""
    return mine_dataset(make_scenes(2, num_frames=16), max_side=None)


@pytest.fixture(scope="module")
def bank(mined):
    return load_twin_clips(mined)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) if torch.is_tensor(a[k]) else a[k] == b[k] for k in a)


# --------------------------------------------------------------------------------------------
# items
# --------------------------------------------------------------------------------------------


def test_bank_holds_mined_clips_at_the_mined_size(mined, bank):
    assert bank.num_clips == 2 and bank.num_frames == 32 and not bank.skipped
    for c in range(2):
        assert bank.frames[c].dtype == torch.uint8 and tuple(bank.frames[c].shape) == (16, 3, 128, 128)
        assert bank.tracks[c].shape == (64, 16, 2) and bank.boxes[c].shape == (64, 4)
        assert bank.twin[c].tolist() == mined[c]["twin"]
        frames = np.asarray(make_scenes(2, num_frames=16).with_format("numpy")[c]["frames"], np.uint8)
        assert torch.equal(bank.frames[c], torch.from_numpy(frames).permute(0, 3, 1, 2))
    assert len(bank.twin_pairs()) > 0
    assert bank.nbytes >= 2 * 16 * 3 * 128 * 128


def test_shapes_and_dtypes(bank):
    for mode in ("mi", "random"):
        ds = TwinContrastiveDataset(bank, AugmentConfig(), twin_mode=mode)
        item = ds[0]
        assert set(item) == {"view1", "view2", "twin_a", "twin_b", "twin_valid"}
        for key in ("view1", "view2", "twin_a", "twin_b"):
            assert item[key].shape == (3, S, S) and item[key].dtype == torch.float32
            assert torch.isfinite(item[key]).all()
        assert item["twin_valid"].dtype == torch.bool and item["twin_valid"].shape == () and bool(item["twin_valid"])
        assert len(ds) == max(bank.num_frames, ds.num_pairs)
    ds = TwinContrastiveDataset(bank, AugmentConfig(img_size=48), twin_mode="none")
    item = ds[3]
    assert set(item) == {"view1", "view2"} and item["view1"].shape == (3, 48, 48)
    assert len(ds) == bank.num_frames and ds.describe(3).twins == ()
    assert not torch.equal(item["view1"], item["view2"])  # two different augmentations


def test_views_are_normalised_crops_of_the_chosen_frame(bank):
    aug = AugmentConfig(crop_scale=(1.0, 1.0), flip_p=0, jitter_p=0, grayscale_p=0)
    ds = TwinContrastiveDataset(bank, aug, twin_mode="none")
    plan = ds.describe(5)
    frame = bank.frames[plan.clip][plan.frame]  # square frames: scale 1 crops the whole frame
    expected = TF.resize_image(frame, [S, S], antialias=True).float() / 255
    expected = (expected - torch.tensor(aug.mean).view(3, 1, 1)) / torch.tensor(aug.std).view(3, 1, 1)
    torch.testing.assert_close(ds[5]["view1"], expected, atol=1e-5, rtol=0)


def test_several_twins_per_item(bank):
    ds = TwinContrastiveDataset(bank, AugmentConfig(), twins_per_item=3, length=5)
    item = ds[1]
    assert item["twin_a"].shape == (3, 3, S, S) and item["twin_valid"].shape == (3,)
    assert len(ds.describe(1).twins) == 3 and len(ds) == 5
    batch = collate_contrastive([ds[i] for i in range(4)])
    assert batch["twin_b"].shape == (4, 3, 3, S, S) and batch["twin_valid"].shape == (4, 3)


# --------------------------------------------------------------------------------------------
# determinism
# --------------------------------------------------------------------------------------------


def test_same_seed_epoch_index_gives_identical_items(bank):
    a = TwinContrastiveDataset(bank, AugmentConfig(), seed=3)
    b = TwinContrastiveDataset(bank, AugmentConfig(), seed=3)
    torch.manual_seed(123)  # the global RNG plays no part
    first = a[7]
    torch.manual_seed(999)
    np.random.seed(5)
    assert _same(first, b[7]) and _same(first, a[7])
    assert not _same(first, a[8])
    assert not _same(first, TwinContrastiveDataset(bank, AugmentConfig(), seed=4)[7])
    a.set_epoch(1)
    assert a.epoch == 1
    assert not _same(first, a[7])
    b.set_epoch(1)
    assert _same(a[7], b[7])
    a.set_epoch(0)
    assert _same(first, a[7])


def _batches(loader):
    return [batch for batch in loader]


def test_dataloader_workers_give_the_same_batches(bank):
    ds = TwinContrastiveDataset(bank, AugmentConfig(), twin_mode="random", seed=1, length=40)

    def loader(workers, persistent=False):
        return torch.utils.data.DataLoader(
            ds, batch_size=8, shuffle=False, num_workers=workers, collate_fn=collate_contrastive,
            persistent_workers=persistent,
        )

    ref = {}
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        ref[epoch] = _batches(loader(0))
    parallel = loader(2, persistent=True)  # set_epoch must reach workers that outlive an epoch
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        got = _batches(parallel)
        assert len(got) == len(ref[epoch]) == 5
        assert all(_same(x, y) for x, y in zip(got, ref[epoch]))
    assert not _same(ref[0][0], ref[1][0])


# --------------------------------------------------------------------------------------------
# twin pairs
# --------------------------------------------------------------------------------------------


def test_mi_pairs_are_exactly_the_mined_twins(bank):
    ds = TwinContrastiveDataset(bank, AugmentConfig(), twin_mode="mi")
    mined_pairs = {tuple(p) for p in bank.twin_pairs().tolist()}
    seen = set()
    for i in range(len(ds)):
        (choice,) = ds.describe(i).twins
        assert choice.partner == bank.twin[choice.clip][choice.anchor] != choice.anchor
        assert 0 <= choice.t_a < 16 and 0 <= choice.t_b < 16
        seen.add((choice.clip, choice.anchor, choice.partner))
    assert seen == mined_pairs  # every pair once an epoch (len >= number of pairs)
    t_pairs = [(c.t_a, c.t_b) for c in (ds.describe(i).twins[0] for i in range(len(ds)))]
    assert sum(a != b for a, b in t_pairs) > len(t_pairs) // 2  # anchor and partner in different frames


def test_random_pairs_are_valid_other_patches_without_mi_order(bank):
    mi = TwinContrastiveDataset(bank, AugmentConfig(), twin_mode="mi")
    rnd = TwinContrastiveDataset(bank, AugmentConfig(), twin_mode="random")
    same_as_mined, partners = 0, {}
    for epoch in (0, 1, 2):
        rnd.set_epoch(epoch)
        for i in range(len(rnd)):
            (choice,) = rnd.describe(i).twins
            assert choice.partner != choice.anchor
            assert bank.valid[choice.clip][choice.partner] and bank.valid[choice.clip][choice.anchor]
            same_as_mined += choice.partner == bank.twin[choice.clip][choice.anchor]
            partners.setdefault((choice.clip, choice.anchor), set()).add(choice.partner)
    anchors = {(c.clip, c.anchor) for c in (mi.describe(i).twins[0] for i in range(len(mi)))}
    assert set(partners) == anchors  # same anchors as the MI mode: only the partner choice differs
    assert same_as_mined < 0.5 * 3 * len(rnd)
    assert any(len(p) > 1 for p in partners.values())  # redrawn per item and epoch


# --------------------------------------------------------------------------------------------
# twin crops follow the tracks
# --------------------------------------------------------------------------------------------


def _square_bank(background: int = 50, side: int = 12, t_len: int = 6, height: int = 96, width: int = 128):
    """Two bright squares moving along known integer tracks; patch 0 and 1 are twins."""
    steps = np.arange(t_len)
    tracks = np.zeros((2, t_len, 2), np.float32)
    tracks[0, :, 0], tracks[0, :, 1] = 30 + 3 * steps, 30 + 2 * steps
    tracks[1, :, 0], tracks[1, :, 1] = 95 - 2 * steps, 62 + steps
    frames = np.full((t_len, 3, height, width), background, np.uint8)
    for p in range(2):
        for t in range(t_len):
            x0, y0 = int(tracks[p, t, 0]) - side // 2, int(tracks[p, t, 1]) - side // 2
            frames[t, :, y0:y0 + side, x0:x0 + side] = 255
    boxes = [[tracks[p, 0, 0] - side / 2, tracks[p, 0, 1] - side / 2, tracks[p, 0, 0] + side / 2, tracks[p, 0, 1] + side / 2]
             for p in range(2)]
    return ClipBank([torch.from_numpy(frames)], [np.array(boxes)], [np.array([1, 0])], [np.array([True, True])], [tracks])


def _plain(**kw):
    return AugmentConfig(flip_p=0, jitter_p=0, grayscale_p=0, mean=(0, 0, 0), std=(1, 1, 1), **kw)


def _centroid(crop: torch.Tensor) -> tuple[float, float]:
    weight = (crop.mean(0) - crop.mean(0).min()).clamp(min=0)
    ys, xs = torch.meshgrid(torch.arange(S, dtype=torch.float32), torch.arange(S, dtype=torch.float32), indexing="ij")
    return float((weight * xs).sum() / weight.sum()), float((weight * ys).sum() / weight.sum())


def test_twin_crops_are_centred_on_the_tracked_positions():
    bank = _square_bank()
    ds = TwinContrastiveDataset(bank, _plain(twin_context=2.0), twin_mode="mi", length=24)
    frames_seen = set()
    for i in range(len(ds)):
        item, (choice,) = ds[i], ds.describe(i).twins
        frames_seen.update([choice.t_a, choice.t_b])
        for key in ("twin_a", "twin_b"):
            cx, cy = _centroid(item[key])
            assert abs(cx - (S - 1) / 2) < 1.0 and abs(cy - (S - 1) / 2) < 1.0, (i, key, cx, cy)
            crop = item[key].mean(0)
            assert crop.max() > 0.95 and crop.min() < 0.25  # the square, and background around it
            # twin_context 2: the square covers about a quarter of the crop (scale jitter +-20%)
            assert 0.12 < float((crop > 0.6).float().mean()) < 0.45
    assert len(frames_seen) > 3  # crops follow the squares through the clip


def test_twin_windows_are_clamped_inside_the_frame_and_padded_when_larger():
    bank = _square_bank()
    bank.tracks[0][0, :, 0] = 4.0  # a track at the left edge: the window is shifted inside, not padded
    ds = TwinContrastiveDataset(bank, _plain(twin_context=2.0, twin_scale_jitter=0.0), length=8)
    for i in range(8):
        choice = ds.describe(i).twins[0]
        if choice.anchor == 0:
            assert ds[i]["twin_a"].min() >= 50 / 255 - 1e-3  # no zero padding
    big = TwinContrastiveDataset(_square_bank(), _plain(twin_context=16.0, twin_scale_jitter=0.0), length=2)
    crop = big[0]["twin_a"]  # a 192 px window on a 128x96 frame: zero padding around the frame
    assert crop.min() == 0.0 and crop.max() > 0.9


def test_hue_adjustment_matches_torchvision():
    from mimcl_hub.data.augment import adjust_hue as _adjust_hue

    x = torch.rand(3, 20, 24)
    x[:, :3, :3] = 0.5
    x[:, 3:6, :3] = 0.0
    x[:, 6:9, :3] = 1.0
    for factor in (0.0, 0.05, -0.1, 0.3, -0.5, 0.5):
        torch.testing.assert_close(_adjust_hue(x, factor), TF.adjust_hue_image(x, factor), atol=1e-5, rtol=0)


# --------------------------------------------------------------------------------------------
# collation
# --------------------------------------------------------------------------------------------


def test_collate_with_mixed_twin_valid_and_items_without_twins(bank):
    ds = TwinContrastiveDataset(bank, AugmentConfig())
    items = [ds[i] for i in range(3)]
    items[1] = dict(items[1], twin_a=torch.zeros(3, S, S), twin_b=torch.zeros(3, S, S), twin_valid=torch.tensor(False))
    view_only = TwinContrastiveDataset(bank, AugmentConfig(), twin_mode="none")[0]
    batch = collate_contrastive(items + [view_only])
    assert batch["view1"].shape == (4, 3, S, S) and batch["twin_a"].shape == (4, 3, S, S)
    assert batch["twin_valid"].tolist() == [True, False, True, False] and batch["twin_valid"].dtype == torch.bool
    assert batch["twin_count"] == 2 and batch["twin_index"].tolist() == [0, 2]     # counted on the host (issue 13)
    assert torch.equal(batch["twin_b"][3], torch.zeros(3, S, S))
    only_views = collate_contrastive([view_only, view_only])
    assert set(only_views) == {"view1", "view2"} and only_views["view2"].shape == (2, 3, S, S)
    with pytest.raises(ValueError, match="empty batch"):
        collate_contrastive([])
    with pytest.raises(ValueError, match="view1"):
        collate_contrastive([{"twin_a": torch.zeros(3, S, S)}])


# --------------------------------------------------------------------------------------------
# image datasets
# --------------------------------------------------------------------------------------------


def _digits_dataset(n: int = 60) -> datasets.Dataset:
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    from PIL import Image

    digits = sklearn_datasets.load_digits()
    images = [
        Image.fromarray((digits.images[i] * 255 / 16).astype(np.uint8)).resize((32, 32), Image.BILINEAR).convert("RGB")
        for i in range(n)
    ]
    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(num_classes=10)})
    return datasets.Dataset.from_dict({"img": images, "label": digits.target[:n].tolist()}, features=features)


def test_image_dataset_from_sklearn_digits():
    ds = ImageContrastiveDataset(_digits_dataset(), AugmentConfig(), seed=2)
    assert ds.image_column == "img" and len(ds) == 60
    item = ds[4]
    assert set(item) == {"view1", "view2"} and item["view1"].shape == (3, S, S) and item["view1"].dtype == torch.float32
    again = ImageContrastiveDataset(_digits_dataset(), AugmentConfig(), seed=2)
    assert _same(item, again[4])
    ds.set_epoch(1)
    assert not _same(item, ds[4])
    batch = collate_contrastive([ds[i] for i in range(6)])
    assert set(batch) == {"view1", "view2"} and batch["view1"].shape == (6, 3, S, S)


def test_image_dataset_from_arrays_and_its_errors():
    frames = np.asarray(make_scenes(1, num_frames=8).with_format("numpy")[0]["frames"], np.uint8)
    arrays = datasets.Dataset.from_dict({"picture": list(frames)})
    ds = ImageContrastiveDataset(arrays, AugmentConfig(img_size=16), image_column="picture")
    assert ds[0]["view2"].shape == (3, 16, 16)
    with pytest.raises(ValueError, match="no image column 'nope'.*picture"):
        ImageContrastiveDataset(arrays, AugmentConfig(), image_column="nope")
    with pytest.raises(ValueError, match="no image column"):
        ImageContrastiveDataset(arrays, AugmentConfig())
    with pytest.raises(ValueError, match="label"):
        ImageContrastiveDataset(datasets.Dataset.from_dict({"label": [1, 2]}), AugmentConfig(), image_column="label")


# --------------------------------------------------------------------------------------------
# the factory and the offline default
# --------------------------------------------------------------------------------------------


def test_build_train_dataset_from_saved_folders(mined, tmp_path):
    mined.save_to_disk(str(tmp_path / "mined"))
    ds = build_train_dataset(str(tmp_path / "mined"), "random", AugmentConfig(), seed=0)
    assert isinstance(ds, TwinContrastiveDataset) and ds.twin_mode == "random" and ds.bank.num_clips == 2

    make_scenes(2, num_frames=16).save_to_disk(str(tmp_path / "clips"))  # not mined yet: mined on the way
    ds = build_train_dataset(str(tmp_path / "clips"), "mi", AugmentConfig(), seed=0, max_side=96)
    assert tuple(ds.bank.frames[0].shape) == (16, 3, 96, 96) and ds.num_pairs > 0

    frames = np.asarray(make_scenes(1, num_frames=8).with_format("numpy")[0]["frames"], np.uint8)
    from PIL import Image

    images = datasets.Dataset.from_dict({"image": [Image.fromarray(f) for f in frames]},
                                        features=datasets.Features({"image": datasets.Image()}))
    images.save_to_disk(str(tmp_path / "images"))
    ds = build_train_dataset(str(tmp_path / "images"), "none", AugmentConfig(), seed=0)
    assert isinstance(ds, ImageContrastiveDataset) and len(ds) == 8
    with pytest.raises(ValueError, match="image dataset.*twin_mode must be 'none'"):
        build_train_dataset(str(tmp_path / "images"), "mi", AugmentConfig(), seed=0)

    datasets.Dataset.from_dict({"text": ["a"]}).save_to_disk(str(tmp_path / "text"))
    with pytest.raises(ValueError, match="neither mined clips.*text"):
        build_train_dataset(str(tmp_path / "text"), "none", AugmentConfig(), seed=0)


def test_bad_inputs_raise_clear_errors(mined, bank, tmp_path):
    with pytest.raises(ValueError, match="unknown twin_mode 'best'"):
        TwinContrastiveDataset(bank, AugmentConfig(), twin_mode="best")
    with pytest.raises(ValueError, match="img_size=4"):
        AugmentConfig(img_size=4)
    with pytest.raises(ValueError, match="crop_scale.*flip_p"):
        AugmentConfig(crop_scale=(0.5, 0.1), flip_p=1.5)
    with pytest.raises(ValueError, match="twins_per_item"):
        TwinContrastiveDataset(bank, AugmentConfig(), twins_per_item=0)
    no_twins = ClipBank(list(bank.frames), list(bank.boxes), [np.full_like(t, -1) for t in bank.twin],
                        list(bank.valid), list(bank.tracks))
    with pytest.raises(ValueError, match="twin_mode='none'.*mine with other options"):
        TwinContrastiveDataset(no_twins, AugmentConfig(), twin_mode="random")
    assert len(TwinContrastiveDataset(no_twins, AugmentConfig(), twin_mode="none")) == 32
    with pytest.raises(ValueError, match=r"no twin column.*mine_dataset"):
        load_twin_clips(make_scenes(2, num_frames=16))
    with pytest.raises(IndexError):
        TwinContrastiveDataset(bank, AugmentConfig())[10_000]

    missing = str(tmp_path / "no" / "such" / "folder")
    start = time.perf_counter()
    with pytest.raises(ValueError, match="no such file or folder") as info:
        build_train_dataset(missing, "mi", AugmentConfig(), seed=0)
    assert missing in str(info.value) and time.perf_counter() - start < 1.0
    with pytest.raises(ValueError, match="unknown twin_mode"):
        build_train_dataset(None, "MI", AugmentConfig(), seed=0)


def test_rows_with_mine_error_are_skipped_and_counted(mined):
    broken = mined.map(lambda row, i: {"mine_error": "ClipError: broken" if i == 1 else ""}, with_indices=True)
    bank = load_twin_clips(broken)
    assert bank.num_clips == 1 and bank.skipped == {1: "ClipError: broken"} and bank.rows == [0]
    all_broken = mined.map(lambda row: {"mine_error": "ClipError: broken"})
    with pytest.raises(ValueError, match="no usable clip.*broken"):
        load_twin_clips(all_broken)


def test_bundled_clips_at_the_mined_size_and_downscaled():
    clips = bundled_clips(window=24, names=["bikes.mp4", "carphone_pristine.mp4"])
    clips = clips.filter(lambda r: r["clip_id"] in ("bikes.mp4@137+24", "carphone_pristine.mp4@0+24"))
    mined = mine_dataset(clips, max_side=160)
    bank = load_twin_clips(mined)
    assert bank.clip_ids == ["bikes.mp4@137+24", "carphone_pristine.mp4@0+24"]
    for c in range(2):
        h, w = mined[c]["twin_frame_size"]
        assert tuple(bank.frames[c].shape) == (24, 3, h, w)
        expected = load_clip_frames(mined[c], max_side=160)
        assert torch.equal(bank.frames[c], torch.from_numpy(expected).permute(0, 3, 1, 2))
    ds = TwinContrastiveDataset(bank, AugmentConfig(), twin_mode="mi")
    assert ds.num_pairs > 5
    batch = collate_contrastive([ds[i] for i in range(8)])
    assert batch["twin_a"].shape == (8, 3, S, S) and bool(batch["twin_valid"].all())
    small = load_twin_clips(mined, max_side=80)
    assert tuple(small.frames[0].shape) == (24, 3, 34, 80)  # bikes 160x68 -> 80x34
    scale = 80 / 160
    np.testing.assert_allclose(small.tracks[0], bank.tracks[0] * np.float32([scale, 34 / 68]), rtol=1e-5, equal_nan=True)


def test_default_video_dataset_is_cached(tmp_path):
    start = time.perf_counter()
    mined = default_video_dataset(cache_dir=str(tmp_path), num_scenes=2)
    first = time.perf_counter() - start
    start = time.perf_counter()
    again = default_video_dataset(cache_dir=str(tmp_path), num_scenes=2)
    second = time.perf_counter() - start
    assert again._fingerprint == mined._fingerprint and second < max(1.0, first / 4)
    assert len(mined) == 20 and set(mined["source"]) == {"bundled", "scene"} and not any(mined["mine_error"])
    bank = load_twin_clips(mined)
    assert bank.num_frames == 20 * 24 and len(bank.twin_pairs()) > 100


# --------------------------------------------------------------------------------------------
# pixels of image datasets (issue 13: one conversion, decided by the column's feature type)
# --------------------------------------------------------------------------------------------


def _sample_pictures(n: int = 6) -> list:
    """Small real photos: crops of scikit-learn's sample images (china.jpg, flower.jpg), 48x64 uint8 RGB."""
    import cv2

    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    photos = [sklearn_datasets.load_sample_image(name) for name in ("china.jpg", "flower.jpg")]
    return [cv2.resize(photos[i % 2][30 * i:30 * i + 240, 50 * i:50 * i + 320], (64, 48), interpolation=cv2.INTER_AREA)
            for i in range(n)]


def _array_dataset(images, dtype: str) -> datasets.Dataset:
    features = datasets.Features({"image": datasets.Array3D(shape=images[0].shape, dtype=dtype)})
    return datasets.Dataset.from_dict({"image": list(images)}, features=features)


def test_float_image_dataset_trains_on_the_right_pixels(tmp_path):
    """issue 13: a float [0, 1] image dataset (Array3D float32) gives exactly the views of its uint8 version.
    (The old ``astype(np.uint8)`` turned every [0, 1] pixel into 0 or 1: black frames, without a word.)"""
    pictures = _sample_pictures()
    as_uint8 = _array_dataset(pictures, "uint8")
    as_float = _array_dataset([p.astype(np.float32) / 255 for p in pictures], "float32")
    from PIL import Image

    as_pil = datasets.Dataset.from_dict({"image": [Image.fromarray(p) for p in pictures]},
                                        features=datasets.Features({"image": datasets.Image()}))
    aug = AugmentConfig(img_size=24)
    ref = ImageContrastiveDataset(as_uint8, aug, seed=5)
    got = ImageContrastiveDataset(as_float, aug, seed=5)
    pil = ImageContrastiveDataset(as_pil, aug, seed=5)
    for i in range(len(pictures)):
        assert torch.equal(got.image(i), torch.from_numpy(pictures[i]).permute(2, 0, 1))
        assert _same(got[i], ref[i]) and _same(pil[i], ref[i])
    assert float(got.image(0).float().mean()) > 50  # a real photo, not black frames

    as_float.save_to_disk(str(tmp_path / "float_images"))
    built = build_train_dataset(str(tmp_path / "float_images"), "none", aug, seed=5)
    assert isinstance(built, ImageContrastiveDataset) and _same(built[3], ref[3])


def test_float_image_dataset_outside_unit_range_is_refused(tmp_path):
    """issue 13: floats outside [0, 1] (e.g. grey levels 0..255 stored as float) are refused with a
    ValueError naming the column and the row, when the dataset is built (not in a DataLoader worker)."""
    pictures = _sample_pictures()
    grey_levels = _array_dataset([p.astype(np.float32) for p in pictures], "float32")
    with pytest.raises(ValueError, match=r"row 0 of column 'image'.*outside \[0, 1\]"):
        ImageContrastiveDataset(grey_levels, AugmentConfig())
    unit = [p.astype(np.float32) / 255 for p in pictures]
    unit[4] = unit[4] * 1.5  # one bad row among good ones: found by the whole-column check
    one_bad = _array_dataset(unit, "float32")
    with pytest.raises(ValueError, match=r"row 4 of column 'image': float pixels range over \[0\.0176471, 1\.49412\]"):
        ImageContrastiveDataset(one_bad, AugmentConfig())
    nan = [p.copy() for p in unit[:4]]
    nan[2][5, 5, 1] = np.nan
    with pytest.raises(ValueError, match="row 2 of column 'image'.*NaN"):
        ImageContrastiveDataset(_array_dataset(nan, "float32"), AugmentConfig())
    one_bad.save_to_disk(str(tmp_path / "bad"))
    with pytest.raises(ValueError, match=r"row 4 of column 'image'.*outside \[0, 1\]"):
        build_train_dataset(str(tmp_path / "bad"), "none", AugmentConfig(), seed=0)
    assert len(ImageContrastiveDataset(one_bad.select([0, 1, 2, 3, 5]), AugmentConfig())) == 5  # selections: their rows only


def test_augment_config_is_checked_once_and_frozen():
    import dataclasses

    aug = AugmentConfig(mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25], crop_scale=[0.3, 0.9])
    assert aug.mean == (0.5, 0.5, 0.5) and aug.std == (0.25, 0.25, 0.25) and aug.crop_scale == (0.3, 0.9)
    with pytest.raises(dataclasses.FrozenInstanceError):
        aug.img_size = 4
    assert all("check" in f.metadata for f in dataclasses.fields(AugmentConfig))
    for bad, name in [(dict(img_size=True), "img_size"), (dict(img_size=16.0), "img_size"), (dict(std=(1, 0, 1)), "std"),
                      (dict(mean=(0.5, 0.5)), "mean"), (dict(twin_context=0), "twin_context"),
                      (dict(twin_scale_jitter=1.0), "twin_scale_jitter"), (dict(jitter_strength=float("nan")), "jitter_strength"),
                      (dict(crop_scale=(0.0, 1.0)), "crop_scale")]:
        with pytest.raises(ValueError, match=f"invalid AugmentConfig: {name}="):
            AugmentConfig(**bad)


def test_bank_keeps_the_mined_dataset(mined, bank):
    assert bank.mined is mined and [mined[r]["clip_id"] for r in bank.rows] == bank.clip_ids
    by_hand = ClipBank(list(bank.frames), list(bank.boxes), list(bank.twin), list(bank.valid), list(bank.tracks))
    assert by_hand.mined is None
    with pytest.raises(ValueError, match="mined must be a datasets.Dataset"):
        ClipBank(list(bank.frames), list(bank.boxes), list(bank.twin), list(bank.valid), list(bank.tracks),
                 mined={"twin": []})
