"""The twin picture of a mined dataset is drawn from its twin columns: the pairs drawn are exactly the mined ones
(never a new ``find_twins`` run with other options), the frame is the clip's first frame at the mined size, and
the right-hand panel is the G×G grid of each patch's best-partner MI (rows store no P×P matrix)."""

import json

import datasets
import numpy as np
import pytest

from mimcl_hub import ClipError
from mimcl_hub.data import make_scenes, mine_dataset
from mimcl_hub.data.mining import MinedTwins
from mimcl_hub.data.twin_figure import (mined_twin_frame, pick_twin_clip, plot_mined_twins,
                                        save_mined_twin_figure)
from mimcl_hub.data.video import resize_max_side
from mimcl_hub.mi import find_twins

# not find_twins' defaults (grid 8): a picture made by mining again with the defaults would show 64 patches
OPTIONS = dict(grid=6, exclude_neighbours=True, mi_threshold=0.1)


@pytest.fixture(scope="module")
def scenes():
    return make_scenes(3, seed=5, num_frames=24)


@pytest.fixture(scope="module")
def mined(scenes):
    return mine_dataset(scenes, max_side=96, **OPTIONS)


def _centre(box):
    return tuple(np.asarray(box, np.float64).reshape(2, 2).mean(0))


def test_mined_twins_read_back_the_row_columns(mined):
    for i in range(len(mined)):
        row = mined[i]
        twins = MinedTwins.from_row(row, index=i)
        assert twins.boxes.tolist() == row["twin_boxes"] and twins.twin.tolist() == row["twin"]
        np.testing.assert_array_equal(twins.mi, np.asarray(row["twin_mi"], np.float64))
        assert twins.valid.tolist() == row["twin_valid"] and twins.status_names() == row["twin_status"]
        np.testing.assert_array_equal(twins.tracks, np.asarray(row["twin_tracks"], np.float32))
        assert list(twins.frame_size) == row["twin_frame_size"] == [96, 96]
        assert twins.threshold == pytest.approx(row["twin_threshold"])
        assert twins.options == json.loads(row["twin_options"]) and twins.options["grid"] == 6
        assert twins.pairs == [(a, row["twin"][a], pytest.approx(row["twin_mi"][a]))
                               for a in range(36) if row["twin"][a] >= 0]
        assert twins.clip_id == row["clip_id"]


def test_the_picture_draws_exactly_the_mined_twins(mined, scenes):
    fig = plot_mined_twins(mined)
    index = pick_twin_clip(mined)
    row = mined[index]
    pairs = [(a, row["twin"][a]) for a in range(36) if row["twin"][a] >= 0]
    assert len(pairs) >= 3
    ax_img, ax_panel = fig.axes[0], fig.axes[1]

    # the frame: frame 0 of the clip, at the mined size (max_side 96 recorded in twin_options)
    frame0 = np.asarray(scenes.with_format("numpy")[index]["frames"][0], np.uint8)
    np.testing.assert_array_equal(np.asarray(ax_img.images[0].get_array()), resize_max_side(frame0, 96))

    # the pairs: one line per mined pair between the two box centres, one box per patch + two per pair
    drawn = {tuple(zip(*line.get_data())) for line in ax_img.lines if len(line.get_xdata()) == 2}
    boxes = row["twin_boxes"]
    assert drawn == {(_centre(boxes[a]), _centre(boxes[b])) for a, b in pairs}
    assert len(ax_img.patches) == 36 + 2 * len(pairs)

    # the right panel: the 6x6 grid of best-partner MI, invalid patches blank (NaN)
    panel = np.ma.filled(np.ma.asarray(ax_panel.images[0].get_array(), np.float64), np.nan)
    expected = np.where(row["twin_valid"], np.asarray(row["twin_mi"], np.float64), np.nan).reshape(6, 6)
    np.testing.assert_allclose(panel, expected, equal_nan=True)
    assert "6x6 grid" in ax_panel.get_title()

    # mining this clip again with find_twins' defaults gives other twins: the picture did not come from there
    frames = np.asarray(scenes.with_format("numpy")[index]["frames"], np.uint8)
    again = find_twins(np.stack([resize_max_side(f, 96) for f in frames]))
    assert len(again.boxes) == 64 and again.twin.tolist() != row["twin"]


def test_save_writes_a_png(mined, tmp_path):
    path = save_mined_twin_figure(mined, str(tmp_path / "twins.png"), title="three scenes")
    assert path == str(tmp_path / "twins.png")
    data = (tmp_path / "twins.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["twins.png"]          # no temporary file left


def test_the_picked_clip_prefers_real_footage_with_a_few_twins(mined):
    counts = [int(((np.asarray(t) >= 0) & np.asarray(v)).sum()) for t, v in zip(mined["twin"], mined["twin_valid"])]
    fewest = int(np.argmin(counts))
    assert counts[fewest] >= 3 and counts[fewest] < max(counts)
    assert pick_twin_clip(mined) == int(np.argmax(counts))                      # all procedural: the most twins

    def rename(row, i):
        return {"clip_id": f"bikes.mp4@{i}" if i == fewest else row["clip_id"]}

    real = mined.map(rename, with_indices=True)
    assert pick_twin_clip(real) == fewest                                        # real footage with >= 3 twins first

    def drop_twins(row, i):
        return {"twin": [-1] * len(row["twin"]) if i == fewest else row["twin"]}

    too_few = real.map(drop_twins, with_indices=True)
    assert pick_twin_clip(too_few) == int(np.argmax(counts))                    # a real clip without twins is not


def test_lazy_video_rows_failed_rows_and_bad_indices(tmp_path, bundled_paths):
    from mimcl_hub.data.sources import load_clip_frames

    clips = datasets.Dataset.from_dict({"clip_id": ["carphone@20", "missing@0"],
                                        "video": [bundled_paths["carphone_pristine.mp4"], str(tmp_path / "nope.mp4")],
                                        "start": [20, 0], "num_frames": [16, 16]})
    mined = mine_dataset(clips, max_side=120, grid=4)
    index, frame, twins = mined_twin_frame(mined)
    assert index == 0 and frame.shape == (*twins.frame_size, 3) == (98, 118, 3)     # 176x144 at max_side 120
    np.testing.assert_array_equal(frame, load_clip_frames(clips[0], max_side=120)[0])   # frame 20 of the video
    with pytest.raises(ClipError, match=r"row 1 \(missing@0\) was not mined .*nope\.mp4.*pick another clip"):
        mined_twin_frame(mined, 1)
    with pytest.raises(ValueError, match="out of range for the 2 mined clips"):
        save_mined_twin_figure(mined, str(tmp_path / "x.png"), index=2)
    with pytest.raises(ValueError, match="all 1 rows of the mined dataset failed mining"):
        pick_twin_clip(mined.select([1]))
    with pytest.raises(ValueError, match="no twin column"):
        mined_twin_frame(clips)
    assert not (tmp_path / "x.png").exists()
