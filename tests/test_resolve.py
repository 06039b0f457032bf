"""One source resolver (mimcl_hub.data.resolve, issue 13): the cheap config check, saved / Parquet / scene
sources for `mimcl mine` and training alike, atomic saves, and data/ importing nothing from the upper floors."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import time
from pathlib import Path

import datasets
import numpy as np
import pytest

from mimcl_hub.data import (AugmentConfig, TwinContrastiveDataset, build_train_dataset, bundled_clips, is_saved_dataset,
                            load_clip_frames, load_clip_source, make_scenes, open_source, save_dataset_atomically,
                            source_problem)
from mimcl_hub.errors import ClipError

DATA_DIR = Path(__file__).resolve().parents[1] / "mimcl_hub" / "data"


@pytest.fixture(scope="module")
def scenes():
    return make_scenes(3, num_frames=12)


def test_source_problem_is_cheap_and_knows_every_form(tmp_path):
    start = time.perf_counter()
    for ok in (str(tmp_path), "bundled", "scenes", "scenes:1", "scenes:12", "ORG/NAME", "uoft-cs/cifar10", "cifar10"):
        assert source_problem(ok) is None, ok
    problems = {
        "scenes:0": "scenes:N with N >= 1", "scenes:x": "scenes:N with N >= 1", "scenes:": "scenes:N with N >= 1",
        "/no/such/folder": "'/no/such/folder': no such file or folder", "./missing": "no such file or folder",
        "~/missing-mimcl-data": "no such file or folder", "a/b/c": "no such file or folder",
        "ORG/NAME/": "no such file or folder", "": "must be a path or a dataset id", None: "must be a path",
    }
    for value, text in problems.items():
        problem = source_problem(value)
        assert problem is not None and text in problem, (value, problem)
    assert time.perf_counter() - start < 0.5


def test_config_check_uses_the_resolver(tmp_path):
    from mimcl_hub.train import ConfigError, TrainConfig

    with pytest.raises(ConfigError, match=r"video_dataset.*'scenes:0'.*N >= 1"):
        TrainConfig(output_dir=str(tmp_path / "o"), video_dataset="scenes:0", eval_dataset="none")
    with pytest.raises(ConfigError, match=r"eval_dataset.*'\./nope': no such file or folder; or use 'digits'"):
        TrainConfig(output_dir=str(tmp_path / "o"), eval_dataset="./nope")
    assert TrainConfig(output_dir=str(tmp_path / "o"), video_dataset="scenes:2", eval_dataset="none").video_dataset


def test_is_saved_dataset_accepts_datasets_and_dataset_dicts(tmp_path, scenes):
    scenes.save_to_disk(str(tmp_path / "one"))
    datasets.DatasetDict({"train": scenes, "val": scenes.select([0])}).save_to_disk(str(tmp_path / "dict"))
    assert (tmp_path / "dict" / "dataset_dict.json").exists() and not (tmp_path / "dict" / "state.json").exists()
    assert is_saved_dataset(tmp_path / "one") and is_saved_dataset(str(tmp_path / "dict"))
    (tmp_path / "empty").mkdir()
    assert not is_saved_dataset(tmp_path / "empty") and not is_saved_dataset(tmp_path / "nowhere")
    assert not is_saved_dataset(tmp_path / "one" / "state.json")


def test_load_clip_source_reads_saved_splits_scenes_and_parquet_folders(tmp_path, scenes):
    datasets.DatasetDict({"train": scenes, "val": scenes.select([2])}).save_to_disk(str(tmp_path / "dict"))
    val = load_clip_source(str(tmp_path / "dict"), split="val")
    assert val["clip_id"] == [scenes[2]["clip_id"]]
    with pytest.raises(ValueError, match=r"no split 'test' \(splits: \['train', 'val'\]\)"):
        load_clip_source(str(tmp_path / "dict"), split="test")

    generated = load_clip_source("scenes:2", window=10, seed=3, limit=1)
    assert len(generated) == 1 and generated[0]["clip_id"] == make_scenes(2, seed=3, num_frames=10)[0]["clip_id"]
    assert load_clip_frames(generated[0]).shape[0] == 10

    clips = bundled_clips(window=16, names=["carphone_pristine.mp4"])  # lazy rows in a Hub-style Parquet folder
    (tmp_path / "hub_style" / "data").mkdir(parents=True)
    clips.to_parquet(str(tmp_path / "hub_style" / "data" / "train-00000-of-00001.parquet"))
    again = load_clip_source(str(tmp_path / "hub_style"))
    assert again["clip_id"] == clips["clip_id"] and again["start"] == clips["start"]
    np.testing.assert_array_equal(load_clip_frames(again[3]), load_clip_frames(clips[3]))


def test_open_source_errors_name_the_source(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="clip source .*empty.*no video file"):
        load_clip_source(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match=r"video_dataset '\./missing': no such file or folder"):
        open_source("./missing", what="video_dataset")
    with pytest.raises(ValueError, match="unknown clip source 'no_such_thing'.*Hub dataset failed"):
        load_clip_source("no_such_thing")                        # offline in the tests (HF_HUB_OFFLINE=1)
    datasets.Dataset.from_dict({"label": [1, 2]}).save_to_disk(str(tmp_path / "labels"))
    with pytest.raises(ClipError, match="no video column 'video'.*label"):
        load_clip_source(str(tmp_path / "labels"))
    with pytest.raises(ValueError, match="limit"):
        load_clip_source("scenes:1", limit=0)


def test_build_train_dataset_reads_scene_sources(tmp_path):
    """``--video_dataset scenes:N`` passes the config check, so training reads it too (mined on the way)."""
    ds = build_train_dataset("scenes:1", "mi", AugmentConfig(img_size=16), seed=4, max_side=64)
    assert isinstance(ds, TwinContrastiveDataset) and ds.bank.num_clips == 1 and ds.num_pairs > 0
    assert tuple(ds.bank.frames[0].shape) == (24, 3, 64, 64) and ds.bank.mined is not None
    assert ds.bank.clip_ids == make_scenes(1, num_frames=24)["clip_id"]  # scene seed 0, whatever the training seed


def test_save_dataset_atomically(tmp_path, scenes):
    out = save_dataset_atomically(scenes, tmp_path / "saved")
    assert out == str(tmp_path / "saved") and datasets.load_from_disk(out)["clip_id"] == scenes["clip_id"]
    with pytest.raises(FileExistsError, match="--overwrite"):
        save_dataset_atomically(scenes, out)
    save_dataset_atomically(scenes.select([0]), out, overwrite=True)
    assert len(datasets.load_from_disk(out)) == 1
    with pytest.raises(AttributeError):  # a save that fails half-way leaves nothing behind
        save_dataset_atomically(object(), tmp_path / "broken")
    assert sorted(os.listdir(tmp_path)) == ["saved"]


def test_data_imports_point_down():
    """mimcl_hub/data imports nothing from train, cli, hub or eval (no import circle through the CLI)."""
    upper = ("train", "cli", "hub", "eval")
    for path in sorted(DATA_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                absolute = module if node.level == 0 else "mimcl_hub." + module if node.level == 2 else ""
                assert not absolute.startswith(tuple(f"mimcl_hub.{u}" for u in upper)), (path.name, module)
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith(tuple(f"mimcl_hub.{u}" for u in upper)) for a in node.names), path.name
    code = ("import sys, mimcl_hub.data; bad = sorted(m for m in sys.modules if m.split('.')[:2] in "
            "[['mimcl_hub', u] for u in ('train', 'cli', 'hub', 'eval')]); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ})
    assert not (DATA_DIR.parent / "train" / "data.py").exists()
