"""Sharded, resumable, distributed mining into a Hub-style Parquet folder (issue 14 parts 1 and 2;
``mimcl_hub.data.shards`` / ``mined_folder`` / ``streaming``).

Real video files (procedural scenes written losslessly with PyAV, 48x48, 12 frames), real ``accelerate launch``
processes (``ACCELERATE_USE_CPU=1 --multi_gpu --num_processes 2``), a real SIGKILL, real Parquet files read back
with ``datasets.load_dataset``, and a Hub-compatible server on 127.0.0.1 for ``--push_to_hub``. The reference for
"the union of the shards equals a one-process mine" is ``mine_dataset`` over the whole clip dataset, in this
process: same rows, same twins, same MI, same crop bytes."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest

from mimcl_hub.cli import main
from mimcl_hub.data import (MinedFolderError, is_mined_folder, load_clip_source, load_mined_folder, mine_dataset,
                            mined_folder_problem)
from mimcl_hub.data.dataset_card import read_mined_card

sys.path.insert(0, os.path.dirname(__file__))
from hub_server import HubServer, client_env  # noqa: E402

NUM_VIDEOS, FRAMES, SIDE = 24, 12, 48
FLAGS = ["--window", str(FRAMES), "--grid", "4", "--max_side", str(SIDE)]


def _write_video(path: Path, frames: np.ndarray) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=25)                 # lossless: the frames decode bit for bit
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "bgr0"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def _scene(seed: int) -> np.ndarray:
    from mimcl_hub.data import render_scene

    return render_scene(seed, num_frames=FRAMES, height=SIDE, width=SIDE, num_groups=1, num_distractors=1,
                        entity_size=(10, 12), max_excursion=4.0).frames


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("corpus") / "videos"
    folder.mkdir()
    for i in range(NUM_VIDEOS):
        _write_video(folder / f"v{i:02d}.mkv", _scene(i))
    return folder


def _canon(ds: datasets.Dataset) -> dict:
    """clip_id -> the row as JSON (NaN stays NaN), crop images as the sha256 of their JPEG bytes."""
    if "crop_image" in ds.column_names:
        ds = ds.cast_column("crop_image", datasets.Sequence(datasets.Image(decode=False)))
    out = {}
    for row in ds:
        row = dict(row)
        if "crop_image" in row:
            row["crop_image"] = [hashlib.sha256(image["bytes"]).hexdigest() for image in row["crop_image"]]
        out[row["clip_id"]] = json.dumps(row, sort_keys=True, default=str)
    return out


@pytest.fixture(scope="module")
def reference(videos) -> dict:
    """The one-process mine of the whole clip dataset (no shards, no accelerate)."""
    clips = load_clip_source(str(videos), window=FRAMES)
    mined = mine_dataset(clips, max_side=SIDE, grid=4, crop_size=64)
    assert sum(int((np.asarray(t) >= 0).sum()) for t in mined["twin"]) > 20     # the scenes do give twins
    return _canon(mined)


@pytest.fixture(scope="module")
def three_shards(videos, tmp_path_factory) -> Path:
    """A complete mine of the videos in 3 shards (in this process); tests copy it."""
    out = tmp_path_factory.mktemp("mined3") / "mined"
    assert main(["mine", str(videos), "--output", str(out), "--num_shards", "3", *FLAGS]) == 0
    return out


def _copy(folder: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy" / folder.name
    shutil.copytree(folder, target)
    return target


def _digests(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _shard_files(out: Path) -> list[str]:
    return sorted(p.name for p in (out / "data").glob("train-*.parquet"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra) -> dict:
    return dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONUNBUFFERED="1", **extra)


def _launch_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(_free_port()), "-m", "mimcl_hub.cli", "mine", *map(str, args)]


def _launch(*args) -> subprocess.CompletedProcess:
    return subprocess.run(_launch_cmd(*args), env=_env(ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1"),
                          capture_output=True, text=True, timeout=600)


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL ``proc`` and every process under it at once (torchrun starts its workers in sessions of their own, so
    killing the launcher's process group would leave them running)."""
    import psutil

    root = psutil.Process(proc.pid)
    tree = [root] + root.children(recursive=True)
    for process in tree:
        try:
            process.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(tree, timeout=60)
    assert not alive, alive


def _process_lines(err: str) -> dict:
    """rank -> (shards mined, shards skipped) from the processes' last log lines."""
    found = {}
    for rank, mined, skipped in re.findall(r"process (\d+) of \d+: mined shards \[([\d, ]*)\], skipped \[([\d, ]*)\]",
                                           err):
        found[int(rank)] = ({int(i) for i in mined.split(",") if i.strip()},
                            {int(i) for i in skipped.split(",") if i.strip()})
    return found


def _mimcl(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mimcl_hub.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=600, env=env or _env())


def _run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ============================================================================================ two processes


def test_two_processes_mine_disjoint_shards_whose_union_is_the_one_process_mine(videos, reference, tmp_path):
    out = tmp_path / "mined"
    proc = _launch(videos, "--output", out, "--num_shards", 4, *FLAGS)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert _process_lines(proc.stderr) == {0: ({0, 2}, set()), 1: ({1, 3}, set())}    # round robin, disjoint
    report = json.loads(proc.stdout)                                  # only the main process prints the report
    assert report["complete"] and report["clips"] == NUM_VIDEOS and report["shards_done"] == 4

    names = _shard_files(out)
    assert names == [f"train-{i:05d}-of-00004.parquet" for i in range(4)]
    ids = [pq.read_table(out / "data" / name, columns=["clip_id"])["clip_id"].to_pylist() for name in names]
    assert [len(i) for i in ids] == [6, 6, 6, 6] and len(set(sum(ids, []))) == NUM_VIDEOS   # disjoint
    assert sum(ids, []) == sorted(reference)                          # contiguous: shard i = clips 6i .. 6i + 5

    loaded = datasets.load_dataset(str(out), split="train")
    assert len(loaded) == NUM_VIDEOS and _canon(loaded) == reference
    assert mined_folder_problem(out) is None and is_mined_folder(out)
    block = read_mined_card(out)
    assert (block["layout"], block["num_shards"], block["shard_rows"]) == ("parquet", 4, [6, 6, 6, 6])
    assert block["report"]["twins"] == report["twins"] > 0 and block["crop_options"]["crop_size"] == 64
    assert (block["window"], block["grid"], block["max_side"]) == (FRAMES, 4, SIDE)
    assert block["shard_bytes"] == [(out / "data" / n).stat().st_size for n in names]


def test_killed_half_way_the_rerun_mines_only_the_missing_shards(videos, reference, tmp_path):
    out = tmp_path / "mined"
    args = (videos, "--output", out, "--num_shards", 8, *FLAGS)
    log = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen(_launch_cmd(*args), env=_env(ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1"),
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while not (out / "data").is_dir() or not _shard_files(out):
        assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "first.log").read_text()[-3000:]
        time.sleep(0.02)
    _kill_tree(proc)                                                  # the launcher and both processes, at once
    proc.wait(timeout=60)
    log.close()
    done = {name: (os.stat(out / "data" / name).st_ino, os.stat(out / "data" / name).st_mtime_ns)
            for name in _shard_files(out)}
    assert 1 <= len(done) < 8 and not (out / "README.md").exists()
    problem = mined_folder_problem(out)
    assert "not finished" in problem and "rerun the same" in problem

    again = _launch(*args)
    assert again.returncode == 0, again.stderr[-4000:]
    for name, stamp in done.items():                                  # finished shards untouched
        path = out / "data" / name
        assert (os.stat(path).st_ino, os.stat(path).st_mtime_ns) == stamp, name
    processes = _process_lines(again.stderr)
    skipped = set().union(*(s for _, s in processes.values()))
    mined = set().union(*(m for m, _ in processes.values()))
    assert {f"train-{i:05d}-of-00008.parquet" for i in skipped} == set(done)
    assert mined == set(range(8)) - skipped                           # only what was missing
    assert again.stderr.count("is already mined: skipped") == len(done)
    loaded = datasets.load_dataset(str(out), split="train")          # hidden leftovers of the kill are not rows
    assert len(loaded) == NUM_VIDEOS and _canon(loaded) == reference and mined_folder_problem(out) is None


# ============================================================================================ job arrays


def test_job_array_the_job_that_finishes_the_last_shard_writes_the_card(videos, reference, tmp_path, capsys):
    out = tmp_path / "mined"
    first = [subprocess.Popen([sys.executable, "-m", "mimcl_hub.cli", "mine", str(videos), "--output", str(out),
                               "--num_shards", "3", "--shard_index", str(i), *FLAGS], env=_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in (0, 1)]
    results = [p.communicate(timeout=600) for p in first]             # two jobs starting at once: one creates DIR
    for p, (stdout, stderr) in zip(first, results):
        assert p.returncode == 0, stderr[-3000:]
        assert json.loads(stdout)["complete"] is False
    assert _shard_files(out) == ["train-00000-of-00003.parquet", "train-00001-of-00003.parquet"]
    assert not (out / "README.md").exists() and "train-00002-of-00003.parquet" in mined_folder_problem(out)

    code, stdout, err = _run(capsys, "mine", videos, "--output", out, "--num_shards", 3, "--shard_index", 2, *FLAGS)
    assert code == 0, err
    report = json.loads(stdout)
    assert report["complete"] and report["shards_mined"] == [2] and report["clips"] == NUM_VIDEOS
    assert mined_folder_problem(out) is None
    assert _canon(datasets.load_dataset(str(out), split="train")) == reference
    card = (out / "README.md").read_bytes()
    code, stdout, err = _run(capsys, "mine", videos, "--output", out, "--num_shards", 3, "--shard_index", 1, *FLAGS)
    assert code == 0 and json.loads(stdout)["shards_skipped"] == [1], err
    assert (out / "README.md").read_bytes() == card                    # the same card, whoever writes it


# ============================================================================================ bad input


def test_another_shard_count_or_setting_is_refused_naming_the_flag(videos, three_shards, tmp_path, capsys):
    out = _copy(three_shards, tmp_path)
    before = _digests(out)
    code, _, err = _run(capsys, "mine", videos, "--output", out, "--num_shards", 4, *FLAGS)
    assert code == 2 and "holds 3 of the 3 shards of a mine with --num_shards 3" in err, err
    assert "rerun with --num_shards 3" in err
    code, _, err = _run(capsys, "mine", videos, "--output", out, "--k", 3, *FLAGS)
    assert code == 2 and "--k 5 (this run: 3)" in err and "rerun with the same settings" in err, err
    code, _, err = _run(capsys, "mine", videos, "--output", out, "--crop_size", 0, *FLAGS)
    assert code == 2 and "--crop_size 64 (this run: None)" in err, err
    assert _digests(out) == before                                    # nothing changed, nothing lost
    code, stdout, err = _run(capsys, "mine", videos, "--output", out, *FLAGS)   # no --num_shards: the folder's K
    assert code == 0 and json.loads(stdout)["shards_skipped"] == [0, 1, 2], err


@pytest.mark.parametrize("damage", ["garbage", "truncated", "other_shard", "foreign"])
def test_a_corrupt_or_foreign_shard_is_an_error_naming_it_and_nothing_mined_is_lost(videos, three_shards, tmp_path,
                                                                                   capsys, damage):
    out = _copy(three_shards, tmp_path)
    (out / "README.md").unlink()                                       # a mine under way: shard 2 not done yet
    (out / "data" / "train-00002-of-00003.parquet").unlink()
    shard1 = out / "data" / "train-00001-of-00003.parquet"
    named = shard1
    if damage == "garbage":
        shard1.write_bytes(b"not parquet" * 1000)
    elif damage == "truncated":
        shard1.write_bytes(shard1.read_bytes()[:-100])
    elif damage == "other_shard":                                      # a valid Parquet file with other rows
        shutil.copy(out / "data" / "train-00000-of-00003.parquet", shard1)
    else:                                                              # a file this mine never wrote
        named = out / "data" / "train-00002-of-00003.parquet"
        shutil.copy(shard1, named)
    before = _digests(out)
    code, _, err = _run(capsys, "mine", videos, "--output", out, *FLAGS)
    assert code == 2 and "Traceback" not in err, err
    assert f"{named}:" in err and "does not count as mined" in err and "rerun the same command" in err
    assert _digests(out) == before                                    # nothing deleted or rewritten
    if damage != "foreign":
        problem = mined_folder_problem(three_shards)                  # the intact original is complete
        assert problem is None
        complete = _copy(three_shards, tmp_path / "c")
        (complete / "data" / "train-00001-of-00003.parquet").write_bytes(shard1.read_bytes())
        assert "train-00001-of-00003.parquet" in mined_folder_problem(complete)


def test_a_stray_parquet_file_in_data_is_a_shard_count_mismatch(videos, three_shards, tmp_path, capsys):
    out = _copy(three_shards, tmp_path)
    shutil.copy(out / "data" / "train-00000-of-00003.parquet", out / "data" / "train-00000-of-00004.parquet")
    assert "shard count mismatch" in mined_folder_problem(out)
    code, _, err = _run(capsys, "mine", videos, "--output", out, *FLAGS)
    assert code == 2 and "train-00000-of-00004.parquet" in err and "not shards of this mine" in err, err


def test_a_source_without_clips_is_refused_and_nothing_is_written(videos, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = _run(capsys, "mine", empty, "--output", tmp_path / "a", *FLAGS)
    assert code == 2 and str(empty) in err and not (tmp_path / "a").exists()
    code, _, err = _run(capsys, "mine", videos, "--output", tmp_path / "b", "--num_shards", 30, *FLAGS)
    assert code == 2 and "--num_shards 30 is more than the 24 clips" in err and not (tmp_path / "b").exists()
    rows = tmp_path / "rows"                                           # a data-file dataset with no row at all
    (rows / "data").mkdir(parents=True)
    features = datasets.Features({"clip_id": datasets.Value("string"),
                                  "frames": datasets.Array4D((FRAMES, SIDE, SIDE, 3), "uint8")})
    datasets.Dataset.from_dict({"clip_id": [], "frames": []}, features=features).to_parquet(
        str(rows / "data" / "train-00000-of-00001.parquet"))
    code, _, err = _run(capsys, "mine", rows, "--output", tmp_path / "c", "--streaming", *FLAGS)
    assert code == 2 and "none of the 0 clips could be mined" in err and not (tmp_path / "c").exists(), err


SHARD_FLAG_BAD = [(["--shard_index", "0"], "--shard_index needs --num_shards"),
                  (["--shard_index", "3", "--num_shards", "3"], "out of range for --num_shards 3"),
                  (["--shard_index", "0", "--num_shards", "3", "--overwrite"], "--overwrite with --shard_index"),
                  (["--num_shards", "0"], "--num_shards"), (["--crop_size", "4"], "--crop_size"),
                  (["--crop_context", "0.5"], "--crop_context"), (["--push_to_hub", "not a repo"], "--push_to_hub"),
                  (["--streaming", "--num_proc", "2"], "--num_proc 2 does not apply with --streaming")]


@pytest.mark.parametrize("flags,message", SHARD_FLAG_BAD, ids=[m for _, m in SHARD_FLAG_BAD])
def test_shard_and_crop_flags_are_checked_before_any_work(tmp_path, capsys, flags, message):
    code, _, err = _run(capsys, "mine", tmp_path / "no_such_source", "--output", tmp_path / "o", *flags)
    assert code == 2 and message in err and "no_such_source" not in err, err
    assert not (tmp_path / "o").exists()


def test_strict_names_the_row_of_the_whole_dataset_and_keeps_the_finished_shards(videos, tmp_path, capsys):
    folder = tmp_path / "videos"
    folder.mkdir()
    for i in range(6):
        shutil.copy(videos / f"v{i:02d}.mkv", folder / f"v{i:02d}.mkv")
    (folder / "v03.mkv").write_bytes(b"\0" * 5000)                    # row 3: the first row of shard 1 of 2
    out = tmp_path / "mined"
    code, _, err = _run(capsys, "mine", folder, "--output", out, "--num_shards", 2, "--strict", *FLAGS)
    assert code == 2 and "row 3:" in err and "v03.mkv" in err, err
    assert _shard_files(out) == ["train-00000-of-00002.parquet"]     # shard 0 is kept for the rerun
    code, stdout, err = _run(capsys, "mine", folder, "--output", out, *FLAGS)   # without --strict: resumed
    report = json.loads(stdout)
    assert code == 0 and report["shards_skipped"] == [0] and report["shards_mined"] == [1]
    assert list(report["errors"]) == ["3"] and report["failed"] == 1
    assert "| 3 | v03.mkv@0+0 |" in (out / "README.md").read_text()


def test_folder_parts_concatenate_to_the_whole_folder(videos, tmp_path):
    """``folder_clips(part=(i, n))``: the processes of a launch scan a folder together; the parts in order are the
    whole folder's clip dataset, and a part of bad files only is rows with reasons, not an error."""
    from mimcl_hub.data import folder_clips

    folder = tmp_path / "videos"
    folder.mkdir()
    for i in range(5):
        shutil.copy(videos / f"v{i:02d}.mkv", folder / f"v{i:02d}.mkv")
    (folder / "v05.mkv").write_bytes(b"\0" * 5000)
    whole = folder_clips(folder, window=FRAMES, on_error="mark")
    parts = [folder_clips(folder, window=FRAMES, on_error="mark", part=(i, 4)) for i in range(4)]
    assert [len(part) for part in parts] == [2, 2, 1, 1] and parts[3]["scan_reason"] == ["corrupt_video"]
    assert datasets.concatenate_datasets(parts).to_list() == whole.to_list()
    assert len(folder_clips(folder, window=FRAMES, on_error="mark", part=(9, 10))) == 0
    with pytest.raises(ValueError, match="part must be"):
        folder_clips(folder, window=FRAMES, part=(4, 4))


# ============================================================================================ the folder


def test_mined_folder_problem_names_what_is_wrong(three_shards, videos, tmp_path):
    from mimcl_hub.data import save_mined_dataset

    assert mined_folder_problem(three_shards) is None
    assert "not a folder" in mined_folder_problem(tmp_path / "nothing")
    assert "no dataset card" in mined_folder_problem(tmp_path)
    clips = load_clip_source(str(videos), window=FRAMES, limit=2)
    save_mined_dataset(mine_dataset(clips, max_side=SIDE, grid=4), tmp_path / "saved", str(videos))
    assert "load it with datasets.load_from_disk" in mined_folder_problem(tmp_path / "saved")
    assert len(datasets.load_from_disk(str(tmp_path / "saved"))) == 2      # save_to_disk folders keep loading

    missing = _copy(three_shards, tmp_path / "m")
    (missing / "data" / "train-00001-of-00003.parquet").unlink()
    assert "1 of the 3 shards the card lists are missing: data/train-00001-of-00003.parquet" in \
        mined_folder_problem(missing)
    grown = _copy(three_shards, tmp_path / "g")
    with open(grown / "data" / "train-00002-of-00003.parquet", "ab") as f:
        f.write(b"\0")
    assert "the card records" in mined_folder_problem(grown)
    with pytest.raises(MinedFolderError, match="missing"):
        load_mined_folder(missing)
    assert len(load_mined_folder(three_shards)) == NUM_VIDEOS
    pushed = _copy(three_shards, tmp_path / "h")                      # as downloaded: no hidden run state
    shutil.rmtree(pushed / ".mimcl")
    assert mined_folder_problem(pushed) is None


def test_two_folders_of_one_name_load_their_own_rows_and_hidden_files_are_not_rows(videos, tmp_path, capsys):
    """``datasets`` keys the cache of a folder with a ``configs`` card on the card alone: the card has none, so two
    mines named ``mined`` (and one mined again with --overwrite) never load each other's rows."""
    a, b = tmp_path / "a" / "mined", tmp_path / "b" / "mined"
    assert _run(capsys, "mine", videos, "--output", a, "--limit", 3, *FLAGS)[0] == 0
    assert _run(capsys, "mine", videos, "--output", b, "--limit", 5, "--crop_size", 0, *FLAGS)[0] == 0
    first, second = datasets.load_dataset(str(a), split="train"), datasets.load_dataset(str(b), split="train")
    assert (len(first), len(second)) == (3, 5)
    assert "crop_image" in first.column_names and "crop_image" not in second.column_names     # --crop_size 0
    assert _run(capsys, "mine", videos, "--output", a, "--limit", 4, "--overwrite", *FLAGS)[0] == 0
    assert len(datasets.load_dataset(str(a), split="train")) == 4
    shutil.copy(a / "data" / "train-00000-of-00001.parquet", a / "data" / ".tmp-train-00000-of-00001.parquet-x")
    shutil.copy(a / "data" / "train-00000-of-00001.parquet", a / "data" / ".hidden.parquet")
    assert len(datasets.load_dataset(str(a), split="train")) == 4
    assert (a / ".mimcl" / "clips").is_dir() and (a / ".mimcl" / "mine.json").is_file()   # the run state
    assert not list((a / ".mimcl" / "cache").iterdir())             # the map's Arrow files went with each shard


def test_exclusive_folder_is_created_once_and_atomic_file_replaces_or_leaves_nothing(tmp_path):
    from mimcl_hub._atomic import atomic_file, exclusive_folder

    target = tmp_path / "made"
    with exclusive_folder(target) as tmp:
        (tmp / "a.txt").write_text("1")
        assert not target.exists()                                    # appears whole, at the end
    assert (target / "a.txt").read_text() == "1"
    with pytest.raises(FileExistsError):
        with exclusive_folder(target) as tmp:
            (tmp / "a.txt").write_text("2")
    assert (target / "a.txt").read_text() == "1" and [p.name for p in tmp_path.iterdir()] == ["made"]
    path = tmp_path / "file.bin"
    with pytest.raises(RuntimeError):
        with atomic_file(path) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert not path.exists() and [p.name for p in tmp_path.iterdir()] == ["made"]
    with atomic_file(path) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".tmp-file.bin-")
        tmp.write_bytes(b"whole")
    assert path.read_bytes() == b"whole" and sorted(p.name for p in tmp_path.iterdir()) == ["file.bin", "made"]


# ============================================================================================ streaming


def _frames_dataset(folder: Path, n: int, files: int) -> datasets.Dataset:
    features = datasets.Features({"clip_id": datasets.Value("string"),
                                  "frames": datasets.Array4D((FRAMES, SIDE, SIDE, 3), "uint8")})
    rows = datasets.Dataset.from_dict({"clip_id": [f"scene{i:02d}" for i in range(n)],
                                       "frames": [_scene(100 + i) for i in range(n)]}, features=features)
    (folder / "data").mkdir(parents=True)
    for i in range(files):
        rows.shard(files, i, contiguous=True).to_parquet(str(folder / "data" / f"train-{i:05d}-of-{files:05d}.parquet"))
    return rows


def test_streaming_a_local_parquet_dataset_equals_the_map_style_mine(tmp_path, capsys):
    source = tmp_path / "clips"
    rows = _frames_dataset(source, 6, files=2)
    expected = _canon(mine_dataset(rows, max_side=SIDE, grid=4, crop_size=64))
    out = tmp_path / "mined"
    code, stdout, err = _run(capsys, "mine", source, "--output", out, "--streaming", *FLAGS)
    assert code == 0, err
    report = json.loads(stdout)
    assert report["complete"] and report["num_shards"] == 2 and report["clips"] == 6    # one shard per source file
    assert read_mined_card(out)["streaming"] is True and mined_folder_problem(out) is None
    assert _canon(datasets.load_dataset(str(out), split="train")) == expected
    other = tmp_path / "mined3"                                        # 3 shards of 2 files: every 3rd example
    code, stdout, err = _run(capsys, "mine", source, "--output", other, "--streaming", "--num_shards", 3, *FLAGS)
    assert code == 0, err
    assert _canon(datasets.load_dataset(str(other), split="train")) == expected
    assert [pq.read_metadata(other / "data" / name).num_rows for name in _shard_files(other)] == [2, 2, 2]
    code, _, err = _run(capsys, "mine", source, "--output", out, *FLAGS)   # the same folder without --streaming
    assert code == 2 and "--streaming on (this run: off)" in err


def test_streaming_a_column_of_video_paths_cuts_windows_while_streaming(videos, tmp_path, capsys):
    source = tmp_path / "index"
    (source / "data").mkdir(parents=True)
    paths = [str(videos / f"v{i:02d}.mkv") for i in range(3)] + [str(tmp_path / "gone.mkv")]
    datasets.Dataset.from_dict({"video": paths, "label": [0, 1, 2, 3]}).to_parquet(
        str(source / "data" / "train-00000-of-00001.parquet"))
    out = tmp_path / "mined"
    code, stdout, err = _run(capsys, "mine", source, "--output", out, "--streaming", *FLAGS)
    assert code == 0, err
    report = json.loads(stdout)
    assert (report["clips"], report["mined"], report["failed_by_reason"]) == (4, 3, {"missing_video": 1})
    mined = datasets.load_dataset(str(out), split="train")
    assert mined["clip_id"][:3] == [f"{p}@0+{FRAMES}" for p in paths[:3]]
    assert mined["video"][:3] == paths[:3] and "gone.mkv" in mined["mine_error"][3]


# ============================================================================================ the Hub


TOKEN = "hf_testtokenABCDwxyz"


def test_push_to_hub_publishes_the_finished_folder(videos, tmp_path):
    out = tmp_path / "mined"
    with HubServer(token=TOKEN, user="tester") as hub:
        env = client_env(hub, tmp_path / "home", TOKEN)
        proc = _mimcl("mine", videos, "--output", out, "--limit", 4, "--push_to_hub", "tester/twins", *FLAGS, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "/datasets/tester/twins/commit/" in json.loads(proc.stdout)["pushed"]
        remote = {p: hashlib.sha256(d).hexdigest() for p, d in hub.files("tester/twins", repo_type="dataset").items()
                  if p != ".gitattributes"}
        local = {p: d for p, d in _digests(out).items() if not p.startswith(".mimcl/")}
        assert remote == local and "data/train-00000-of-00001.parquet" in remote and "README.md" in remote
        script = ("import datasets, json; ds = datasets.load_dataset('tester/twins', split='train'); "
                  "print(json.dumps([len(ds), ds.column_names]))")
        load = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
        assert load.returncode == 0, load.stderr[-3000:]
        count, columns = json.loads(load.stdout.strip().splitlines()[-1])
        assert count == 4 and "twin" in columns and "crop_image" in columns
