"""Two data sources for two branches (issue 14, parts 3 and 4): the MI branch read from mined crops without videos
(mimcl_hub.data.twin_pairs), an image dataset for the view branch joined with it (mimcl_hub.data.two_sources), the
flags, the resume identity and a 2-process run (disjoint view items per rank, weights in sync, SIGKILL resume).

The twin source is mined the way `mimcl mine` writes it: procedural scenes written as lossless video files, cut
into clips, ``mine_dataset(..., crop_size=64)``, one Parquet shard ``data/train-00000-of-00001.parquet`` and the
dataset card; the videos are then moved away, so anything that tried to decode them would fail."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import av
import datasets
import numpy as np
import pytest
import torch

from mimcl_hub.data import (AugmentConfig, ImageContrastiveDataset, TwinPairDataset, build_train_dataset,
                            build_two_source_dataset, collate_contrastive, folder_clips, make_scenes, mine_dataset,
                            mining_report)
from mimcl_hub.data.augment import Augmenter, Draws
from mimcl_hub.data.twin_pairs import CyclicOrder
from mimcl_hub.data.mined_folder import mined_folder_problem
from mimcl_hub.data.shards import mine_folder
from mimcl_hub.data.two_sources import UnminedSourceError, open_twin_source
from mimcl_hub.train import CheckpointError, ConfigError, FaultPlan, TrainConfig, latest_checkpoint, train

sys.path.insert(0, os.path.dirname(__file__))
from test_train import TINY, _env, _flags, _free_port, _max_diff, _script, _weights  # noqa: E402

S = 16
SCENES = dict(num_frames=12)
#: the twin crops (16 px) are exact windows of the stored crops: no scale jitter, no flip, no colour jitter
PLAIN = AugmentConfig(img_size=S, flip_p=0, jitter_p=0, twin_scale_jitter=0, twin_jitter_strength=0)


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    yield
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def _write_video(path: Path, frames: np.ndarray) -> None:
    """A lossless (FFV1) video of uint8 (T, H, W, 3) frames."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("ffv1", rate=25)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "bgr0"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def write_mined_folder(folder: Path, mined: datasets.Dataset, source: str) -> Path:
    """A one-shard Parquet folder with a dataset card of ``mined`` rows (here: rows repeated to scale a test; `mimcl
    mine` writes real ones)."""
    from mimcl_hub.data.dataset_card import mined_dataset_card

    (folder / "data").mkdir(parents=True)
    mined.to_parquet(str(folder / "data" / "train-00000-of-00001.parquet"))
    mined_dataset_card(mined, source, mining_report(mined), {"window": SCENES["num_frames"]}).save(folder / "README.md")
    return folder


@pytest.fixture(scope="module")
def mined_folder(tmp_path_factory):
    """(mined folder, the scene frames per clip id, the moved-away video folder): 3 scenes as videos, mined with
    crops at full size (128 px, grid 4: patches of 32 px, crops of 64 px = scale 1)."""
    tmp = tmp_path_factory.mktemp("two_sources")
    videos = tmp / "videos"
    videos.mkdir()
    scenes = make_scenes(3, seed=0, **SCENES).with_format("numpy", columns=["frames"], dtype=np.uint8)
    for i in range(len(scenes)):
        _write_video(videos / f"scene{i}.mkv", scenes[i]["frames"])
    clips = folder_clips(videos, window=SCENES["num_frames"])
    folder = tmp / "mined"
    mine_folder(str(videos), folder, window=SCENES["num_frames"], max_side=None, grid=4, significance=0, crop_size=64)
    frames = {row["clip_id"]: scenes[i]["frames"] for i, row in enumerate(clips)}
    gone = tmp / "videos-moved-away"
    videos.rename(gone)                       # nothing may decode them from here on
    return folder, frames, gone


@pytest.fixture(scope="module")
def rows(mined_folder):
    """The mined rows as Python (the reference every test checks the datasets against)."""
    ds = datasets.load_dataset(str(mined_folder[0]), split="train")
    return ds.cast_column("crop_image", datasets.Sequence(datasets.Image(decode=False))).to_list()


@pytest.fixture(scope="module")
def digits_folder(tmp_path_factory):
    """An imagefolder of 64 scikit-learn digits (16 px RGB PNGs) with a ``row_id`` column (= the row)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    folder = tmp_path_factory.mktemp("digits") / "train"
    folder.mkdir()
    lines = ["file_name,row_id"]
    for i, image in enumerate(load_digits().images[:64]):
        grey = (image * (255 / 16)).astype(np.uint8)
        Image.fromarray(np.stack([grey] * 3, -1)).resize((S, S)).save(folder / f"{i:03d}.png")
        lines.append(f"{i:03d}.png,{i}")
    (folder / "metadata.csv").write_text("\n".join(lines) + "\n")
    return folder.parent


def _mined(folder) -> datasets.Dataset:
    return datasets.load_dataset(str(folder), split="train")


def _usable(row) -> list[tuple[int, int]]:
    """(anchor, twin) of a row by the definition: both valid, distinct, both with stored crops."""
    has = set(row["crop_patch"])
    return [(a, b) for a, b in enumerate(row["twin"])
            if b >= 0 and a != b and row["twin_valid"][a] and row["twin_valid"][b] and a in has and b in has]


# ------------------------------------------------------------------------------------------------ pairs


def test_mi_pairs_are_the_mined_twins_with_crops(mined_folder, rows):
    pairs = TwinPairDataset(_mined(mined_folder[0]), PLAIN, twin_mode="mi")
    expected = [(r, a, b) for r, row in enumerate(rows) for a, b in _usable(row)]
    assert len(expected) >= 6 and len(pairs) == len(expected)
    assert pairs.counts.rows == 3 and pairs.counts.twins == sum(sum(t >= 0 for t in row["twin"]) for row in rows)
    for j, (r, a, b) in enumerate(expected):
        choice = pairs.describe(j)
        assert (choice.row, choice.anchor, choice.partner) == (r, a, b)
        crop_patch, crop_frame = rows[r]["crop_patch"], rows[r]["crop_frame"]
        assert crop_patch[choice.crop_a] == a and crop_patch[choice.crop_b] == b          # crops of those patches
        assert (choice.frame_a, choice.frame_b) == (crop_frame[choice.crop_a], crop_frame[choice.crop_b])
    crops = set()
    for epoch in range(6):
        pairs.set_epoch(epoch)
        crops.add((pairs.describe(0).crop_a, pairs.describe(0).crop_b))
    assert len(crops) > 1                                    # a random stored crop of each, drawn per epoch


def test_random_partners_are_other_valid_patches_with_crops(mined_folder, rows):
    mi = TwinPairDataset(_mined(mined_folder[0]), PLAIN, twin_mode="mi")
    rnd = TwinPairDataset(_mined(mined_folder[0]), PLAIN, twin_mode="random")
    assert len(rnd) == len(mi)                               # the same anchors
    partners: dict[int, set] = {}
    for epoch in range(8):
        rnd.set_epoch(epoch)
        for j in range(len(rnd)):
            c, m = rnd.describe(j), mi.describe(j)
            row = rows[c.row]
            assert (c.row, c.anchor) == (m.row, m.anchor)
            assert c.partner != c.anchor and row["twin_valid"][c.partner] and c.partner in row["crop_patch"]
            assert row["crop_patch"][c.crop_b] == c.partner
            partners.setdefault(j, set()).add(c.partner)
    candidates = {j: len({p for p in rows[mi.describe(j).row]["crop_patch"] if rows[mi.describe(j).row]["twin_valid"][p]})
                  for j in range(len(mi))}
    assert any(len(partners[j]) > 1 for j in partners if candidates[j] > 2)   # drawn, not the mined twin


def test_twin_crops_are_the_frame_windows_around_the_tracked_patch(mined_folder, rows):
    """The twin crop cut from the stored crop (around crop_center, side crop_side) is the one the clip-bank dataset
    cuts from the full frame around the tracked centre with the box side, up to the JPEG error of the stored crop
    (4:2:0 chroma: ~15 grey levels on these per-pixel colour textures), far below the error of a window 4 px off."""
    folder, frames, _ = mined_folder
    pairs = TwinPairDataset(_mined(folder), PLAIN, twin_mode="mi")
    aug = Augmenter(PLAIN)
    errors = []
    for j in range(len(pairs)):
        item, choice = pairs[j], pairs.describe(j)
        row = rows[choice.row]
        for key, patch, frame in (("twin_a", choice.anchor, choice.frame_a), ("twin_b", choice.partner, choice.frame_b)):
            x0, y0, x1, y1 = row["twin_boxes"][patch]
            cx, cy = row["twin_tracks"][patch][frame]
            image = torch.from_numpy(np.ascontiguousarray(frames[row["clip_id"]][frame].transpose(2, 0, 1)))
            side = float(np.sqrt((x1 - x0) * (y1 - y0)))
            error = [float((item[key] - aug.twin(image, cx + dx, cy + dy, side, Draws(0))).abs().mean())
                     for dx, dy in ((0, 0), (4, 0), (-4, 0), (0, 4), (0, -4))]
            errors.append((error[0], max(error[1:])))        # a window off by 4 px (one not clamped at the border)
    assert max(right for right, _ in errors) < 0.2                          # normalised units (std ~ 0.25)
    assert all(right < 0.4 * off for right, off in errors), errors


def test_items_are_a_function_of_seed_epoch_and_index(mined_folder, digits_folder):
    def build(seed=0):
        return build_two_source_dataset(str(digits_folder), str(mined_folder[0]), "mi", AugmentConfig(img_size=S),
                                        seed)

    a, b = build(), build()
    for i in (0, 5, 63):
        x, y = a[i], b[i]
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
    a.set_epoch(1)
    assert not torch.equal(a[5]["twin_a"], b[5]["twin_a"]) and not torch.equal(a[5]["view1"], b[5]["view1"])
    assert not torch.equal(build(seed=1)[5]["view1"], b[5]["view1"])
    b.set_epoch(1)
    assert all(torch.equal(a[5][k], b[5][k]) for k in a[5])

    def batches(workers):
        b.set_epoch(2)
        loader = torch.utils.data.DataLoader(b, batch_size=8, sampler=range(0, 64, 3), num_workers=workers,
                                             collate_fn=collate_contrastive)
        return list(loader)

    for x, y in zip(batches(0), batches(2)):                 # workers give the same batches
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x if torch.is_tensor(x[k]))
        assert x["view_index"].tolist() == y["view_index"].tolist()


def test_joined_items_cycle_the_twin_source(mined_folder, digits_folder):
    ds = build_two_source_dataset(str(digits_folder), str(mined_folder[0]), "mi", AugmentConfig(img_size=S), 0,
                                  twins_per_item=2)
    m, n = ds.pairs.num_pairs, len(ds)
    assert n == 64 and m < 2 * n                              # an epoch is the view dataset; pairs cycle
    item = ds[3]
    assert item["twin_a"].shape == (2, 3, S, S) and item["twin_valid"].tolist() == [True, True]
    assert int(item["view_index"]) == 3
    views = ImageContrastiveDataset(datasets.load_dataset(str(digits_folder), split="train"), AugmentConfig(img_size=S))
    assert torch.equal(item["view1"], views[3]["view1"])     # the view branch is the image dataset's item
    slots = [j for epoch in range(3) for i in range(n) for j in ds.pair_indices(i, epoch)]
    for start in range(0, len(slots) - m + 1, m):            # every pass over the pairs uses each pair once
        assert sorted(slots[start:start + m]) == list(range(m))
    assert ds.describe(3).pairs == ds.pair_indices(3)
    batch = collate_contrastive([ds[i] for i in range(4)])
    assert batch["twin_count"] == 8 and batch["view_index"].tolist() == [0, 1, 2, 3]
    none = build_two_source_dataset(str(digits_folder), None, "none", AugmentConfig(img_size=S), 0)
    assert none.pairs is None and set(none[0]) == {"view1", "view2", "view_index"}


@pytest.mark.parametrize("size", [1, 2, 7, 12, 60, 97])
def test_cyclic_order_is_one_permutation_per_pass(size):
    order = CyclicOrder(size, seed=3)
    passes = [[order(c * size + q) for q in range(size)] for c in range(4)]
    assert all(sorted(p) == list(range(size)) for p in passes)
    if size > 2:
        assert len({tuple(p) for p in passes}) > 1          # another order each pass
    assert [order(s) for s in range(size)] == passes[0]      # a function of the slot only


def test_the_pair_dataset_pickles_small_and_holds_no_images(mined_folder, tmp_path):
    one = _mined(mined_folder[0])
    ten = _mined(write_mined_folder(tmp_path / "ten", datasets.concatenate_datasets([one] * 10), "scenes"))
    small, big = (TwinPairDataset(d, AugmentConfig(img_size=S)) for d in (one, ten))
    assert len(big) == 10 * len(small)
    sizes = [len(pickle.dumps(d)) for d in (small, big)]
    assert sizes[0] < 32_000 and sizes[1] - sizes[0] <= 16 * (len(ten) - len(one))   # a few bytes per clip row
    for dataset in (small, big):
        dataset[0]                                       # after reading, still nothing decoded is kept

        def arrays(obj, seen=()):
            for value in vars(obj).values():
                if isinstance(value, (np.ndarray, torch.Tensor)):
                    yield value.nbytes if isinstance(value, np.ndarray) else value.numel() * value.element_size()
                elif hasattr(value, "__dict__") and not isinstance(value, datasets.Dataset):
                    yield from arrays(value)

        assert sum(arrays(dataset)) <= 8 * (dataset.num_rows + 1) + 256     # the offsets, the epoch, mean / std
        assert pickle.loads(pickle.dumps(dataset))._table is None        # the raw Arrow table is never pickled
        assert all(f["filename"].endswith(".arrow") for f in dataset.rows.cache_files)      # memory-mapped
    copy = pickle.loads(pickle.dumps(big))
    assert all(torch.equal(copy[7][k], big[7][k]) for k in ("twin_a", "twin_b"))


# ------------------------------------------------------------------------------------------------ bad input


def test_a_twin_dataset_without_pairs_names_the_counts(mined_folder):
    no_twins = _mined(mined_folder[0]).map(lambda row: {"twin": [-1] * len(row["twin"])})
    with pytest.raises(ValueError, match=r"no twin pairs: 3 rows \(0 failed mining\), \d+ valid patches, 0 twins") as err:
        TwinPairDataset(no_twins, AugmentConfig(img_size=S), source="--twin_dataset 'x'")
    assert "--significance 0" in str(err.value) and "--twin_mode none" in str(err.value)


def test_a_train_dataset_without_an_image_column_names_its_columns(tmp_path, mined_folder):
    folder = tmp_path / "numbers"
    datasets.Dataset.from_dict({"x": [1, 2, 3], "label": [0, 1, 0]}).save_to_disk(str(folder))
    with pytest.raises(ValueError, match=r"--train_dataset .*numbers': no image column .* its columns are \['x', 'label'\]"):
        build_two_source_dataset(str(folder), str(mined_folder[0]), "mi", AugmentConfig(img_size=S), 0)
    with pytest.raises(ValueError, match="no image column 'picture'"):
        build_two_source_dataset(str(folder), None, "none", AugmentConfig(img_size=S), 0, image_column="picture")
    with pytest.raises(ValueError, match="a clip source"):
        build_two_source_dataset("scenes:2", None, "none", AugmentConfig(img_size=S), 0)


def _unmined_sources(tmp: Path, mined: Path) -> dict:
    """name: (twin source, the SOURCE its refusal's `mimcl mine` command must name)."""
    from mimcl_hub.data.dataset_card import read_mined_card

    video = tmp / "clip.mkv"
    _write_video(video, np.random.default_rng(0).integers(0, 255, (12, 64, 64, 3), np.uint8))
    videos = tmp / "videos"
    videos.mkdir()
    shutil.copy(video, videos / "a.mkv")
    clips = tmp / "clips"
    folder_clips(videos, window=12).save_to_disk(str(clips))
    plain = tmp / "mined-without-crops"
    mine_dataset(make_scenes(1, seed=0, **SCENES), max_side=None, grid=4).save_to_disk(str(plain))
    unfinished = tmp / "unfinished"
    shutil.copytree(mined, unfinished)
    (unfinished / "data" / "train-00000-of-00001.parquet").rename(unfinished / "data" / "train-00000-of-00002.parquet")
    no_card = tmp / "no-card"
    shutil.copytree(mined, no_card)
    (no_card / "README.md").unlink()
    return {"bundled": ("bundled", "bundled"), "scenes": ("scenes:4", "scenes:4"), "video file": (str(video), str(video)),
            "folder of videos": (str(videos), str(videos)), "clip dataset": (str(clips), str(clips)),
            "mined without crops": (str(plain), "SOURCE"),
            "missing shard": (str(unfinished), read_mined_card(mined)["source"]), "no card": (str(no_card), "SOURCE")}


def test_unmined_twin_sources_are_refused_with_the_mine_command(tmp_path, mined_folder):
    folder = mined_folder[0]
    for name, (source, mine_from) in _unmined_sources(tmp_path, folder).items():
        with pytest.raises(UnminedSourceError) as err:
            open_twin_source(source)
        message = str(err.value)
        assert f"Training never mines: run `mimcl mine {mine_from} --output " in message, (name, message)
    assert "missing" in mined_folder_problem(tmp_path / "unfinished")
    assert "--output " + str(tmp_path / "unfinished") in str(pytest.raises(UnminedSourceError, open_twin_source,
                                                                          str(tmp_path / "unfinished")).value)
    assert "no dataset card" in mined_folder_problem(tmp_path / "no-card")
    assert mined_folder_problem(folder) is None
    with pytest.raises(ValueError, match="--twin_dataset 'no/such-dataset': cannot be loaded"):
        open_twin_source("no/such-dataset")


def test_an_unmined_video_dataset_is_refused_where_mining_is_not_allowed():
    with pytest.raises(ValueError, match=r"not mined, and a run of several processes never mines it .*"
                                         r"`mimcl mine scenes:2 --output DIR`"):
        build_train_dataset("scenes:2", "mi", AugmentConfig(img_size=S), 0, allow_mining=False)


@pytest.mark.parametrize("flags,expected", [
    (dict(train_dataset="D", twin_mode="mi"), "--twin_dataset: --train_dataset with --twin_mode mi needs --twin_dataset"),
    (dict(train_dataset="D", twin_mode="random"), "needs --twin_dataset"),
    (dict(twin_dataset="D"), "--train_dataset: --twin_dataset needs --train_dataset"),
    (dict(video_dataset="D", train_dataset="D", twin_mode="none"), "--train_dataset: cannot be combined with --video_dataset"),
    (dict(video_dataset="D", train_dataset="D", twin_dataset="D"), "--twin_dataset: cannot be combined with --video_dataset"),
    (dict(train_dataset="D", twin_mode="none", image_column="img"), "--image_column: is the image column of --video_dataset"),
    (dict(train_image_column="img"), "--train_image_column: needs --train_dataset"),
    (dict(train_dataset="D", twin_mode="none", streaming=True, max_steps=-1), "--max_steps: --streaming needs --max_steps"),
    (dict(streaming=True, max_steps=5), "--streaming: needs --train_dataset"),
    (dict(train_dataset="D", twin_mode="none", train_split=""), "--train_split: must be a split name"),
])
def test_incompatible_data_flags_are_refused(tmp_path, flags, expected):
    (tmp_path / "D").mkdir()
    values = {k: str(tmp_path / v) if k.endswith("dataset") else v for k, v in flags.items()}
    with pytest.raises(ConfigError) as err:
        TrainConfig(output_dir=str(tmp_path / "out"), **values)
    assert expected in str(err.value)


def test_the_twin_dataset_may_be_given_with_twin_mode_none(tmp_path):
    (tmp_path / "D").mkdir()
    TrainConfig(output_dir=str(tmp_path / "out"), train_dataset=str(tmp_path / "D"), twin_dataset=str(tmp_path / "D"),
                twin_mode="none")


# ------------------------------------------------------------------------------------------------ training

RUN = dict(TINY, model_name="test_vit", per_device_train_batch_size=8, twin_batch_size=8, save_steps=2)


def _config(out, digits, mined, **overrides) -> TrainConfig:
    return TrainConfig(**{**RUN, "output_dir": str(out), "train_dataset": str(digits), "twin_dataset": str(mined),
                          **overrides})


def test_training_reads_the_pairs_without_videos_and_resume_checks_both_sources(tmp_path, mined_folder,
                                                                                 digits_folder):
    folder, _, moved = mined_folder
    assert not (folder.parent / "videos").exists() and moved.is_dir()      # the mined videos are gone
    out = tmp_path / "run"
    result = train(_config(out, digits_folder, folder, max_steps=4))
    assert result.global_step == 4
    logs = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]
    assert all(d["twin_batch"] == 8 and d["mi_skipped"] == 0 for d in logs if "twin_batch" in d)
    marker = json.loads((latest_checkpoint(out) / "mimcl_checkpoint.json").read_text())
    data = marker["data"]
    assert data["items"] == 64 and data["twin_pairs"] > 0 and data["twin_rows"] == 3 and data["twin_fingerprint"]
    assert marker["config"]["twin_dataset"] == os.path.realpath(folder)
    card = (out / "encoder" / "README.md").read_text()
    assert f"view branch: {digits_folder}" in card and f"mined clips in {folder}" in card
    other = tmp_path / "other-mined"
    shutil.copytree(folder, other)
    with pytest.raises(CheckpointError, match="twin_dataset: checkpoint"):
        train(_config(out, digits_folder, other, max_steps=6, resume_from_checkpoint="latest"))
    with pytest.raises(CheckpointError, match="twin_mode: checkpoint 'mi' vs now 'random'"):
        train(_config(out, digits_folder, folder, max_steps=6, resume_from_checkpoint="latest", twin_mode="random"))
    result = train(_config(out, digits_folder, folder, max_steps=6, resume_from_checkpoint="latest"))
    assert result.global_step == 6


# ------------------------------------------------------------------------------------------------ two processes

TWO = dict(RUN, per_device_train_batch_size=4, twin_batch_size=4, max_steps=10, save_steps=2, check_sync_every=1)


def _launch(out: Path, digits, mined, faults: dict, **flags) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()), *_script(faults),
           *_flags(dict(TWO, output_dir=out, train_dataset=digits, twin_dataset=mined, **flags))]
    return subprocess.Popen(cmd, env=_env(ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1"), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _finish(proc: subprocess.Popen, timeout: int = 300) -> str:
    try:
        log = proc.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    assert proc.returncode == 0, log[-4000:]
    return log


@pytest.fixture(scope="module")
def two_process_reference(tmp_path_factory, mined_folder, digits_folder):
    """An uninterrupted 2-process run (10 steps of 2 x 4 images: 8 steps an epoch) recording each rank's batches."""
    out = tmp_path_factory.mktemp("ddp") / "reference"
    seen = out.parent / "seen"
    _finish(_launch(out, digits_folder, mined_folder[0], {"record_batches": str(seen)}))
    return out, seen


def test_two_processes_see_disjoint_view_items_and_stay_in_sync(two_process_reference):
    out, seen = two_process_reference
    records = {p: [json.loads(line) for line in (seen / f"process-{p}.jsonl").read_text().splitlines()] for p in (0, 1)}
    assert [len(records[p]) for p in (0, 1)] == [10, 10]
    for epoch, batches in ((0, 8), (1, 2)):
        rows = {p: [i for r in records[p] if r["epoch"] == epoch for i in r["view_index"]] for p in (0, 1)}
        assert len(rows[0]) == len(rows[1]) == 4 * batches
        assert not set(rows[0]) & set(rows[1])                              # disjoint view items
        assert len(set(rows[0]) | set(rows[1])) == 8 * batches              # each once in the epoch
    first = {p: set(records[p][0]["view_index"]) for p in (0, 1)}
    epoch1 = {p: set(records[p][8]["view_index"]) for p in (0, 1)}
    assert first != epoch1                                                  # reshuffled each epoch
    logs = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]
    checks = [d for d in logs if "sync_max_diff" in d]
    assert [d["step"] for d in checks] == list(range(1, 11)) and all(d["sync_max_diff"] == 0.0 for d in checks)
    assert all(d["twin_batch"] == 4 for d in logs if "twin_batch" in d)
    assert json.loads((out / "train_results.json").read_text())["num_processes"] == 2


def test_two_processes_resume_after_sigkill_to_the_uninterrupted_weights(two_process_reference, tmp_path,
                                                                         mined_folder, digits_folder):
    """Both ranks are SIGKILLed while writing checkpoint-6 (after it wrote its files, before it is published); the
    resumed 2-process run starts from checkpoint-4 and ends on the uninterrupted run's weights."""
    reference, _ = two_process_reference
    out = tmp_path / "killed"
    proc = _launch(out, digits_folder, mined_folder[0], {"kill_in_checkpoint_at_step": 6})
    log = proc.communicate(timeout=300)[0]
    assert proc.returncode != 0 and not (out / "encoder").exists(), log[-3000:]
    assert (out / "checkpoints" / ".tmp-checkpoint-6").is_dir() and latest_checkpoint(out).name == "checkpoint-4"
    log = _finish(_launch(out, digits_folder, mined_folder[0], None, resume_from_checkpoint="latest"))
    assert "resumed from" in log and "checkpoint-4" in log
    assert _max_diff(_weights(out), _weights(reference)) <= 1e-4


def test_two_processes_refuse_to_mine_a_video_dataset(tmp_path):
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()), *_script(None),
           *_flags(dict(RUN, max_steps=2, output_dir=tmp_path / "out", video_dataset="scenes:2"))]
    proc = subprocess.run(cmd, env=_env(ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1"), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode != 0
    assert "`mimcl mine scenes:2 --output DIR`" in proc.stdout + proc.stderr


# ------------------------------------------------------------------------------------------------ streaming


@pytest.fixture(scope="module")
def saved_mined(mined_folder, tmp_path_factory):
    """The mined rows as a save_to_disk folder (streamed through Arrow: datasets pauses 5 s after every pass over a
    shuffled Parquet stream, and these few clips are passed many times)."""
    folder = tmp_path_factory.mktemp("saved") / "mined"
    _mined(mined_folder[0]).save_to_disk(str(folder))
    return folder


def _stream(digits, mined, rank=0, world=2, mode="mi", seed=0):
    from mimcl_hub.data.two_source_stream import build_streaming_dataset

    return build_streaming_dataset(str(digits), str(mined), mode, AugmentConfig(img_size=S), seed, rank=rank,
                                   world_size=world)


def test_streaming_splits_each_source_by_process_and_reshuffles_each_pass(digits_folder, saved_mined):
    streams = [_stream(digits_folder, saved_mined, rank) for rank in (0, 1)]
    passes = []
    for p in (0, 1):
        seen = []
        for ds in streams:
            ds.views.set_epoch(p)
            seen.append([example["row_id"] for example in ds.views])
        assert not set(seen[0]) & set(seen[1]) and sorted(seen[0] + seen[1]) == list(range(64))   # disjoint, all
        passes.append(seen[0])
    assert passes[0] != passes[1]                                                    # another order each pass


def test_streaming_items_are_deterministic_and_hold_both_branches(digits_folder, saved_mined):
    def first(ds, n=12):
        return [item for _, item in zip(range(n), iter(ds))]

    a, b = first(_stream(digits_folder, saved_mined)), first(_stream(digits_folder, saved_mined))
    for x, y in zip(a, b):
        assert x.keys() == {"view1", "view2", "view_index", "twin_a", "twin_b", "twin_valid"}
        assert all(torch.equal(x[k], y[k]) for k in x)
    assert [int(x["view_index"]) for x in a] == list(range(12))
    other = first(_stream(digits_folder, saved_mined, rank=1))
    assert not torch.equal(a[0]["view1"], other[0]["view1"])
    none = first(_stream(digits_folder, saved_mined, mode="none"), 2)
    assert set(none[0]) == {"view1", "view2", "view_index"}


def test_streaming_reads_a_parquet_mined_folder(digits_folder, mined_folder):
    ds = _stream(digits_folder, mined_folder[0], world=1)
    item = next(iter(ds))
    assert item["twin_a"].shape == (3, S, S) and bool(item["twin_valid"])
    with pytest.raises(UnminedSourceError, match="mimcl mine scenes:2 --output"):
        _stream(digits_folder, "scenes:2")


def test_streaming_training_resumes_to_the_uninterrupted_weights(tmp_path, digits_folder, saved_mined):
    from mimcl_hub.train import TrainingInterrupted

    config = dict(max_steps=6, save_steps=2, streaming=True)
    reference = tmp_path / "reference"
    result = train(_config(reference, digits_folder, saved_mined, **config))
    assert result.global_step == 6
    card = (reference / "encoder" / "README.md").read_text()
    assert "(streamed)" in card
    out = tmp_path / "stopped"
    with pytest.raises(TrainingInterrupted):
        train(_config(out, digits_folder, saved_mined, **config), faults=FaultPlan(sigterm_at_step=3))
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    result = train(_config(out, digits_folder, saved_mined, resume_from_checkpoint="latest", **config))
    assert result.global_step == 6 and result.resumed_from == str(out / "checkpoints" / "checkpoint-4")  # SIGTERM:
    # the checkpoint of the step boundary after the signal
    assert _max_diff(_weights(out), _weights(reference)) <= 1e-4


def test_two_processes_stream_without_splitting_twice(tmp_path, digits_folder, saved_mined):
    """Each process reads its own part of the streams: its batches are its stream's consecutive items (view_index
    0..3, 4..7, ...), not every other batch of a stream split again by Accelerate; the weights stay in sync."""
    out, seen = tmp_path / "stream", tmp_path / "seen"
    _finish(_launch(out, digits_folder, saved_mined, {"record_batches": str(seen)}, streaming=True, max_steps=4))
    for p in (0, 1):
        records = [json.loads(line) for line in (seen / f"process-{p}.jsonl").read_text().splitlines()]
        assert [r["view_index"] for r in records] == [list(range(4 * b, 4 * b + 4)) for b in range(4)]
    logs = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]
    assert [d["sync_max_diff"] for d in logs if "sync_max_diff" in d] == [0.0] * 4
