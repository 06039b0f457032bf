"""Materialised patch crops (mimcl_hub.data.crops): windows, coordinates and bytes against their definition."""

import datasets
import numpy as np
import pytest

from mimcl_hub.data import make_scenes, mine_dataset
from mimcl_hub.data.crops import (CROP_FEATURES, crop_frame_indices, crop_window, decode_crop, has_crops,
                                  patch_crops)


def _gradient_frames(t_len=4, height=60, width=80):
    """Frames whose pixel (y, x) in frame t is (x * 3 % 256, y * 4 % 256, 40 * t): every window is recognisable."""
    y, x = np.mgrid[:height, :width]
    return np.stack([np.stack([x * 3 % 256, y * 4 % 256, np.full_like(x, 40 * t)], -1) for t in range(t_len)]).astype(np.uint8)


def test_crop_frame_indices_spread_over_tracked_frames():
    tracked = np.array([False, True, True, True, True, True, False, True])
    assert crop_frame_indices(tracked, 3).tolist() == [1, 3, 7]      # positions round(0, 2.5, 5)
    assert crop_frame_indices(tracked, 1).tolist() == [1]
    assert crop_frame_indices(tracked, 10).tolist() == [1, 2, 3, 4, 5, 7]
    assert crop_frame_indices(np.zeros(5, bool), 3).tolist() == []


def test_crop_window_is_centred_and_clamped():
    assert crop_window(40.0, 30.0, 10.0, 2.0, 60, 80) == (20, 30, 20)     # top, left, side
    assert crop_window(2.0, 58.0, 10.0, 2.0, 60, 80) == (40, 0, 20)       # clamped at the left / bottom border
    assert crop_window(40.0, 30.0, 100.0, 2.0, 60, 80)[2] == 200           # larger than the frame: covers it


def test_patch_crops_cut_the_tracked_window_and_map_its_centre():
    frames = _gradient_frames()
    boxes = np.array([[30, 20, 40, 30], [0, 0, 10, 10], [60, 40, 70, 50]])
    tracks = np.full((3, 4, 2), np.nan)
    tracks[0] = [[35.0, 25.0], [36.0, 25.0], [37.0, 26.0], [38.0, 27.0]]
    tracks[1, 1:3] = [[4.0, 5.0], [5.0, 5.0]]
    tracks[2] = 65.0
    valid = np.array([True, True, False])
    out = patch_crops(frames, boxes, tracks, valid, crop_size=20, crop_frames=2, crop_context=2.0)
    assert set(out) == set(CROP_FEATURES)
    assert out["crop_patch"] == [0, 0, 1, 1] and out["crop_frame"] == [0, 3, 1, 2]   # invalid patch 2: none
    # patch 0 at frame 3: centre (38, 27), side 10 -> window 20 px from (28, 17); crop size 20 = scale 1
    assert out["crop_window"][1] == [28.0, 17.0, 48.0, 37.0]
    assert out["crop_center"][1] == pytest.approx([10.0, 10.0]) and out["crop_side"][1] == pytest.approx(10.0)
    image = decode_crop(out["crop_image"][1])
    assert image.shape == (20, 20, 3)
    np.testing.assert_allclose(image.astype(float), frames[3, 17:37, 28:48].astype(float), atol=6)   # JPEG q95 4:4:4
    # patch 1 at frame 1: centre (4, 5) clamped to the corner: the centre is off the crop's middle, by the clamp
    assert out["crop_window"][2] == [0.0, 0.0, 20.0, 20.0] and out["crop_center"][2] == pytest.approx([4.0, 5.0])


def test_patch_crops_resize_and_refuse_bad_input():
    frames = _gradient_frames()
    boxes = np.array([[30, 20, 40, 30]])
    tracks = np.full((1, 4, 2), [35.0, 25.0])
    out = patch_crops(frames, boxes, tracks, np.array([True]), crop_size=40, crop_frames=1, crop_context=2.0)
    assert out["crop_center"][0] == pytest.approx([20.0, 20.0]) and out["crop_side"][0] == pytest.approx(20.0)
    assert decode_crop(out["crop_image"][0]).shape == (40, 40, 3)
    with pytest.raises(ValueError, match="crop_size"):
        patch_crops(frames, boxes, tracks, np.array([True]), crop_size=4)
    with pytest.raises(ValueError, match="crop_context"):
        patch_crops(frames, boxes, tracks, np.array([True]), crop_context=0.5)
    with pytest.raises(ValueError, match="tracks"):
        patch_crops(frames, boxes, tracks[:, :2], np.array([True]))
    with pytest.raises(ValueError, match="uint8"):
        patch_crops(frames.astype(np.float32), boxes, tracks, np.array([True]))


def test_mined_crops_match_the_twin_columns_and_leave_them_unchanged():
    clips = make_scenes(2, seed=3, num_frames=16)
    plain = mine_dataset(clips, max_side=None, significance=0)
    mined = mine_dataset(clips, max_side=None, significance=0, crop_size=32, crop_frames=2)
    assert has_crops(mined.column_names) and not has_crops(plain.column_names)
    for column in ("twin", "twin_mi", "twin_valid", "twin_tracks", "twin_boxes"):
        for a, b in zip(mined[column], plain[column]):
            np.testing.assert_array_equal(np.asarray(a, float), np.asarray(b, float))   # NaN where invalid
    raw = mined.cast_column("crop_image", datasets.Sequence(datasets.Image(decode=False)))
    for row in raw:
        valid = np.flatnonzero(row["twin_valid"])
        assert sorted(set(row["crop_patch"])) == valid.tolist() and len(row["crop_patch"]) == 2 * len(valid)
        for p, t, window in zip(row["crop_patch"], row["crop_frame"], row["crop_window"]):
            cx, cy = row["twin_tracks"][p][t]
            assert window[0] <= cx <= window[2] and window[1] <= cy <= window[3]
        assert all(decode_crop(image).shape == (32, 32, 3) for image in row["crop_image"])
    # deterministic: the same clips give the same bytes
    again = mine_dataset(clips, max_side=None, significance=0, crop_size=32, crop_frames=2, num_proc=2)
    again = again.cast_column("crop_image", datasets.Sequence(datasets.Image(decode=False)))
    assert again["crop_image"] == raw["crop_image"]
