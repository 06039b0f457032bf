"""Reliability and security (issue 8): bad input, faults and untrusted files, each tried for real.

Every fault / bad input is one parametrized case, so ``pytest -v`` counts what was tried:

- mining: one bad row per kind (zero / one frame, 16-bit, huge, NaN, wrong dtype, missing column, corrupt or
  truncated video, ...) gets its reason code, the map never stops, ``mining_report`` counts the reasons;
- untrusted names: path traversal in file names and repo ids, symlinks leaving an encoder folder,
  ``config.json`` asking timm to read other files, pickles with code;
- configuration ranges: every numeric flag of TrainConfig, TwinOptions, ``mimcl mine`` and ``mimcl eval``;
- Hub faults: a Hub-compatible server on 127.0.0.1 (tests/hub_server.py, LFS on) answers 5xx / 429, drops
  connections, loses the answer of an applied commit, or stores a commit wrongly; the real huggingface_hub
  client runs in one long-lived subprocess and the server counts the attempts;
- disk faults: output_dir through a regular file, on /sys, on a read-only / full / too small tmpfs (mount
  namespaces via ``unshare -m``; skipped with the reason where the sandbox forbids it), and a disk that
  fills up during a run.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch

import mimcl_hub  # noqa: F401  (registers the small-image timm variants)
from mimcl_hub import ClipError
from mimcl_hub._safety import check_number, check_relative_name, check_repo_id, safe_join
from mimcl_hub.data import mine_dataset, mine_twin_patches, mining_report, with_lossless_frames
from mimcl_hub.errors import CLIP_ERROR_REASONS, MAX_FRAME_PIXELS

sys.path.insert(0, os.path.dirname(__file__))
from helpers import mount_namespace_available, save_mined_scenes, save_test_vit_encoder  # noqa: E402
from hub_server import HubServer, client_env  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
rng = np.random.default_rng(0)


def _clip(t=10, h=64, w=64, c=3, dtype=np.uint8, high=256):
    """Random frames: texture everywhere, so tracking finds corners (the content does not matter here)."""
    return np.random.default_rng(1).integers(0, high, size=(t, h, w, c) if c else (t, h, w)).astype(dtype)


# =============================================================================================================
# 1. mining: every kind of bad row gets a reason, nothing stops the map
# =============================================================================================================


def _bad_rows(tmp: Path, bundled: dict) -> dict:
    carphone = bundled["carphone_pristine.mp4"]
    data = open(carphone, "rb").read()
    truncated = tmp / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 3])
    text = tmp / "notes.mp4"
    text.write_text("this is not a video\n" * 20)
    good = _clip()
    nan = good.astype(np.float32)
    nan[2, 3, 4, 0] = np.nan
    inf = good.astype(np.float64)
    inf[0, 0, 0, 1] = np.inf
    return {  # name: (row, expected reason or "" for rows that are converted and mined)
        "zero_frames": ({"frames": np.zeros((0, 64, 64, 3), np.uint8)}, "too_few_frames"),
        "one_frame": ({"frames": good[:1]}, "too_few_frames"),
        "one_frame_list": ({"frames": [good[0]]}, "too_few_frames"),
        "empty_list": ({"frames": []}, "too_few_frames"),
        "fewer_than_ksg_needs": ({"frames": good[:6]}, "too_few_frames"),
        "grey_converted": ({"frames": good[..., 0]}, ""),
        "grey_1ch_converted": ({"frames": good[..., :1]}, ""),
        "rgba_converted": ({"frames": np.concatenate([good, good[..., :1]], -1)}, ""),
        "uint16_scaled": ({"frames": good.astype(np.uint16) * 257}, ""),
        "uint16_strict": ({"frames": good.astype(np.uint16) * 257, "_strict_format": True}, "bad_format"),
        "grey_strict": ({"frames": good[..., 0], "_strict_format": True}, "bad_format"),
        "huge_frames": ({"frames": np.broadcast_to(np.zeros((1, 1, 1, 3), np.uint8), (8, 8193, 8193, 3))},
                        "frames_too_large"),
        "huge_frame_list": ({"frames": [np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (9000, 9000, 3))] * 8},
                            "frames_too_large"),
        "nan": ({"frames": nan}, "non_finite"),
        "inf": ({"frames": inf}, "non_finite"),
        "float_0_1": ({"frames": good / 255.0}, ""),                   # issue 13: [0, 1] floats are scaled by 255
        "float_above_1": ({"frames": good.astype(np.float32)}, "bad_dtype"),   # floats outside [0, 1]: refused
        "bool": ({"frames": good > 128}, "bad_dtype"),
        "complex": ({"frames": good.astype(np.complex64)}, "bad_dtype"),
        "int_above_255": ({"frames": good.astype(np.int32) * 300}, "bad_dtype"),
        "negative_int": ({"frames": good.astype(np.int16) - 300}, "bad_dtype"),
        "strings": ({"frames": "not frames"}, "bad_dtype"),
        "ragged_list": ({"frames": [good[0], good[1, :32]] + [good[2]] * 8}, "bad_shape"),
        "five_dims": ({"frames": good[None]}, "bad_shape"),
        "two_channels": ({"frames": good[..., :2]}, "bad_shape"),
        "channels_first": ({"frames": good.transpose(0, 3, 1, 2)}, "bad_shape"),
        "too_small_for_grid": ({"frames": _clip(h=16, w=16)}, "frames_too_small"),
        "zero_width": ({"frames": np.zeros((10, 64, 0, 3), np.uint8)}, "empty_frames"),
        "missing_columns": ({}, "missing_column"),
        "frames_and_video_none": ({"frames": None, "video": None}, "missing_column"),
        "start_is_a_float": ({"video": carphone, "start": 1.5, "num_frames": 12}, "bad_field"),
        "missing_file": ({"video": str(tmp / "nope.mp4"), "start": 0, "num_frames": 12}, "missing_video"),
        "a_folder_not_a_file": ({"video": str(tmp), "start": 0, "num_frames": 12}, "missing_video"),
        "random_bytes": ({"video_bytes": os.urandom(4000), "start": 0, "num_frames": 12}, "corrupt_video"),
        "empty_bytes": ({"video_bytes": b"", "start": 0, "num_frames": 12}, "corrupt_video"),
        "truncated_mp4": ({"video": str(truncated), "start": 0, "num_frames": 12}, "corrupt_video"),
        "text_named_mp4": ({"video": str(text), "start": 0, "num_frames": 12}, "corrupt_video"),
        "start_beyond_end": ({"video": carphone, "start": 10_000, "num_frames": 12}, "window_out_of_range"),
    }


BAD_ROW_NAMES = [  # the keys of _bad_rows, listed here for the parametrize ids
    "zero_frames", "one_frame", "one_frame_list", "empty_list", "fewer_than_ksg_needs", "grey_converted",
    "grey_1ch_converted", "rgba_converted", "uint16_scaled", "uint16_strict", "grey_strict", "huge_frames",
    "huge_frame_list", "nan", "inf", "float_0_1", "float_above_1", "bool", "complex", "int_above_255", "negative_int", "strings",
    "ragged_list", "five_dims", "two_channels", "channels_first", "too_small_for_grid", "zero_width",
    "missing_columns", "frames_and_video_none", "start_is_a_float", "missing_file", "a_folder_not_a_file",
    "random_bytes", "empty_bytes", "truncated_mp4", "text_named_mp4", "start_beyond_end",
]


@pytest.fixture(scope="module")
def bad_rows(tmp_path_factory, bundled_paths):
    rows = _bad_rows(tmp_path_factory.mktemp("bad_rows"), bundled_paths)
    assert sorted(rows) == sorted(BAD_ROW_NAMES)
    return rows


@pytest.mark.parametrize("name", BAD_ROW_NAMES)
def test_each_bad_row_is_marked_with_its_reason(bad_rows, name):
    row, expected = bad_rows[name]
    row = dict(row)
    strict_format = row.pop("_strict_format", False)
    batch = {"clip_id": [f"clip-{name}", "good"], **{k: [v, None] for k, v in row.items()}}
    batch.setdefault("frames", [None, None])
    batch["frames"][1] = _clip()                                  # a good row after the bad one: still mined
    out = mine_twin_patches(batch, indices=[7, 8], max_side=None, strict_format=strict_format)
    assert out["mine_reason"][0] == expected, out["mine_error"][0]
    assert out["mine_error"][1] == "" and len(out["twin"][1]) == 64           # the map went on
    if expected:
        assert expected in CLIP_ERROR_REASONS
        assert f"clip-{name}" in out["mine_error"][0]                       # the message names the clip
        assert out["twin"][0] == [] and out["twin_frame_size"][0] == [0, 0]
        with pytest.raises(ClipError, match=r"^row 7: .*\[" + expected + r"\]$") as err:   # --strict: row index
            mine_twin_patches(batch, indices=[7, 8], max_side=None, strict_format=strict_format, strict=True)
        assert err.value.reason == expected
    else:
        assert len(out["twin"][0]) == 64 and out["mine_error"][0] == ""


def test_huge_frames_are_refused_without_allocating_them():
    view = np.broadcast_to(np.zeros((1, 1, 1, 3), np.uint8), (8, 8193, 8193, 3))     # 1.6 GB if copied
    assert view.nbytes > 1e9 and 8193 * 8193 > MAX_FRAME_PIXELS
    from mimcl_hub.mi import find_twins

    with pytest.raises(ClipError, match="larger than the limit") as err:
        find_twins(view, clip_id="huge")
    assert err.value.reason == "frames_too_large"


@pytest.fixture(scope="module")
def lazy_mixed(tmp_path_factory, bundled_paths):
    """A lazy video dataset: 2 good windows of the real carphone clip among 4 bad rows."""
    tmp = tmp_path_factory.mktemp("lazy")
    carphone = bundled_paths["carphone_pristine.mp4"]
    data = open(carphone, "rb").read()
    (tmp / "truncated.mp4").write_bytes(data[: len(data) // 3])
    ds = datasets.Dataset.from_dict({
        "clip_id": ["good@0", "truncated@0", "missing@0", "beyond@9000", "good@40", "tail@115"],
        "video": [carphone, str(tmp / "truncated.mp4"), str(tmp / "missing.mp4"), carphone, carphone, carphone],
        "start": [0, 0, 0, 9000, 40, 115],
        "num_frames": [12, 12, 12, 12, 12, None],                       # the last 5 frames: too few for KSG
    })
    folder = tmp / "clips"
    ds.save_to_disk(str(folder))
    return ds, folder, tmp


def test_mining_report_counts_bad_rows_by_reason(lazy_mixed):
    ds, _, _ = lazy_mixed
    mined = mine_dataset(ds, batch_size=2, max_side=96, grid=4)
    report = mining_report(mined)
    assert report["clips"] == 6 and report["mined"] == 2 and report["failed"] == 4
    assert report["failed_by_reason"] == {"corrupt_video": 1, "missing_video": 1, "too_few_frames": 1,
                                          "window_out_of_range": 1}
    assert sorted(report["errors"]) == [1, 2, 3, 5]
    assert mined["mine_reason"] == ["", "corrupt_video", "missing_video", "window_out_of_range", "", "too_few_frames"]


def test_cli_mine_reports_reasons_and_strict_names_the_first_bad_row(lazy_mixed, capsys):
    from mimcl_hub.cli import main
    from mimcl_hub.data import is_mined_folder

    _, folder, tmp = lazy_mixed
    code = main(["mine", str(folder), "--output", str(tmp / "out"), "--max_side", "96", "--grid", "4"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads(captured.out)
    assert report["failed_by_reason"]["corrupt_video"] == 1 and report["mined"] == 2
    assert "4 of 6 clips could not be mined (corrupt_video 1, missing_video 1, too_few_frames 1, " \
           "window_out_of_range 1" in captured.err
    assert (tmp / "out" / "README.md").exists() and is_mined_folder(tmp / "out")      # the Parquet layout
    code = main(["mine", str(folder), "--output", str(tmp / "strict"), "--max_side", "96", "--grid", "4", "--strict"])
    err = capsys.readouterr().err
    assert code == 2 and "row 1: " in err and "truncated" in err and "[corrupt_video]" in err
    assert not (tmp / "strict").exists()                                     # nothing half-written


def test_sixteen_bit_dataset_column_is_scaled_not_wrapped():
    """with_format("numpy", dtype=uint8) wrapped uint16 frames modulo 256 and turned NaN into 0; mining and
    training now read the stored dtype, so 16-bit frames give the same twins as their 8-bit originals."""
    frames8 = _clip(t=8)
    frames16 = frames8.astype(np.uint16) * 257                              # exact: round(x * 255 / 65535) = x
    nan = frames8.astype(np.float32)
    nan[0, 0, 0, 0] = np.nan
    mined = {}
    for name, frames in (("u8", frames8), ("u16", frames16), ("nan", nan)):   # one dtype per column
        ds = datasets.Dataset.from_dict({"clip_id": [name], "frames": [frames]})
        if name == "u16":
            assert with_lossless_frames(ds)[0]["frames"].dtype == np.uint16
        mined[name] = mine_dataset(ds, max_side=None, significance=0, grid=4)[0]
    assert (mined["u8"]["mine_reason"], mined["u16"]["mine_reason"], mined["nan"]["mine_reason"]) == \
        ("", "", "non_finite")
    assert mined["u8"]["twin"] == mined["u16"]["twin"] and mined["u8"]["twin_boxes"] == mined["u16"]["twin_boxes"]
    np.testing.assert_array_equal(np.asarray(mined["u8"]["twin_tracks"]), np.asarray(mined["u16"]["twin_tracks"]))


@pytest.mark.parametrize("case", ["empty", "no_clip_columns", "wrong_column_names"])
def test_dataset_level_problems_fail_clearly(case):
    ds = {"empty": datasets.Dataset.from_dict({"frames": []}),
          "no_clip_columns": datasets.Dataset.from_dict({"clip_id": ["a"], "label": [1]}),
          "wrong_column_names": datasets.Dataset.from_dict({"clip_id": ["a"], "clips": [[1, 2, 3]]})}[case]
    expected = {"empty": "empty", "no_clip_columns": "no 'frames', 'video'",
                "wrong_column_names": "columns: \\['clip_id', 'clips'\\]"}[case]
    with pytest.raises(ClipError, match=expected):
        mine_dataset(ds)


# =============================================================================================================
# 2. untrusted names: path traversal, repo ids, symlinks
# =============================================================================================================

BAD_NAMES = ["../secret", "a/../../b", "..", "/etc/passwd", "~/x", "C:\\x", "a\\..\\b", "", "   ", "a\x00b",
             "./..", "heads/../../x", "//abs", "./"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_safe_join_refuses_traversal(tmp_path, name):
    with pytest.raises(ValueError):
        safe_join(tmp_path, name)


def test_safe_join_refuses_symlinks_out_and_accepts_plain_names(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "link").symlink_to("/etc")
    with pytest.raises(ValueError, match="outside"):
        safe_join(tmp_path, "link/passwd")
    assert safe_join(tmp_path, "sub/./config.json") == tmp_path / "sub" / "config.json"
    assert check_relative_name("heads//model.safetensors") == "heads/model.safetensors"


BAD_REPO_IDS = ["../x", "a/..", "..", "a/b/c", "/abs/x", "name-only", "a/", "/b", "a/b c", "a/b..c", "a--b/c",
                "a/" + "x" * 100, "", None, 12]


@pytest.mark.parametrize("repo_id", BAD_REPO_IDS)
def test_bad_repo_ids_are_refused_everywhere(repo_id, tmp_path):
    from mimcl_hub.hub import PushError, push_encoder
    from mimcl_hub.train import ConfigError, TrainConfig

    with pytest.raises(ValueError):
        check_repo_id(repo_id)
    folder = tmp_path / "enc"
    folder.mkdir()
    for name in ("config.json", "model.safetensors", "README.md"):
        (folder / name).write_text('{"architecture": "test_vit"}')
    with pytest.raises(PushError):
        push_encoder(folder, repo_id, endpoint="http://127.0.0.1:9")             # refused before any request
    if isinstance(repo_id, str) and repo_id:
        with pytest.raises(ConfigError, match="--hub_model_id"):
            TrainConfig(output_dir=str(tmp_path / "o"), hub_model_id=repo_id, eval_dataset="none")


@pytest.mark.parametrize("repo_id", ["../x/y", "a/..", "a/b/c"])
def test_encoder_loader_refuses_bad_repo_ids(repo_id, tmp_path, monkeypatch):
    from mimcl_hub.hub.encoder import MIMCLEncoder

    monkeypatch.chdir(tmp_path)
    with pytest.raises((ValueError, FileNotFoundError)):
        MIMCLEncoder.from_pretrained(repo_id)


@pytest.mark.parametrize("name", ["hf-hub:../x", "hf-hub:a/b@../../etc", "hf-hub:a/b/c", "hf-hub:a/..@main"])
def test_hf_hub_backbone_names_cannot_leave_the_cache(name):
    from mimcl_hub.models import create_backbone

    with pytest.raises(ValueError, match="repo id|revision"):
        create_backbone(name)


@pytest.mark.parametrize("name", ["../../recipes/vit_simclr", "/etc/passwd", "..\\x"])
def test_recipe_name_cannot_leave_the_recipes_folder(name, capsys):
    from mimcl_hub.cli import main

    assert main(["train", "--recipe", name]) == 2
    assert "--recipe" in capsys.readouterr().err


@pytest.fixture(scope="module")
def encoder_folder(tmp_path_factory):
    return save_test_vit_encoder(tmp_path_factory.mktemp("encoder") / "enc", model_id="tester/enc")


@pytest.mark.parametrize("link", ["file_to_etc", "dir_to_etc", "file_to_sibling"])
def test_push_refuses_symlinks_leaving_the_folder(encoder_folder, tmp_path, link):
    from mimcl_hub.hub import PushError, push_encoder

    folder = tmp_path / "enc"
    shutil.copytree(encoder_folder, folder)
    secret = tmp_path / "secret.txt"
    secret.write_text("token")
    if link == "file_to_etc":
        (folder / "notes.txt").symlink_to("/etc/hostname")
    elif link == "dir_to_etc":
        (folder / "extra").symlink_to("/etc")
    else:
        (folder / "heads_readme.md").symlink_to(secret)
    with HubServer() as hub:
        with pytest.raises(PushError, match="links outside the folder"):
            push_encoder(folder, "tester/x", endpoint=hub.url, token="hf_test_token")
        assert hub.requests == []                                           # nothing was sent


# =============================================================================================================
# 3. untrusted files: config.json asking for other files, pickles with code
# =============================================================================================================

EVIL_MODEL_ARGS = {
    "checkpoint_path": {"checkpoint_path": "/etc/passwd"},
    "pretrained_cfg_overlay": {"pretrained_cfg_overlay": {"file": "/tmp/evil.pth"}},
    "pretrained": {"pretrained": True},
    "cache_dir": {"cache_dir": "/"},
    "huge_img_size": {"img_size": 10_000_000},
    "negative_embed_dim": {"embed_dim": -1},
    "float_depth": {"depth": 2.5},
    "model_args_not_a_dict": "checkpoint_path=/etc/passwd",
}


@pytest.mark.parametrize("case", sorted(EVIL_MODEL_ARGS))
def test_config_json_cannot_point_timm_elsewhere_or_allocate_wildly(encoder_folder, tmp_path, case):
    from mimcl_hub.hub.encoder import MIMCLEncoder

    folder = tmp_path / "evil"
    shutil.copytree(encoder_folder, folder)
    config = json.loads((folder / "config.json").read_text())
    value = EVIL_MODEL_ARGS[case]
    config["model_args"] = value if not isinstance(value, dict) else {**(config.get("model_args") or {}), **value}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"config\.json"):
        MIMCLEncoder.from_pretrained(folder)


class _Evil:
    """A pickle that runs code when unpickled with weights_only=False."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.pth"])
def test_pickle_with_code_is_refused_even_with_allow_pickle(encoder_folder, tmp_path, name):
    from mimcl_hub.hub.encoder import MIMCLEncoder

    folder = tmp_path / "pickled"
    folder.mkdir()
    shutil.copy(encoder_folder / "config.json", folder / "config.json")
    marker = tmp_path / "pwned"
    with open(folder / name, "wb") as f:
        pickle.dump({"state_dict": _Evil(marker)}, f)
    with pytest.raises(ValueError, match="refused"):
        MIMCLEncoder.from_pretrained(folder)                                  # no allow_pickle: refused outright
    with pytest.raises(ValueError, match=r"weights_only=True"):
        MIMCLEncoder.from_pretrained(folder, allow_pickle=True)               # weights_only: code never runs
    assert not marker.exists()


def test_no_trust_remote_code_anywhere():
    pattern = re.compile(r"trust_remote_code\s*=\s*True")
    hits = []
    for root in ("mimcl_hub", "recipes", "bench", "model_cards"):
        for path in (REPO / root).rglob("*"):
            if path.is_file() and path.suffix in (".py", ".md", ".txt", ".json", ".yaml", ".yml", ".cfg", ".toml"):
                for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                    if pattern.search(line):
                        hits.append(f"{path.relative_to(REPO)}:{i}: {line.strip()}")
    assert not hits, hits


# =============================================================================================================
# 4. configuration ranges: every numeric flag
# =============================================================================================================

TRAIN_BAD = [("seed", -1), ("seed", 2**40), ("img_size", 4), ("img_size", 100_000), ("max_side", 10),
             ("max_side", 10**6), ("per_device_train_batch_size", 1), ("gradient_accumulation_steps", 0),
             ("twin_batch_size", 1), ("dataloader_num_workers", -1), ("learning_rate", 0.0),
             ("learning_rate", float("nan")), ("weight_decay", -0.1), ("momentum", 1.0), ("adam_beta1", 1.5),
             ("adam_beta2", -0.1), ("lars_trust_coefficient", 0.0), ("warmup_steps", -1), ("warmup_ratio", 1.0),
             ("min_lr_ratio", 2.0), ("max_grad_norm", -1.0), ("drop_path_rate", 1.0), ("mi_weight", -1.0),
             ("mi_weight", float("inf")), ("logging_steps", 0), ("save_steps", -1), ("save_total_limit", 0),
             ("knn_every", -1), ("check_sync_every", -1), ("knn_k", 0), ("knn_temperature", 0.0),
             ("knn_max_train", 0), ("knn_max_test", 0), ("max_steps", -2), ("max_steps", 0),
             ("num_train_epochs", 0.0), ("max_steps", 2.5), ("knn_k", True)]


@pytest.mark.parametrize("flag,value", TRAIN_BAD, ids=[f"{f}={v}" for f, v in TRAIN_BAD])
def test_train_config_ranges_name_flag_and_range(tmp_path, flag, value):
    from mimcl_hub.train import ConfigError, TrainConfig

    extra = {"max_steps": -1} if flag == "num_train_epochs" else {}
    with pytest.raises(ConfigError) as err:
        TrainConfig(output_dir=str(tmp_path / "o"), eval_dataset="none", **extra, **{flag: value})
    line = next(l for l in str(err.value).splitlines() if l.strip().startswith(f"--{flag}:"))
    assert re.search(r"(>=|>|\[|\(|positive|in \[)", line), line            # the allowed range is stated


TWIN_BAD = [("grid", 0), ("grid", 1000), ("grid", 2.0), ("points_per_patch", 0), ("min_points", 0),
            ("corner_quality", 1.0), ("fb_threshold", 0.0), ("fb_threshold", float("nan")), ("win_size", 2),
            ("max_level", -1), ("ransac_threshold", -1.0), ("motion_floor", 1.5), ("noise_factor", -1.0),
            ("k", 0), ("k", 1.5), ("mi_threshold", float("inf")), ("significance", 1.0), ("surrogates", 0),
            ("seed", -1), ("colour_weight", -0.5), ("colour_bins", 1), ("reduce", "max"),
            ("compensate_camera", "yes"), ("min_points", 20)]


@pytest.mark.parametrize("name,value", TWIN_BAD, ids=[f"{n}={v}" for n, v in TWIN_BAD])
def test_twin_options_ranges_name_option_and_range(name, value):
    from mimcl_hub.mi import TwinOptions

    with pytest.raises(ValueError) as err:
        TwinOptions.from_kwargs(**{name: value})
    message = str(err.value)
    assert name in message and re.search(r"(\[|\(|>=|<=|must be)", message), message


CLI_MINE_BAD = [("--batch_size", "0"), ("--num_proc", "0"), ("--max_side", "10"), ("--window", "1"), ("--limit", "0"),
                ("--grid", "0"), ("--k", "0"), ("--significance", "2"), ("--mi_threshold", "nan")]


@pytest.mark.parametrize("flag,value", CLI_MINE_BAD, ids=[f"{f}={v}" for f, v in CLI_MINE_BAD])
def test_cli_mine_ranges_fail_before_reading_clips(tmp_path, capsys, flag, value):
    from mimcl_hub.cli import main

    code = main(["mine", str(tmp_path / "no_such_source"), "--output", str(tmp_path / "o"), flag, value])
    err = capsys.readouterr().err
    assert code == 2 and flag.lstrip("-") in err and "no_such_source" not in err, err  # checked before the source


EVAL_BAD = [("knn_k", 0), ("knn_t", 0.0), ("knn_t", float("nan")), ("max_train", 0), ("max_test", -5),
            ("batch_size", 0), ("linear_epochs", 0), ("linear_weight_decay", -1.0), ("seed", -1)]


@pytest.mark.parametrize("name,value", EVAL_BAD, ids=[f"{n}={v}" for n, v in EVAL_BAD])
def test_eval_arguments_are_range_checked_before_loading(tmp_path, name, value):
    from mimcl_hub.eval.evaluate import evaluate_encoder

    with pytest.raises(ValueError, match=re.escape(name)) as err:
        evaluate_encoder(str(tmp_path / "no_such_encoder"), **{name: value})
    assert "no_such_encoder" not in str(err.value)


def test_check_number_messages():
    assert check_number("x", 3, 1, 5, integer=True) == 3
    with pytest.raises(ValueError, match=r"x must be an int in \[1, 5\], got 6"):
        check_number("x", 6, 1, 5, integer=True)
    with pytest.raises(ValueError, match=r"y must be a number in \(0, 1\)"):
        check_number("y", 1.0, 0, 1, low_open=True, high_open=True)
    with pytest.raises(ValueError, match="z must be a finite number"):
        check_number("z", float("nan"))


# =============================================================================================================
# 5. Hub faults: retries with backoff, lost answers, storage faults, 4xx never retried
# =============================================================================================================

TOKEN = "hf_testtokenABCDwxyz"
_WORKER = textwrap.dedent("""
    import json, sys, traceback
    from mimcl_hub.hub.push import push_encoder
    for line in sys.stdin:
        job = json.loads(line)
        try:
            url = push_encoder(job["folder"], job["repo_id"], **job.get("kwargs", {}))
            out = {"ok": url}
        except Exception as e:
            out = {"error": str(e), "type": type(e).__name__}
        sys.stdout.write(json.dumps(out) + "\\n")
        sys.stdout.flush()
""")


class _Pusher:
    """One subprocess running the real huggingface_hub client (imports once; HF_ENDPOINT = the test server)."""

    def __init__(self, hub, home, log):
        env = client_env(hub, home, TOKEN)
        env.update(MIMCL_PUSH_MAX_RETRIES="3", MIMCL_PUSH_BACKOFF="0.01")     # fast retries, set by env var
        self.log = open(log, "w")
        self.proc = subprocess.Popen([sys.executable, "-c", _WORKER], env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, text=True)

    def push(self, folder, repo_id, **kwargs) -> dict:
        self.proc.stdin.write(json.dumps({"folder": str(folder), "repo_id": repo_id, "kwargs": kwargs}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"the push worker died: see {self.log.name}"
        return json.loads(line)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)
        self.log.close()


@pytest.fixture(scope="module")
def lfs_hub():
    with HubServer(token=TOKEN, user="tester", orgs=("mimcl-org",), lfs_suffixes=(".safetensors",)) as hub:
        yield hub


@pytest.fixture(scope="module")
def pusher(lfs_hub, tmp_path_factory):
    p = _Pusher(lfs_hub, tmp_path_factory.mktemp("hf_home"), tmp_path_factory.mktemp("logs") / "push.log")
    yield p
    p.close()


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _remote_equals_folder(hub, repo_id, folder, revision="main") -> bool:
    remote = {p: _digest(d) for p, d in hub.files(repo_id, revision).items() if p != ".gitattributes"}
    local = {p.relative_to(folder).as_posix(): _digest(p.read_bytes()) for p in Path(folder).rglob("*") if p.is_file()}
    return remote == local


# (case, endpoint fragment, method, mode, faults in a row, requests let through first). mimcl_hub retries the
# requests it makes itself (create repo, read / verify the remote, commit); preupload and the LFS transfer are
# retried by huggingface_hub's own http_backoff (1 s, then 2 s waits), so they get one fault each.
TRANSIENT = [
    ("create-500", "/api/repos/create", "POST", "500", 2, 0),
    ("create-drop", "/api/repos/create", "POST", "drop", 2, 0),
    ("read-503", "/revision/main", "GET", "503", 2, 0),
    ("read-drop", "/revision/main", "GET", "drop", 2, 0),
    ("commit-500", "/commit/main", "POST", "500", 2, 0),
    ("commit-503", "/commit/main", "POST", "503", 2, 0),
    ("commit-429", "/commit/main", "POST", "429", 2, 0),
    ("commit-drop", "/commit/main", "POST", "drop", 2, 0),
    ("verify-500", "/revision/", "GET", "500", 2, 1),                   # the read of the new commit
    ("verify-drop", "/revision/", "GET", "drop", 2, 1),
    ("preupload-500", "/preupload/main", "POST", "500", 1, 0),
    ("lfs-upload-drop", "/lfs-upload/", "PUT", "drop", 1, 0),
]


@pytest.mark.parametrize("case,path,method,mode,n,skip", TRANSIENT, ids=[t[0] for t in TRANSIENT])
def test_transient_faults_are_retried_then_succeed(lfs_hub, pusher, encoder_folder, tmp_path, case, path, method,
                                                   mode, n, skip):
    repo_id = f"tester/transient-{case}"
    if case.startswith("lfs"):          # LFS objects are content-addressed: new content, so it is really uploaded
        encoder_folder = Path(shutil.copytree(encoder_folder, tmp_path / "enc"))
        (encoder_folder / "extra.safetensors").write_bytes(os.urandom(4096))
    lfs_hub.clear_faults()
    lfs_hub.reset_log()
    lfs_hub.fail_next(n, mode=mode, path_contains=path, method=method, skip=skip)
    out = pusher.push(encoder_folder, repo_id)
    assert "ok" in out, out
    assert lfs_hub.count(path, method) == skip + n + 1                     # n failures + the one that went through
    assert lfs_hub.count("/commit/", "POST") == (n + 1 if "commit" in path else 1)
    repo = lfs_hub.repo(repo_id)
    assert len(repo.commits) == 2                                           # the Hub's initial commit + ONE upload
    assert out["ok"].endswith(repo.branches["main"])
    assert _remote_equals_folder(lfs_hub, repo_id, encoder_folder)
    lfs_hub.clear_faults()


@pytest.mark.parametrize("mode", ["apply_then_500", "apply_then_drop"])
def test_commit_applied_but_answer_lost_is_not_committed_twice(lfs_hub, pusher, encoder_folder, mode):
    repo_id = f"tester/lost-answer-{mode.replace('_', '-')}"
    lfs_hub.clear_faults()
    lfs_hub.reset_log()
    lfs_hub.fail_next(1, mode=mode, path_contains="/commit/main", method="POST")
    out = pusher.push(encoder_folder, repo_id)
    assert "ok" in out, out
    repo = lfs_hub.repo(repo_id)
    assert lfs_hub.count("/commit/", "POST") == 1                          # the retry saw the commit was there
    assert len(repo.commits) == 2 and out["ok"].endswith(repo.branches["main"])
    assert _remote_equals_folder(lfs_hub, repo_id, encoder_folder)


@pytest.mark.parametrize("path,method,what", [("/commit/main", "POST", "create the commit"),
                                              ("/api/repos/create", "POST", "create the repo"),
                                              ("/revision/main", "GET", "read the remote files")])
def test_faults_outlasting_the_retries_fail_clearly(lfs_hub, pusher, encoder_folder, path, method, what):
    repo_id = f"tester/exhausted-{what.replace(' ', '-')}"
    lfs_hub.clear_faults()
    lfs_hub.reset_log()
    lfs_hub.fail_next(100, mode="503", path_contains=path, method=method)
    out = pusher.push(encoder_folder, repo_id, max_retries=2, backoff=0.01)  # arguments override the env vars
    lfs_hub.clear_faults()
    assert out.get("type") == "PushError", out
    assert f"after 3 attempts of {what} (max_retries=2)" in out["error"] and repo_id in out["error"]
    assert lfs_hub.count(path, method) == 3
    repo = lfs_hub.repo(repo_id)
    assert repo is None or len(repo.commits) == 1                          # nothing half-pushed
    again = pusher.push(encoder_folder, repo_id)                             # the fault gone: a push completes it
    assert "ok" in again and _remote_equals_folder(lfs_hub, repo_id, encoder_folder)


@pytest.mark.parametrize("mode", ["corrupt", "lose_file"])
def test_a_commit_the_hub_stored_wrongly_is_not_reported_as_done(lfs_hub, pusher, encoder_folder, mode):
    repo_id = f"tester/storage-{mode.replace('_', '-')}"
    lfs_hub.clear_faults()
    lfs_hub.fail_next(1, mode=mode, path_contains="/commit/main", method="POST")
    out = pusher.push(encoder_folder, repo_id)
    assert out.get("type") == "PushError" and "not reporting it as pushed" in out["error"], out
    assert "README.md" in out["error"]                                        # names the file that is wrong
    assert not _remote_equals_folder(lfs_hub, repo_id, encoder_folder)
    again = pusher.push(encoder_folder, repo_id)                             # a new push repairs it
    assert "ok" in again and _remote_equals_folder(lfs_hub, repo_id, encoder_folder)


@pytest.mark.parametrize("case", ["401_bad_token", "403_foreign_namespace"])
def test_4xx_is_never_retried_and_names_token_and_repo(lfs_hub, pusher, encoder_folder, case):
    lfs_hub.reset_log()
    if case == "401_bad_token":
        repo_id, kwargs = "tester/bad-token", {"token": "hf_wrongtoken0000abcd"}
    else:
        repo_id, kwargs = "someone-else/model", {}
    out = pusher.push(encoder_folder, repo_id, **kwargs)
    assert out.get("type") == "PushError", out
    assert repo_id in out["error"] and ("hf_…abcd" in out["error"] if "401" in case else "hf_…wxyz" in out["error"])
    assert ("401" if "401" in case else "403") in out["error"]
    assert lfs_hub.count("/api/repos/create") == 1                           # exactly one request: no retry
    assert lfs_hub.repo(repo_id) is None


def test_push_is_idempotent_and_lfs_files_are_verified_by_sha256(lfs_hub, pusher, encoder_folder):
    repo_id = "tester/idempotent"
    first = pusher.push(encoder_folder, repo_id)
    lfs_hub.reset_log()
    second = pusher.push(encoder_folder, repo_id)
    assert first == second and lfs_hub.count("/commit/") == 0                 # nothing new: no commit
    repo = lfs_hub.repo(repo_id)
    tree = {e["path"]: e for e in lfs_hub._tree(repo.commits[repo.branches["main"]], "", True) if e["type"] == "file"}
    weights = (encoder_folder / "model.safetensors").read_bytes()
    assert tree["model.safetensors"]["lfs"]["oid"] == _digest(weights)       # stored through the LFS protocol
    assert "lfs" not in tree["config.json"]


PUSH_RETRY_BAD = [("--max-retries", "-1"), ("--max-retries", "21"), ("--backoff", "-0.5"), ("--backoff", "nan"),
                  ("env:MIMCL_PUSH_MAX_RETRIES", "many"), ("env:MIMCL_PUSH_BACKOFF", "1e9")]


@pytest.mark.parametrize("flag,value", PUSH_RETRY_BAD, ids=[f"{f}={v}" for f, v in PUSH_RETRY_BAD])
def test_retry_settings_are_range_checked_before_any_request(encoder_folder, monkeypatch, capsys, flag, value):
    from mimcl_hub.cli import main

    args = ["push", str(encoder_folder), "--repo-id", "tester/retry-settings"]
    if flag.startswith("env:"):
        monkeypatch.setenv(flag[4:], value)
    else:
        args += [flag, value]
    with HubServer(token=TOKEN) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        assert main(args) == 2
        assert hub.requests == []                                            # refused before any request
    err = capsys.readouterr().err
    assert ("MIMCL_PUSH_MAX_RETRIES" in err or "MIMCL_PUSH_BACKOFF" in err) and re.search(r"\[0, (20|60)\]", err)


def test_is_transient_classification():
    import httpx2

    from mimcl_hub.hub.push import RetryPolicy, is_transient

    assert is_transient(httpx2.ReadTimeout("slow")) and is_transient(httpx2.RemoteProtocolError("dropped"))
    assert is_transient(ConnectionResetError()) and not is_transient(ValueError("bad"))
    wrapped = RuntimeError("Error while uploading")
    wrapped.__cause__ = httpx2.ConnectError("refused")
    assert is_transient(wrapped)                                             # huggingface_hub wraps LFS failures
    policy = RetryPolicy(max_retries=5, backoff=1.0)
    delays = [policy.delay(n) for n in range(1, 8)]
    assert all(0.5 * min(30, 2 ** (n - 1)) <= d <= min(30, 2 ** (n - 1)) for n, d in zip(range(1, 8), delays))
    assert max(delays) <= 30.0                                               # capped


# =============================================================================================================
# 6. training faults: output_dir pre-flight, a disk filling up mid-run, foreign pickles in a checkpoint
# =============================================================================================================


@pytest.fixture(scope="module")
def mined_scene(tmp_path_factory):
    return save_mined_scenes(tmp_path_factory, 1, seed=3, num_frames=12, name="scene")


TINY = dict(model_name="test_vit", img_size=16, per_device_train_batch_size=4, twin_batch_size=4,
            mixed_precision="no", eval_dataset="none", disable_tqdm=True, report_to="none", warmup_steps=1,
            logging_steps=1, save_heads=False)


@pytest.fixture
def _fresh_accelerate_state():
    yield
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()


@pytest.mark.parametrize("case", ["parent_is_a_file", "under_sys", "under_proc"])
def test_unwritable_output_dir_fails_before_training(tmp_path, mined_scene, case, _fresh_accelerate_state):
    from mimcl_hub.train import OutputDirError, TrainConfig, train

    if case == "parent_is_a_file":
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "run"
    else:
        out = Path("/sys/mimcl_run" if case == "under_sys" else "/proc/mimcl_run")
    config = TrainConfig(output_dir=str(out), video_dataset=mined_scene, max_steps=2, **TINY)
    with pytest.raises(OutputDirError, match="cannot be created"):
        train(config)
    assert not out.exists()


def test_resume_never_unpickles_code_from_a_checkpoint(tmp_path, mined_scene, _fresh_accelerate_state):
    """Accelerate loads registered objects (custom_checkpoint_<i>.pkl) with weights_only=False: the loop checks
    them with weights_only=True first; every other pickle of a checkpoint Accelerate reads with weights_only=True."""
    from accelerate.state import AcceleratorState, GradientState

    from mimcl_hub.train import CheckpointError, TrainConfig, train

    out = tmp_path / "run"
    train(TrainConfig(output_dir=str(out), video_dataset=mined_scene, max_steps=2, save_steps=1, **TINY))
    marker = tmp_path / "pwned"
    with open(out / "checkpoints" / "checkpoint-2" / "custom_checkpoint_0.pkl", "wb") as f:
        pickle.dump(_Evil(marker), f)
    with open(out / "checkpoints" / "checkpoint-1" / "random_states_0.pkl", "wb") as f:
        pickle.dump(_Evil(marker), f)
    for resume, error in (("latest", "custom_checkpoint_0.pkl holds more than plain data"),
                          (str(out / "checkpoints" / "checkpoint-1"), "random_states_0.pkl holds more than plain")):
        AcceleratorState._reset_state(True)
        GradientState._reset_state()
        with pytest.raises(CheckpointError, match=error):
            train(TrainConfig(output_dir=str(out), video_dataset=mined_scene, max_steps=3, save_steps=1,
                              resume_from_checkpoint=resume, **TINY))
        assert not marker.exists()                                           # the code never ran


_DISK_SCRIPT = textwrap.dedent("""
    import json, os, sys, threading, time
    from pathlib import Path
    import torch
    from safetensors.torch import load_file
    from accelerate.state import AcceleratorState, GradientState
    from mimcl_hub.train import OutputDirError, TrainConfig, latest_checkpoint, list_checkpoints, train

    root, data, tiny = Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
    results = {}

    def reset():
        AcceleratorState._reset_state(True)
        GradientState._reset_state()

    def run(name, out, **kw):
        try:
            train(TrainConfig(output_dir=str(out), video_dataset=data, **{**tiny, **kw}))
            return {"ok": True}
        except OutputDirError as e:
            return {"error": str(e)}
        finally:
            reset()

    def fill(folder):
        with open(folder / "filler", "wb") as f:
            try:
                while True:
                    f.write(b"\\0" * (1 << 20))
                    f.flush()
            except OSError:
                pass

    # read-only file system
    results["read_only"] = run("ro", root / "ro" / "run", max_steps=2)
    # a full disk: 0 bytes left (the probe write hits ENOSPC, like /dev/full)
    fill(root / "full")
    results["full_disk"] = run("full", root / "full" / "run", max_steps=2)
    results["full_disk"]["listing"] = sorted(os.listdir(root / "full"))
    # too small for the run: free space below the estimate
    results["too_small"] = run("small", root / "small" / "run", max_steps=2, save_steps=1, save_total_limit=2)
    # a run that failed before writing anything removes the output folder it created
    results["too_small"]["listing"] = sorted(os.listdir(root / "small" / "run")) if (root / "small" / "run").exists() else []
    # the disk fills up during the run (another process): the checkpoint write fails cleanly
    out = root / "mid" / "run"
    def filler():
        marker = out / "checkpoints" / "checkpoint-2" / "mimcl_checkpoint.json"
        while not marker.exists():
            time.sleep(0.002)
        fill(root / "mid")
    thread = threading.Thread(target=filler, daemon=True)
    thread.start()
    mid = run("mid", out, max_steps=40, save_steps=2, save_total_limit=2)
    thread.join(timeout=60)
    mid["checkpoints"] = [s for s, _ in list_checkpoints(out)]
    mid["leftovers"] = sorted(p.name for p in (out / "checkpoints").iterdir() if p.name.startswith("."))
    last = latest_checkpoint(out)
    mid["last_finite"] = all(bool(torch.isfinite(t).all()) for t in load_file(last / "model.safetensors").values())
    os.remove(root / "mid" / "filler")
    resumed = run("resume", out, max_steps=mid["checkpoints"][-1] + 2, save_steps=2, save_total_limit=2,
                  resume_from_checkpoint="latest")
    mid["resumed"] = resumed
    mid["encoder"] = (out / "encoder" / "model.safetensors").exists()
    results["fills_mid_run"] = mid
    print("RESULTS " + json.dumps(results))
""")


@pytest.fixture(scope="module")
def disk_faults(tmp_path_factory, mined_scene):
    why = mount_namespace_available()
    if why:
        pytest.skip(why)
    root = tmp_path_factory.mktemp("disks")
    for name in ("ro", "full", "small", "mid"):
        (root / name).mkdir()
    mounts = (f"mount -t tmpfs -o ro,size=1m tmpfs {root}/ro && mount -t tmpfs -o size=1m tmpfs {root}/full && "
              f"mount -t tmpfs -o size=4m tmpfs {root}/small && mount -t tmpfs -o size=48m tmpfs {root}/mid")
    script = root / "disk_faults.py"
    script.write_text(_DISK_SCRIPT)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1")
    proc = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                           f'{mounts} && exec "$0" "$@"', sys.executable, str(script), str(root), mined_scene,
                           json.dumps(TINY)], env=env, capture_output=True, text=True, timeout=600)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULTS ")]
    assert proc.returncode == 0 and lines, proc.stdout[-2000:] + proc.stderr[-4000:]
    return json.loads(lines[-1][len("RESULTS "):])


def test_read_only_output_dir_fails_before_training(disk_faults):
    result = disk_faults["read_only"]
    assert "Read-only file system" in result.get("error", ""), result


def test_full_disk_fails_before_training(disk_faults):
    result = disk_faults["full_disk"]
    assert "No space left on device" in result.get("error", "") and "nothing was trained" in result["error"], result
    assert result["listing"] == ["filler", "run"]                            # no probe file left behind


def test_too_little_free_space_fails_before_training(disk_faults):
    result = disk_faults["too_small"]
    assert re.search(r"has \d+\.\d MiB free, but this run needs about \d+\.\d MiB", result.get("error", "")), result
    assert "save_total_limit + 1 = 3" in result["error"]
    assert "checkpoints" not in result["listing"]                            # not one step was run


def test_disk_filling_up_mid_run_keeps_the_last_checkpoint(disk_faults):
    mid = disk_faults["fills_mid_run"]
    assert "writing checkpoint" in mid.get("error", "") and "No space left on device" in mid["error"], mid
    assert mid["checkpoints"] and mid["checkpoints"][-1] >= 2 and mid["last_finite"]
    assert mid["leftovers"] == []                                            # the partial folder was removed
    assert mid["resumed"] == {"ok": True} and mid["encoder"]                 # and the run continues from it


# =============================================================================================================
# issue 19, items 3 / 4 / 8: `mimcl eval` never writes a wrong number into eval_results.json or the card
# ======================================================================================================


# Each bad dataset is a real dataset (save_to_disk / Parquet folder) evaluated with a real encoder folder
# (save_encoder of a tiny timm ViT): a ValueError naming the dataset, the split and the column, the same one line
# from `mimcl eval` (exit status 2, no traceback), and eval_results.json / README.md unchanged to the byte.

_I19_CL = ["ant", "bee", "cat"]


def _i19_images(n: int, seed: int = 0) -> list:
    """Small images whose mean colour follows the row (so different rows differ)."""
    r = np.random.default_rng(seed)
    return [np.clip(r.integers(0, 40, (12, 12, 3)) + 20 * (i % 10), 0, 255).astype(np.uint8) for i in range(n)]


def _i19_split(labels, label_feature=None, seed=0, images=None):
    features = datasets.Features({"image": datasets.Image(),
                                  "label": label_feature or datasets.ClassLabel(names=_I19_CL)})
    return datasets.Dataset.from_dict({"image": images or _i19_images(len(labels), seed), "label": list(labels)},
                                      features=features)


def _i19_dict(train, test):
    return datasets.DatasetDict({"train": train, "test": test})


_INT = datasets.Value("int64")
_I19_GOOD_TRAIN = [0, 1, 2] * 6
# case -> (a function building the dataset at a path, regexes the message must hold)
_I19_ITEM3 = {  # labels outside [0, C) (C: the ClassLabel's num_classes, else the classes of train)
    "hub_unlabelled_test_split_all_minus_one": (
        lambda p: _i19_dict(_i19_split(_I19_GOOD_TRAIN), _i19_split([-1] * 6, seed=1)).save_to_disk(p),
        [r"split 'test', column 'label'", r"every label is -1"]),
    "classlabel_test_with_some_minus_one": (
        lambda p: _i19_dict(_i19_split(_I19_GOOD_TRAIN), _i19_split([0, 1, -1, 2], seed=1)).save_to_disk(p),
        [r"split 'test', column 'label'", r"label -1 at row 2 is outside \[0, 3\)"]),
    "classlabel_train_with_minus_one": (
        lambda p: _i19_dict(_i19_split([0, 1, 2, -1] * 3), _i19_split([0, 1, 2], seed=1)).save_to_disk(p),
        [r"split 'train', column 'label'", r"label -1 at row 3 is outside \[0, 3\)"]),
    "int_labels_minus_one_in_test": (
        lambda p: _i19_dict(_i19_split(_I19_GOOD_TRAIN, _INT), _i19_split([-1, 0, 1], _INT, seed=1)).save_to_disk(p),
        [r"split 'test', column 'label'", r"label -1 at row 0 is negative"]),
    "int_test_label_train_never_has": (
        lambda p: _i19_dict(_i19_split(_I19_GOOD_TRAIN, _INT), _i19_split([0, 1, 7], _INT, seed=1)).save_to_disk(p),
        [r"split 'test', column 'label'", r"row 2\) are of 1 class\(es\) that no evaluated train row has \('7'\)"]),
    "classlabel_test_class_train_never_has": (
        lambda p: _i19_dict(_i19_split([0, 1] * 6), _i19_split([0, 1, 2], seed=1)).save_to_disk(p),
        [r"split 'test', column 'label'", r"that no evaluated train row has \('cat'\)"]),
}
_I19_ITEM4 = {  # fewer than two classes in train or test
    "one_int_class": (
        lambda p: _i19_dict(_i19_split([0] * 12, _INT), _i19_split([0] * 4, _INT, seed=1)).save_to_disk(p),
        [r"split 'train', column 'label'", r"one class \('0'\)", "two classes or more"]),
    "one_classlabel_class_of_three": (
        lambda p: _i19_dict(_i19_split([1] * 12), _i19_split([1] * 4, seed=1)).save_to_disk(p),
        [r"split 'train', column 'label'", r"one class \('bee'\)"]),
    "test_split_of_one_class": (
        lambda p: _i19_dict(_i19_split(_I19_GOOD_TRAIN), _i19_split([2] * 5, seed=1)).save_to_disk(p),
        [r"split 'test', column 'label'", r"its 5 evaluated rows hold one class \('cat'\)"]),
    "train_only_dataset_one_class": (
        lambda p: _i19_split([0] * 10).save_to_disk(p),
        [r"split 'train', column 'label'", r"one class \('ant'\)"]),
    "string_labels_one_value": (
        lambda p: _i19_dict(_i19_split(["x"] * 8, datasets.Value("string")),
                            _i19_split(["x"] * 3, datasets.Value("string"), seed=1)).save_to_disk(p),
        [r"split 'train', column 'label'", r"one class \('x'\)"]),
}
_I19_ITEM8 = {  # what ended in `invalid literal for int()` / IndexError
    "empty_test_split": (
        lambda p: _i19_dict(_i19_split(_I19_GOOD_TRAIN), _i19_split([])).save_to_disk(p),
        [r"split 'test'", r"the split has no rows"]),
    "empty_train_split": (
        lambda p: _i19_dict(_i19_split([]), _i19_split([0, 1, 2])).save_to_disk(p),
        [r"split 'train'", r"the split has no rows"]),
    "string_label_train_never_has": (
        lambda p: _i19_dict(_i19_split(["cat", "dog"] * 4, datasets.Value("string")),
                            _i19_split(["cat", "dog", "emu"], datasets.Value("string"), seed=1)).save_to_disk(p),
        [r"split 'test', column 'label'", r"row 2\) are of 1 class\(es\) that no evaluated train row has \('emu'\)"]),
    "string_labels_with_an_empty_one": (
        lambda p: _i19_dict(_i19_split(["cat", "", "dog"] * 3, datasets.Value("string")),
                            _i19_split(["cat", "dog"], datasets.Value("string"), seed=1)).save_to_disk(p),
        [r"split 'train', column 'label'", r"3 of 9 rows have no label .*first at row 1"]),
    "string_train_int_test": (
        lambda p: _i19_dict(_i19_split(["cat", "dog"] * 4, datasets.Value("string")),
                            _i19_split([0, 1], _INT, seed=1)).save_to_disk(p),
        [r"split 'test', column 'label'", r"the same id would not name the same class"]),
}
_I19_HOSTILE = {  # the same spirit, one step further
    "float_labels_not_whole": (
        lambda p: _i19_dict(_i19_split([0.0, 0.5, 1.0] * 4, datasets.Value("float32")),
                            _i19_split([0.0, 1.0], datasets.Value("float32"), seed=1)).save_to_disk(p),
        [r"split 'train', column 'label'", r"label 0.5 at row 1 is not a class id"]),
    "nan_labels_in_test": (
        lambda p: _i19_dict(_i19_split([0.0, 1.0] * 6, datasets.Value("float64")),
                            _i19_split([0.0, float("nan"), 1.0], datasets.Value("float64"), seed=1)).save_to_disk(p),
        [r"split 'test', column 'label'", r"1 of 3 rows have no label .*first at row 1"]),
    "null_int_labels": (
        lambda p: _i19_dict(_i19_split([0, None, 1] * 4, _INT), _i19_split([0, 1], _INT, seed=1)).save_to_disk(p),
        [r"split 'train', column 'label'", r"4 of 12 rows have no label"]),
    "multi_label_lists": (
        lambda p: _i19_dict(_i19_split([[0], [1]] * 4, datasets.Sequence(_INT)),
                            _i19_split([[0], [1]], datasets.Sequence(_INT), seed=1)).save_to_disk(p),
        [r"split 'train', column 'label'", r"not one class label per row"]),
    "classlabel_names_differ_between_splits": (
        lambda p: _i19_dict(_i19_split(_I19_GOOD_TRAIN),
                            _i19_split([0, 1, 2], datasets.ClassLabel(names=_I19_CL[::-1]), seed=1)).save_to_disk(p),
        [r"split 'test', column 'label'", r"the same id would not name the same class"]),
    "image_column_of_file_names": (
        lambda p: _i19_dict(datasets.Dataset.from_dict({"image": ["a.png"] * 6, "label": [0, 1] * 3}),
                            datasets.Dataset.from_dict({"image": ["b.png"] * 2, "label": [0, 1]})).save_to_disk(p),
        [r"split 'train', column 'image'", r"not images", r"cast_column\('image', datasets.Image\(\)\)"]),
    "test_split_is_the_train_split": (
        lambda p: (lambda ds: _i19_dict(ds, ds).save_to_disk(p))(_i19_split(_I19_GOOD_TRAIN)),
        [r"split 'test' is the same data as split 'train'", r"own nearest neighbour"]),
    "parquet_test_file_copies_train": (
        lambda p: [_i19_split(_I19_GOOD_TRAIN).to_parquet(f"{p}/data/{s}-00000-of-00001.parquet")
                   for s in ("train", "test")],
        [r"split 'test' is the same data as split 'train'"]),
    "only_a_test_split": (
        lambda p: datasets.DatasetDict({"test": _i19_split(_I19_GOOD_TRAIN)}).save_to_disk(p),
        [r"has no 'train' split \(splits: \['test'\]\)"]),
    "a_null_image": (
        lambda p: _i19_dict(_i19_split(_I19_GOOD_TRAIN, images=_i19_images(17) + [None]),
                            _i19_split([0, 1, 2], seed=1)).save_to_disk(p),
        [r"split 'train': row 17 of column 'image': no image \(null\)"]),
    "undecodable_image_bytes": (
        lambda p: _i19_dict(_i19_split(_I19_GOOD_TRAIN), _i19_split(
            [0, 1, 2], seed=1, images=_i19_images(2) + [{"bytes": b"not a PNG", "path": None}])).save_to_disk(p),
        [r"split 'test': row 2 of column 'image': the image cannot be decoded \(UnidentifiedImageError"]),
    "labels_in_the_image_column": (
        lambda p: _i19_dict(datasets.Dataset.from_dict({"image": [0, 1] * 4, "label": [0, 1] * 4}),
                            datasets.Dataset.from_dict({"image": [0, 1], "label": [0, 1]})).save_to_disk(p),
        [r"split 'train', column 'image'", r"holds Value\('int64'\) values, not images"]),
}


@pytest.fixture(scope="module")
def i19_encoder(tmp_path_factory):
    """A real encoder folder (save_encoder of a tiny timm ViT) with a card and an earlier eval_results.json."""
    from mimcl_hub.eval.evaluate import evaluate_encoder
    from mimcl_hub.hub import RunCard, save_encoder
    from mimcl_hub.models import create_backbone

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("i19") / "enc"
    save_encoder(create_backbone("vit_tiny_patch4_32", img_size=16).eval(), folder,
                 RunCard(objective="simclr", model_id="tester/i19"))
    evaluate_encoder(folder, datasets=["digits"], linear=False, max_train=100, max_test=60)
    return folder


@pytest.fixture(scope="module")
def i19_data(tmp_path_factory):
    """Every bad dataset of this section, written once: case -> path."""
    root = tmp_path_factory.mktemp("i19_data")
    out = {}
    for cases in (_I19_ITEM3, _I19_ITEM4, _I19_ITEM8, _I19_HOSTILE):
        for case, (write, _) in cases.items():
            (root / case / "data").mkdir(parents=True)
            write(str(root / case))
            out[case] = str(root / case)
    return out


def _i19_snapshot(folder: Path) -> dict:
    return {name: (folder / name).read_bytes() for name in ("README.md", "eval_results.json")}


def _i19_refused(folder: Path, source: str, patterns: list, capsys) -> None:
    """``evaluate_encoder`` raises a ValueError holding the dataset and ``patterns``; ``mimcl eval`` exits with 2
    and one line naming the dataset; neither file changes."""
    from mimcl_hub.cli import main
    from mimcl_hub.eval.evaluate import evaluate_encoder

    before = _i19_snapshot(folder)
    with pytest.raises(ValueError) as error:
        evaluate_encoder(folder, datasets=[source])
    assert type(error.value) is ValueError                               # never another type (IndexError, ...)
    message = str(error.value)
    assert f"kNN dataset {source!r}" in message, message
    for pattern in patterns:
        assert re.search(pattern, message), (pattern, message)
    capsys.readouterr()
    assert main(["eval", str(folder), "--dataset", source, "--no_linear"]) == 2
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.startswith("mimcl eval")]
    assert len(lines) == 1 and source in lines[0] and "Traceback" not in captured.err, captured.err
    assert re.search(patterns[0], lines[0]) and captured.out == ""
    assert _i19_snapshot(folder) == before
    assert not [n for n in os.listdir(folder) if n.startswith(".tmp")]


@pytest.mark.parametrize("case", list(_I19_ITEM3))
def test_issue19_item3_labels_outside_the_classes_are_refused(i19_encoder, i19_data, capsys, case):
    """issue 19 item 3: test labels of -1 (the Hub's unlabelled test splits) gave kNN and linear top-1 = 0.0,
    written to eval_results.json. Labels outside [0, C) (C: the ClassLabel's num_classes; else the classes of
    train) are refused naming the split and the column, and so are test classes train never has (no neighbour and
    no probe could predict them: not an evaluation of those classes); nothing is written."""
    _i19_refused(i19_encoder, i19_data[case], _I19_ITEM3[case][1], capsys)


@pytest.mark.parametrize("case", list(_I19_ITEM4))
def test_issue19_item4_fewer_than_two_classes_are_refused(i19_encoder, i19_data, capsys, case):
    """issue 19 item 4: a dataset of one class gave kNN 1.0 / linear 1.0. Fewer than two classes among the
    evaluated rows of train or of test is refused naming the split and the column; nothing is written."""
    _i19_refused(i19_encoder, i19_data[case], _I19_ITEM4[case][1], capsys)


@pytest.mark.parametrize("case", list(_I19_ITEM8))
def test_issue19_item8_empty_splits_and_bad_string_labels_name_split_and_column(i19_encoder, i19_data, capsys, case):
    """issue 19 item 8: string labels ended in ``invalid literal for int()`` and an empty test split in an
    IndexError, naming neither the column nor the split. An empty split is a ValueError naming it; string labels are
    accepted (mapped to class ids, see the next test), and what they cannot mean (an empty string, a test string
    train never has, a type that differs between the splits) is refused naming the split and the column."""
    _i19_refused(i19_encoder, i19_data[case], _I19_ITEM8[case][1], capsys)


@pytest.mark.parametrize("case", list(_I19_HOSTILE))
def test_issue19_items_3_4_8_hostile_datasets_are_refused(i19_encoder, i19_data, capsys, case):
    """issue 19 items 3/4/8, a hostile pass: float labels that are not whole numbers, NaN / null labels, multi-label
    lists, ClassLabel names that differ between the splits, an image column of file names or of numbers, a null or
    undecodable image, a test split that is the train split (kNN ~1.0), a dataset with only a test split. Each a
    ValueError naming the dataset, the split and the column; nothing is written."""
    _i19_refused(i19_encoder, i19_data[case], _I19_HOSTILE[case][1], capsys)


@pytest.mark.parametrize("source, patterns", [
    ("bundled", [r"is a clip source .* not a labelled image dataset"]),
    ("./no/such/folder", [r"'./no/such/folder': no such file or folder"]),
])
def test_issue19_items_3_4_8_sources_that_are_no_labelled_dataset(i19_encoder, capsys, source, patterns):
    """issue 19 items 3/4/8: sources the resolver knows but that hold no labels, and a missing path (the resolver's
    own message, as for --eval_dataset / --video_dataset): refused before anything is loaded; nothing is written."""
    _i19_refused(i19_encoder, source, patterns, capsys)


def test_issue19_items_3_4_8_an_encoder_folder_given_as_dataset(i19_encoder, tmp_path, capsys):
    """issue 19 items 3/4/8: ``mimcl eval MODEL --dataset MODEL`` by mistake says what the folder is."""
    other = tmp_path / "other_enc"
    shutil.copytree(i19_encoder, other)
    _i19_refused(i19_encoder, str(other), [r"is an encoder folder .*mimcl eval MODEL --dataset DATASET"], capsys)


def test_issue19_items_3_4_8_a_failing_second_dataset_writes_nothing_of_the_first(i19_encoder, i19_data, tmp_path,
                                                                                  capsys):
    """issue 19 items 3/4/8: with two --dataset values of which the second fails, the first one's results are not
    written either (both files or neither, and not half of the datasets)."""
    from mimcl_hub.cli import main
    from mimcl_hub.eval.evaluate import evaluate_encoder

    good = tmp_path / "good"
    _i19_dict(_i19_split(_I19_GOOD_TRAIN), _i19_split([0, 1, 2] * 2, seed=1)).save_to_disk(str(good))
    bad = i19_data["hub_unlabelled_test_split_all_minus_one"]
    before = _i19_snapshot(i19_encoder)
    with pytest.raises(ValueError, match=r"split 'test', column 'label': every label is -1"):
        evaluate_encoder(i19_encoder, datasets=[str(good), bad])
    capsys.readouterr()
    assert main(["eval", str(i19_encoder), "--dataset", str(good), "--dataset", bad]) == 2
    assert "every label is -1" in capsys.readouterr().err
    assert _i19_snapshot(i19_encoder) == before
    assert str(good) not in json.dumps(json.loads(before["eval_results.json"]))


def test_issue19_item8_string_labels_are_mapped_like_their_classlabel(i19_encoder, tmp_path):
    """issue 19 item 8: string labels are accepted: the distinct strings of train, sorted, are the class ids
    0 .. C-1, the same mapping in the test split. The accuracies equal those of the same data with a ClassLabel of
    the same (sorted) names, and bool / sparse integer labels map the same way."""
    from mimcl_hub.eval import load_knn_datasets
    from mimcl_hub.eval.evaluate import evaluate_encoder

    names = ["ant", "bee", "cat"]
    train_ids, test_ids = [2, 0, 1, 1, 0, 2] * 3, [1, 2, 0, 0, 2, 1]
    as_classlabel = _i19_dict(_i19_split(train_ids), _i19_split(test_ids, seed=1))
    string = datasets.Value("string")
    as_strings = _i19_dict(_i19_split([names[i] for i in train_ids], string),
                           _i19_split([names[i] for i in test_ids], string, seed=1))
    sparse = _i19_dict(_i19_split([[5, 10, 70][i] for i in train_ids], _INT),
                       _i19_split([[5, 10, 70][i] for i in test_ids], _INT, seed=1))
    for name, ds in (("cl", as_classlabel), ("str", as_strings), ("sparse", sparse)):
        ds.save_to_disk(str(tmp_path / name))
    train, test = load_knn_datasets(str(tmp_path / "str"), img_size=8)
    assert train.class_names == names and train.num_classes == 3
    np.testing.assert_array_equal(train.labels, train_ids)
    np.testing.assert_array_equal(test.labels, test_ids)
    sparse_train, sparse_test = load_knn_datasets(str(tmp_path / "sparse"), img_size=8)
    assert sparse_train.class_names == ["5", "10", "70"]                          # numeric order, not text order
    np.testing.assert_array_equal(sparse_test.labels, test_ids)
    results = {}
    for name in ("cl", "str", "sparse"):
        source = str(tmp_path / name)
        results[name] = evaluate_encoder(i19_encoder, datasets=[source], output_dir=tmp_path / f"out_{name}",
                                         update_card=False)["results"][source]
    for key in ("knn_top1", "linear_top1", "num_classes", "num_train", "num_test"):
        assert results["cl"][key] == results["str"][key] == results["sparse"][key], key


# =============================================================================================================
# issue 19 items 2 and 13: `mimcl mine` over folders of real files. Every bad file is a row with its reason (in the
# printed report and the dataset card), --strict stops at the first one naming it, a folder of only bad files fails;
# the `video` paths are absolute, so the mined folder loads and trains from any working directory.
# =============================================================================================================

sys.path.insert(0, os.path.dirname(__file__))
from video_files import BAD_FILES as I19_BAD_FILES  # noqa: E402
from video_files import GOOD_FRAMES as I19_GOOD_FRAMES  # noqa: E402
from video_files import printable as i19_printable  # noqa: E402
from video_files import write_video as i19_write_video  # noqa: E402

I19_MINE = ["--window", "16", "--max_side", "96", "--grid", "4"]


def _i19_folder(tmp_path: Path, *cases: str) -> tuple[Path, list[Path]]:
    folder = tmp_path.resolve() / "videos"
    folder.mkdir()
    i19_write_video(folder / "good.mp4", I19_GOOD_FRAMES)
    return folder, [I19_BAD_FILES[case][0](folder) for case in cases]


def _i19_error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("mimcl mine:")]


@pytest.mark.parametrize("case", sorted(I19_BAD_FILES))
def test_issue19_cli_mine_reports_each_bad_file_by_reason(tmp_path, capsys, case):
    """issue 19 item 13: one bad file (0-byte, audio-only, a PNG named .mp4, random bytes, 1 frame, shorter than
    --window, a folder named x.mp4, a broken link, a link loop, a named pipe, a name that is not UTF-8) next to a
    good video: exit 0, the file is a failed row with its reason in the printed report and in the dataset card;
    with --strict exit 2 and one line naming the file; never a traceback."""
    from mimcl_hub.cli import main

    _, reason, text = I19_BAD_FILES[case]
    folder, [bad] = _i19_folder(tmp_path, case)
    out = tmp_path / "out"
    code = main(["mine", str(folder), "--output", str(out), *I19_MINE])
    captured = capsys.readouterr()
    assert code == 0 and "Traceback" not in captured.err, captured.err
    report = json.loads(captured.out)
    assert (report["clips"], report["mined"], report["bad_files"], report["failed_by_reason"]) == (2, 1, 1, {reason: 1})
    [message] = report["errors"].values()
    assert text in message and i19_printable(bad) in message
    assert f"1 of 2 clips could not be mined ({reason} 1;" in captured.err
    mined = datasets.load_dataset(str(out), split="train")
    assert sorted(mined["mine_reason"]) == ["", reason]
    card = (out / "README.md").read_text()
    assert f"| {reason} | 1 |" in card and i19_printable(bad).replace("\\", "\\\\") in card
    assert "failed_by_reason:\n      " + reason + ": 1" in card and "video_paths: absolute" in card

    code = main(["mine", str(folder), "--output", str(tmp_path / "strict"), *I19_MINE, "--strict"])
    err = capsys.readouterr().err
    lines = _i19_error_lines(err)
    assert code == 2 and "Traceback" not in err and len(lines) == 1, err
    assert i19_printable(bad) in lines[0] and f"[{reason}]" in lines[0]
    assert not (tmp_path / "strict").exists()


def test_issue19_cli_mine_folder_of_only_bad_files_fails_with_the_reasons(tmp_path, capsys):
    """issue 19 item 13: every file bad -> exit 2, one line naming each file and its reason, nothing written."""
    from mimcl_hub.cli import main

    folder, bad = _i19_folder(tmp_path, "zero_byte", "audio_only", "png_renamed")
    (folder / "good.mp4").unlink()
    code = main(["mine", str(folder), "--output", str(tmp_path / "out"), *I19_MINE])
    err = capsys.readouterr().err
    lines = _i19_error_lines(err)
    assert code == 2 and "Traceback" not in err and len(lines) == 1, err
    assert all(str(path) in lines[0] for path in bad)
    assert "[corrupt_video]" in lines[0] and "[too_few_frames]" in lines[0]
    assert not (tmp_path / "out").exists()


def _i19_unreadable_prefix(probe: Path) -> list[str]:
    """A command prefix under which a chmod-000 file cannot be read: none for a normal user; for root, capsh without
    CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH. Skips when neither works here."""
    if os.geteuid() != 0:
        return []
    drop = ["capsh", "--drop=cap_dac_override,cap_dac_read_search", "--", "-c"]
    if shutil.which("capsh"):
        try:
            proc = subprocess.run(drop + [f"cat {probe}"], capture_output=True, timeout=30)
        except OSError:
            proc = None
        if proc is not None and proc.returncode != 0 and b"Permission denied" in proc.stderr:
            return drop
    pytest.skip("running as root without a way to drop CAP_DAC_OVERRIDE (capsh): chmod 000 files stay readable")


@pytest.mark.parametrize("what", ["file", "subfolder"])
def test_issue19_cli_mine_unreadable_file_or_subfolder_is_a_row(tmp_path, what):
    """issue 19 (hostile pass): a video that cannot be read (chmod 000) or a subfolder that cannot be listed is a
    failed row naming it (missing_video), not a crash and not silently left out."""
    folder, _ = _i19_folder(tmp_path)
    if what == "file":
        locked = i19_write_video(folder / "secret.mp4", I19_GOOD_FRAMES, seed=5)
    else:
        locked = folder / "locked"
        locked.mkdir()
        i19_write_video(locked / "inside.mp4", I19_GOOD_FRAMES, seed=5)
    locked.chmod(0)
    try:
        prefix = _i19_unreadable_prefix(locked / "inside.mp4" if what == "subfolder" else locked)
        command = [sys.executable, "-m", "mimcl_hub.cli", "mine", str(folder), "--output", str(tmp_path / "out"),
                   *I19_MINE]
        import shlex

        argv = prefix + [shlex.join(command)] if prefix else command
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, env={**os.environ})
    finally:
        locked.chmod(0o755)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["failed_by_reason"] == {"missing_video": 1} and report["mined"] == 1
    [message] = report["errors"].values()
    expected = "cannot be read (Permission denied)" if what == "file" else "cannot be listed (Permission denied)"
    assert str(locked) in message and expected in message


def test_issue19_mined_folder_loads_and_trains_from_another_working_directory(tmp_path, monkeypatch, capsys,
                                                                             bundled_paths):
    """issue 19 item 2: mined with a relative SOURCE from one working directory, the folder's clips (absolute
    `video` paths, said so in the card) load into the clip bank and the training set from another one."""
    from huggingface_hub import DatasetCard

    from mimcl_hub.cli import main
    from mimcl_hub.data import AugmentConfig, build_train_dataset, load_twin_clips

    root = tmp_path.resolve()
    (root / "project" / "vids").mkdir(parents=True)
    shutil.copy(bundled_paths["carphone_pristine.mp4"], root / "project" / "vids" / "carphone.mp4")
    (root / "elsewhere" / "deeper").mkdir(parents=True)
    monkeypatch.chdir(root / "elsewhere" / "deeper")
    code = main(["mine", "../../project/vids", "--output", "../../project/mined", "--limit", "3", *I19_MINE])
    assert code == 0, capsys.readouterr().err
    out = root / "project" / "mined"
    mined = datasets.load_dataset(str(out), split="train")
    assert mined["video"] == [str(root / "project" / "vids" / "carphone.mp4")] * 3
    mine_block = DatasetCard.load(out / "README.md").data.to_dict()["mimcl_mine"]
    assert mine_block["video_paths"] == "absolute" and mine_block["source"] == "../../project/vids"
    assert mine_block["source_path"] == str(root / "project" / "vids")
    printed = json.loads(capsys.readouterr().out)
    assert mine_block["report"]["clips"] == 3 and mine_block["report"]["twins"] == printed["twins"]

    monkeypatch.chdir(root)                                           # another working directory
    bank = load_twin_clips(datasets.load_dataset("project/mined", split="train"))
    assert bank.num_clips == 3 and bank.frames[0].shape == (16, 3, 78, 96)
    train_set = build_train_dataset(str(out), twin_mode="mi", augment=AugmentConfig(img_size=16), seed=0)
    item = train_set[0]
    assert item is not None and len(train_set) > 0
