"""mine_twin_patches as an HF Datasets map function: columns, num_proc, bad rows, and the CLI."""

import json
import os
import shutil
import subprocess
import sys

import datasets
import numpy as np
import pytest

from mimcl_hub import ClipError
from mimcl_hub.data import (
    TWIN_FEATURES,
    bundled_clips,
    make_scenes,
    mine_dataset,
    mine_twin_patches,
    mining_report,
    render_scene,
)
from mimcl_hub.mi import find_twins


@pytest.fixture(scope="module")
def scenes():
    return make_scenes(4, seed=11, num_frames=24)


def test_mine_dataset_adds_twin_columns_equal_to_find_twins(scenes):
    mined = mine_dataset(scenes, num_proc=2, max_side=None)
    assert len(mined) == 4
    for name in TWIN_FEATURES:
        assert name in mined.column_names
    assert mined.features["twin"] == TWIN_FEATURES["twin"]
    report = mining_report(mined)
    assert report["clips"] == 4 and report["failed"] == 0 and report["twins"] > 0
    for i in (0, 3):
        frames = np.asarray(scenes.with_format("numpy")[i]["frames"], np.uint8)
        direct = find_twins(frames)
        row = mined[i]
        assert row["mine_error"] == ""
        assert row["twin"] == direct.twin.tolist()
        assert row["twin_valid"] == direct.valid.tolist()
        assert np.array_equal(np.asarray(row["twin_boxes"]), direct.boxes)
        np.testing.assert_allclose(np.asarray(row["twin_mi"], np.float64), direct.mi.astype(np.float32), equal_nan=True)
        assert np.asarray(row["twin_tracks"]).shape == (64, 24, 2)
        assert row["twin_frame_size"] == [128, 128]
        assert row["twin_status"] == direct.status_names()


def test_num_proc_gives_the_same_result(scenes):
    one = mine_dataset(scenes.select(range(2)), num_proc=None, max_side=None)
    two = mine_dataset(scenes.select(range(2)), num_proc=2, max_side=None)
    assert one["twin"] == two["twin"] and one["twin_boxes"] == two["twin_boxes"]


def test_lazy_windows_num_threads_and_forked_workers_give_the_same_twins(bundled_paths):
    import torch

    from mimcl_hub.data.sources import load_clip_frames

    clips = bundled_clips(window=24, names=["carphone_pristine.mp4"]).select(range(4))
    threads = torch.get_num_threads()
    # an in-process map leaves this process' decoder open: the forked workers below must neither use nor free it
    one = clips.map(mine_twin_patches, batched=True, batch_size=2, with_indices=True,
                    fn_kwargs={"max_side": 96, "grid": 4})
    two = mine_dataset(clips, num_proc=2, max_side=96, grid=4)
    three = mine_dataset(clips, max_side=96, grid=4, num_threads=1)
    assert torch.get_num_threads() == threads  # lowered for the map, restored after
    assert one["twin"] == two["twin"] == three["twin"]
    for other in (two, three):  # NaN where a patch is lost: compared as arrays
        np.testing.assert_array_equal(np.asarray(one["twin_tracks"], np.float32), np.asarray(other["twin_tracks"], np.float32))
    for i in (0, 3):  # windows decoded in one pass = load_clip_frames of each row
        direct = find_twins(load_clip_frames(clips[i], max_side=96), grid=4)
        assert two[i]["twin"] == direct.twin.tolist()
        np.testing.assert_array_equal(np.asarray(two[i]["twin_tracks"], np.float32), direct.tracks)


def test_mining_real_bundled_clips_with_map_and_fn_kwargs():
    clips = bundled_clips(window=24).filter(lambda r: r["clip_id"].startswith(("bikes.mp4@137", "carphone")))
    clips = clips.select(range(3))
    mined = clips.map(mine_twin_patches, batched=True, batch_size=2, fn_kwargs={"max_side": 160, "grid": 6})
    assert mined["mine_error"] == ["", "", ""]
    assert all(len(t) == 36 for t in mined["twin"])
    assert all(size[1] == 160 for size in mined["twin_frame_size"])
    assert mining_report(mined)["valid_patches"] > 0


def _bad_rows_dataset(tmp_path, bundled_paths):
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(3000))
    good = render_scene(2, num_frames=12).frames
    grey = good[..., 0]
    nan_frames = good.astype(np.float32)
    nan_frames[3, 5, 5, 0] = np.nan
    rows = [
        {"clip_id": "good", "video": None, "start": None, "num_frames": None, "frames": good},
        {"clip_id": "corrupt-file", "video": str(corrupt), "start": 0, "num_frames": 12, "frames": None},
        {"clip_id": "too-short", "video": None, "start": None, "num_frames": None, "frames": good[:4]},
        {"clip_id": "grey", "video": None, "start": None, "num_frames": None, "frames": grey},
        {"clip_id": "nan", "video": None, "start": None, "num_frames": None, "frames": nan_frames},
        {"clip_id": "missing-file", "video": str(tmp_path / "nope.mp4"), "start": 0, "num_frames": 12, "frames": None},
        {"clip_id": "bikes-real", "video": bundled_paths["bikes.mp4"], "start": 140, "num_frames": 12, "frames": None},
    ]
    return rows


def test_bad_rows_are_marked_never_crash_the_map(tmp_path, bundled_paths):
    rows = _bad_rows_dataset(tmp_path, bundled_paths)
    batch = {key: [r[key] for r in rows] for key in rows[0]}
    out = mine_twin_patches(batch, indices=list(range(len(rows))), max_side=None)
    errors = dict(zip(batch["clip_id"], out["mine_error"]))
    assert errors["good"] == "" and errors["bikes-real"] == "" and errors["grey"] == ""  # grey converted explicitly
    assert "corrupt" in errors["corrupt-file"] and "ClipError" in errors["corrupt-file"]
    assert "too-short" in errors["too-short"] and "needs at least" in errors["too-short"]
    assert "NaN" in errors["nan"]
    assert "nope.mp4" in errors["missing-file"]
    for name, error in errors.items():
        i = batch["clip_id"].index(name)
        if error:
            assert out["twin"][i] == [] and out["twin_boxes"][i] == []
        else:
            assert len(out["twin"][i]) == 64
    strict_format = mine_twin_patches(batch, max_side=None, strict_format=True)
    assert "grey" in strict_format["mine_error"][3]


def test_strict_mode_raises_naming_the_row(tmp_path, bundled_paths):
    rows = _bad_rows_dataset(tmp_path, bundled_paths)[:3]
    batch = {key: [r[key] for r in rows] for key in rows[0]}
    with pytest.raises(ClipError, match=r"row 1: .*corrupt"):
        mine_twin_patches(batch, indices=[0, 1, 2], max_side=None, strict=True)


def test_bad_rows_inside_a_real_dataset_map(tmp_path, bundled_paths):
    """A lazy video dataset with a corrupt file among good ones: the map finishes, the bad row is marked."""
    corrupt = tmp_path / "broken.mp4"
    data = open(bundled_paths["carphone_pristine.mp4"], "rb").read()
    corrupt.write_bytes(data[: len(data) // 20])
    ds = datasets.Dataset.from_dict(
        {
            "clip_id": ["carphone@0", "broken@0", "carphone@40"],
            "video": [bundled_paths["carphone_pristine.mp4"], str(corrupt), bundled_paths["carphone_pristine.mp4"]],
            "start": [0, 0, 40],
            "num_frames": [16, 16, 16],
        }
    )
    mined = mine_dataset(ds, num_proc=2, batch_size=1)
    report = mining_report(mined)
    assert report["mined"] == 2 and report["failed"] == 1
    assert "broken" in report["errors"][1]


def test_empty_dataset_and_bad_options(scenes):
    with pytest.raises(ClipError, match="empty"):
        mine_dataset(scenes.select([]))
    with pytest.raises(TypeError, match="unknown option"):
        mine_dataset(scenes, grdi=4)
    with pytest.raises(ValueError, match="grid"):
        mine_dataset(scenes, grid=-1)
    with pytest.raises(TypeError, match="datasets.Dataset"):
        mine_dataset([1, 2, 3])
    mined = mine_dataset(scenes.select([0]))
    with pytest.raises(ValueError, match="already has twin columns"):
        mine_dataset(mined)


# ----------------------------------------------------------------------------- CLI


def _mimcl(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "mimcl_hub.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


def test_cli_mine_scenes_saves_dataset_and_picture(tmp_path):
    out, png = tmp_path / "mined", tmp_path / "twins.png"
    proc = _mimcl("mine", "scenes:3", "--output", str(out), "--num_proc", "2", "--window", "16", "--visualize", str(png))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["clips"] == 3 and report["failed"] == 0 and report["twins"] > 0
    loaded = datasets.load_dataset(str(out), split="train")
    assert len(loaded) == 3 and "twin" in loaded.column_names
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp-")]  # nothing half-written left
    again = _mimcl("mine", "scenes:3", "--output", str(out))
    assert again.returncode == 2 and "already exists" in again.stderr


def test_cli_mine_video_file_and_folder(tmp_path, bundled_paths):
    folder = tmp_path / "videos"
    folder.mkdir()
    shutil.copy(bundled_paths["carphone_pristine.mp4"], folder / "carphone.mp4")
    proc = _mimcl("mine", str(folder), "--output", str(tmp_path / "a"), "--window", "16", "--limit", "2",
                  "--max_side", "176")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["clips"] == 2
    proc = _mimcl("mine", str(folder / "carphone.mp4"), "--output", str(tmp_path / "b"), "--limit", "1")
    assert proc.returncode == 0, proc.stderr


def test_cli_mines_a_saved_dataset_with_a_video_feature(tmp_path, bundled_paths):
    """An HF dataset whose column is datasets.Video (saved with save_to_disk) is cut into windows and mined."""
    raw = datasets.Dataset.from_dict({"video": [bundled_paths["carphone_pristine.mp4"]], "label": [3]})
    raw = raw.cast_column("video", datasets.Video())
    raw.save_to_disk(str(tmp_path / "raw"))
    proc = _mimcl("mine", str(tmp_path / "raw"), "--output", str(tmp_path / "mined"), "--window", "16", "--limit", "2")
    assert proc.returncode == 0, proc.stderr
    mined = datasets.load_dataset(str(tmp_path / "mined"), split="train")
    assert len(mined) == 2 and mined["mine_error"] == ["", ""]
    assert all(len(t) == 64 for t in mined["twin"])
    proc = _mimcl("mine", str(tmp_path / "raw"), "--output", str(tmp_path / "m2"), "--video_column", "clip")
    assert proc.returncode == 2 and "no video column 'clip'" in proc.stderr


def test_cli_rejects_bad_sources_clearly(tmp_path, capsys):
    from mimcl_hub.cli import main

    def run(*args):
        code = main(list(args))
        return code, capsys.readouterr().err

    code, err = run("mine", "no_such_thing", "--output", str(tmp_path / "x"))
    assert code == 2 and "unknown clip source" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, err = run("mine", str(empty), "--output", str(tmp_path / "y"))
    assert code == 2 and str(empty) in err
    code, err = run("mine", "scenes:0", "--output", str(tmp_path / "z"))
    assert code == 2 and "scenes:N" in err
    code, err = run("mine", "scenes:1", "--output", str(tmp_path / "w"), "--window", "1")
    assert code == 2 and "--window" in err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists() and not (tmp_path / "w").exists()


# ----------------------------------------------------------------------------- twin_options: how each row was mined


def test_every_row_records_the_options_it_was_mined_with(scenes, tmp_path, bundled_paths):
    import dataclasses

    from mimcl_hub.mi.twins import TwinOptions

    options = dict(grid=6, exclude_neighbours=True, mi_threshold=0.1)
    mined = mine_dataset(scenes.select(range(2)), max_side=96, **options)
    expected = {**dataclasses.asdict(TwinOptions(**options)), "max_side": 96}
    assert [json.loads(o) for o in mined["twin_options"]] == [expected, expected]
    assert mining_report(mined)["twin_options"] == [expected]
    assert mined.features["twin_options"] == TWIN_FEATURES["twin_options"] == datasets.Value("string")

    # a row that failed records the options too
    clips = datasets.Dataset.from_dict({"clip_id": ["carphone@0", "missing@0"],
                                        "video": [bundled_paths["carphone_pristine.mp4"], str(tmp_path / "nope.mp4")],
                                        "start": [0, 0], "num_frames": [12, 12]})
    other = mine_dataset(clips, max_side=None, grid=4)
    assert other["mine_error"][0] == "" and "nope.mp4" in other["mine_error"][1]
    expected_other = {**dataclasses.asdict(TwinOptions(grid=4)), "max_side": None}
    assert [json.loads(o) for o in other["twin_options"]] == [expected_other, expected_other]

    # rows of two minings in one Parquet export: each still says how it was mined; the report lists both sets
    columns = ["clip_id", *TWIN_FEATURES]
    both = datasets.concatenate_datasets([mined.select_columns(columns), other.select_columns(columns)])
    both.to_parquet(str(tmp_path / "mined.parquet"))
    loaded = datasets.load_dataset("parquet", data_files=str(tmp_path / "mined.parquet"), split="train")
    assert [json.loads(o) for o in loaded["twin_options"]] == [expected] * 2 + [expected_other] * 2
    assert mining_report(loaded)["twin_options"] == [expected, expected_other]


# ----------------------------------------------------------------------------- issue 19: bad files, card


sys.path.insert(0, os.path.dirname(__file__))
from video_files import BAD_FILES, GOOD_FRAMES, write_video  # noqa: E402


def test_marked_file_rows_fail_without_being_decoded_again(bundled_paths):
    """issue 19 item 13: a row whose file gave no clip when the source was built (scan_error / scan_reason) is a
    failed row with that message and reason; it is never decoded (here its path is a good video, so a decode would
    have mined it); strict mode raises naming the file; mining_report counts it."""
    carphone = bundled_paths["carphone_pristine.mp4"]
    message = f"video {carphone}: the file has no video stream"
    ds = datasets.Dataset.from_dict({
        "clip_id": ["carphone.mp4@0+16", "carphone.mp4@0+0"], "video": [carphone, carphone], "start": [0, 0],
        "num_frames": [16, 0], "scan_error": ["", message], "scan_reason": ["", "corrupt_video"]})
    mined = mine_dataset(ds, max_side=96, grid=4)
    assert mined["mine_reason"] == ["", "corrupt_video"] and mined["mine_error"] == ["", f"ClipError: {message}"]
    assert mined[1]["twin"] == [] and mined[1]["twin_frame_size"] == [0, 0] and json.loads(mined[1]["twin_options"])
    report = mining_report(mined)
    assert (report["mined"], report["failed"], report["bad_files"], report["failed_by_reason"]) == \
        (1, 1, 1, {"corrupt_video": 1})
    with pytest.raises(ClipError, match=r"^row 1: video .*carphone_pristine.mp4: the file has no video stream "
                                        r"\[corrupt_video\]$"):
        mine_dataset(ds, max_side=96, grid=4, strict=True)


def test_a_file_changed_after_its_windows_were_cut_is_refused(tmp_path):
    """A file replaced, truncated or deleted between building the clip dataset and mining it: a failed row naming it
    (its size recorded in video_size), never twins of other content."""
    from mimcl_hub.data import folder_clips

    folder = tmp_path / "videos"
    folder.mkdir()
    for i, name in enumerate(("replaced.mp4", "truncated.mp4", "deleted.mp4", "kept.mp4")):
        write_video(folder / name, GOOD_FRAMES, seed=i)
    clips = folder_clips(folder, window=16, on_error="mark")
    write_video(folder / "replaced.mp4", GOOD_FRAMES, seed=9)
    data = (folder / "truncated.mp4").read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (folder / "deleted.mp4").unlink()
    mined = mine_dataset(clips, max_side=96, grid=4)
    reasons = dict(zip(mined["clip_id"], zip(mined["mine_reason"], mined["mine_error"])))
    assert reasons["kept.mp4@0+16"] == ("", "")
    assert reasons["deleted.mp4@0+16"][0] == "missing_video" and "deleted.mp4" in reasons["deleted.mp4@0+16"][1]
    for name in ("replaced.mp4", "truncated.mp4"):
        reason, error = reasons[f"{name}@0+16"]
        assert reason == "bad_clip" and f"{folder / name}: changed since its clip windows were cut" in error


def test_save_mined_dataset_writes_dataset_and_card_in_one_atomic_folder(tmp_path, bundled_paths):
    """issue 19 items 2 and 13 (library): the card records source, options, report (bad files by reason) and that
    video paths are absolute; load_from_disk reads the folder; the clip bank skips the bad rows; a dataset with no
    mined row is refused without writing anything."""
    from huggingface_hub import DatasetCard

    from mimcl_hub.data import load_clip_source, load_twin_clips, save_mined_dataset
    from mimcl_hub.data.dataset_card import read_mined_card

    folder = tmp_path / "videos"
    folder.mkdir()
    shutil.copy(bundled_paths["carphone_pristine.mp4"], folder / "carphone.mp4")
    bad = {case: BAD_FILES[case][0](folder).name for case in ("zero_byte", "audio_only", "png_renamed")}
    clips = load_clip_source(str(folder), window=16)
    mined = mine_dataset(clips, max_side=96, grid=4)
    out = tmp_path / "mined"
    report = save_mined_dataset(mined, out, str(folder), clip_options={"window": 16, "limit": None})
    assert report["output"] == str(out) and report["failed_by_reason"] == {"corrupt_video": 2, "too_few_frames": 1}
    assert report["bad_files"] == 3 and report["mined"] == 7 and report["clips"] == 10
    assert sorted(os.listdir(tmp_path)) == ["mined", "videos"]                      # no temporary folder left
    loaded = datasets.load_from_disk(str(out))
    assert loaded["clip_id"] == mined["clip_id"] and all(os.path.isabs(v) for v in loaded["video"])

    card = read_mined_card(out)
    assert card["video_paths"] == "absolute" and card["source"] == str(folder) and card["source_path"] == str(folder)
    assert card["clip_options"] == {"window": 16, "limit": None}
    assert card["twin_options"] == report["twin_options"] and card["twin_options"][0]["grid"] == 4
    assert card["report"] == {key: report[key] for key in ("clips", "mined", "failed", "failed_by_reason",
                                                           "bad_files", "patches", "valid_patches", "twins")}
    text = DatasetCard.load(out / "README.md").text
    for name in bad.values():
        assert name in text
    assert "| corrupt_video | 2 |" in text and "| too_few_frames | 1 |" in text and "**absolute**" in text

    bank = load_twin_clips(loaded)
    assert bank.num_clips == 7 and sorted(bank.skipped) == sorted(report["errors"])

    with pytest.raises(FileExistsError, match="--overwrite"):
        save_mined_dataset(mined, out, str(folder))
    failed = mined.filter(lambda row: row["mine_error"] != "")
    with pytest.raises(ClipError, match=r"none of the 3 clips could be mined \(corrupt_video 2, too_few_frames 1\).*"
                                        r"audio.mp4.*nothing was written"):
        save_mined_dataset(failed, tmp_path / "empty", str(folder))
    assert not (tmp_path / "empty").exists()
