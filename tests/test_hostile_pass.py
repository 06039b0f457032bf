"""Issue 19: a fresh hostile pass over mimcl_hub (cases other than issue 19's sixteen).

Each test is one defect the pass found, on real inputs: objectives built from JSON arguments of the wrong type or
size, a twin batch larger than the batch, an accumulation longer than the epoch, a kNN k larger than its train set,
a ``local-dir:`` backbone with a hostile ``config.json``, an encoder saved with another input size than it was trained
at, top-5 on a label space with 5 or fewer used classes, Hub ids offline, ``mimcl mine`` over an existing output,
library errors that wrap a full disk, recipe files that raise or exit, leaderboards given the same folder twice or two
folders of the same name or a card with 10 000 results, and pushes of encoders that would not load.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

import mimcl_hub  # noqa: F401  (registers the small-image timm variants)
from mimcl_hub.cli import main as mimcl

sys.path.insert(0, os.path.dirname(__file__))
from helpers import mount_namespace_available, save_test_vit_encoder  # noqa: E402


def _one_line_error(capsys, code: int, *needles: str) -> str:
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err, err
    line = [l for l in err.splitlines() if "error:" in l][-1]
    for needle in needles:
        assert needle in err, (needle, err)
    return line


@pytest.fixture(scope="module")
def encoder(tmp_path_factory) -> Path:
    """A real encoder folder: test_vit built and saved at 16 px (its timm default is 160 px)."""
    return save_test_vit_encoder(tmp_path_factory.mktemp("hostile") / "enc")


@pytest.fixture(scope="module")
def evaluated(encoder, tmp_path_factory) -> Path:
    """A copy of ``encoder`` with kNN results in its card (what the leaderboard ranks)."""
    from mimcl_hub.eval.evaluate import evaluate_encoder

    folder = tmp_path_factory.mktemp("evaluated") / "enc"
    shutil.copytree(encoder, folder)
    evaluate_encoder(folder, datasets=["digits"], linear=False, max_train=60, max_test=40)
    return folder


# =============================================================================================================
# objective arguments (--objective_args): types, finiteness, size, checked before anything is allocated
# =============================================================================================================

BAD_OBJECTIVE_ARGS = {
    "infinite_temperature": ({"temperature": float("inf")}, "temperature must be a finite number"),
    "nan_temperature": ({"temperature": float("nan")}, "temperature must be a finite number"),
    "negative_temperature": ({"temperature": -1}, "objective 'simclr': temperature must be > 0"),
    "float_width": ({"hidden_dim": 2.5}, "hidden_dim must be an int >= 1"),
    "string_layers": ({"num_layers": "2"}, "num_layers must be an int >= 1"),
    "string_bool": ({"gather_distributed": "no"}, "gather_distributed must be true or false"),
    "huge_width": ({"hidden_dim": 100_000_000}, "refused before allocating it"),
}


@pytest.mark.parametrize("case", list(BAD_OBJECTIVE_ARGS))
def test_objective_arguments_are_typed_and_bounded(case):
    from mimcl_hub.objectives import build_objective

    kwargs, text = BAD_OBJECTIVE_ARGS[case]
    with pytest.raises(ValueError, match="objective 'simclr'") as info:
        build_objective("simclr", 192, **kwargs)
    assert text in str(info.value)


def test_a_huge_moco_queue_is_refused_before_allocating():
    from mimcl_hub.objectives import MAX_OBJECTIVE_ELEMENTS, build_objective

    with pytest.raises(ValueError, match="1,280,000,332,036 parameters and buffers"):
        build_objective("moco", 192, queue_size=10**10)
    assert MAX_OBJECTIVE_ELEMENTS == 2**31
    assert sum(b.numel() for b in build_objective("moco", 192, queue_size=64).buffers()) < 10**5   # sane ones build


@pytest.mark.parametrize("case", list(BAD_OBJECTIVE_ARGS))
def test_train_config_names_objective_args(case, tmp_path):
    from mimcl_hub.train import ConfigError, TrainConfig

    kwargs, text = BAD_OBJECTIVE_ARGS[case]
    with pytest.raises(ConfigError, match="--objective_args: objective 'simclr'") as info:
        TrainConfig(output_dir=str(tmp_path / "run"), objective_args=json.dumps(kwargs))
    assert text in str(info.value)
    with pytest.raises(ConfigError, match="--mi_objective_args: objective 'moco'"):
        TrainConfig(output_dir=str(tmp_path / "run"), mi_objective="moco", mi_objective_args=json.dumps(kwargs))


def test_cli_train_refuses_a_huge_head_in_one_line(tmp_path, capsys):
    code = mimcl(["train", "--output_dir", str(tmp_path / "run"), "--objective_args", '{"hidden_dim": 100000000}'])
    _one_line_error(capsys, code, "--objective_args", "100000000")
    assert not (tmp_path / "run").exists()


# =============================================================================================================
# settings that were silently changed: twin batch > batch, kNN k > its train rows, accumulation > epoch
# =============================================================================================================


def test_twin_batch_larger_than_the_batch_is_refused(tmp_path):
    from mimcl_hub.train import ConfigError, TrainConfig

    with pytest.raises(ConfigError, match=r"--twin_batch_size: 64 twin pairs .* batch of 8 .*use at most 8"):
        TrainConfig(output_dir=str(tmp_path / "r"), per_device_train_batch_size=8, twin_batch_size=64)
    TrainConfig(output_dir=str(tmp_path / "r"), per_device_train_batch_size=8, twin_batch_size=8)


def test_a_recipe_with_a_smaller_batch_takes_its_twin_batch_along(tmp_path):
    """Recipes leave twin_batch_size unset (= the batch), so lowering the batch is never refused for it."""
    from mimcl_hub.train import RECIPES, parse_config

    for name, recipe in RECIPES.items():
        config = parse_config(["--per_device_train_batch_size", "8", "--output_dir", str(tmp_path / name)],
                              defaults=recipe.defaults())
        assert config.twin_batch_size is None and config.per_device_train_batch_size == 8, name


@pytest.fixture(scope="module")
def mined_two_scenes(tmp_path_factory) -> str:
    from mimcl_hub.data import make_scenes, mine_dataset

    folder = tmp_path_factory.mktemp("mined") / "scenes"
    mine_dataset(make_scenes(1, seed=3, num_frames=12, cache_dir=str(tmp_path_factory.mktemp("cache"))),
                 max_side=128).save_to_disk(str(folder))
    return str(folder)


def test_accumulation_longer_than_an_epoch_is_refused_before_training(tmp_path, mined_two_scenes):
    from accelerate.state import AcceleratorState, GradientState

    from mimcl_hub.train import ConfigError, TrainConfig, train

    out = tmp_path / "run"
    config = TrainConfig(output_dir=str(out), video_dataset=mined_two_scenes, model_name="test_vit", img_size=16,
                         per_device_train_batch_size=4, twin_batch_size=4, gradient_accumulation_steps=50,
                         max_steps=1, eval_dataset="none", report_to="none", disable_tqdm=True, mixed_precision="no")
    try:
        with pytest.raises(ConfigError, match=r"--gradient_accumulation_steps: 50 micro-batches .* only 5 batches"):
            train(config)
    finally:
        AcceleratorState._reset_state(True)
        GradientState._reset_state()
    assert not out.exists()


def test_a_knn_k_above_the_train_rows_is_recorded_as_the_k_used(evaluated, tmp_path):
    """kNN clamps k to the train rows; the results, eval_results.json and the card say the k that was used."""
    from mimcl_hub.eval import KNNMonitor, load_knn_datasets
    from mimcl_hub.eval.evaluate import evaluate_encoder

    out = tmp_path / "out"
    result = evaluate_encoder(evaluated, datasets=["digits"], linear=False, knn_k=1000, max_train=50, max_test=20,
                              output_dir=out)["results"]["digits"]
    assert result["knn_k"] == 50
    assert json.loads((out / "eval_results.json").read_text())["results"]["digits"]["knn_k"] == 50
    assert "k=50,T=0.07" in (out / "README.md").read_text() and "k=1000" not in (out / "README.md").read_text()
    train, test = load_knn_datasets("digits", img_size=16, max_train=40, max_test=10)
    assert KNNMonitor(train, test, k=100).k == 40                   # what training's card records


def test_top5_needs_more_than_five_classes_with_train_rows():
    from mimcl_hub.eval.knn import knn_accuracy

    rng = np.random.default_rng(0)
    feats = torch.from_numpy(rng.normal(size=(40, 8))).float()
    labels = torch.arange(40) % 2                                   # 2 classes used of a 1000-name ClassLabel
    two = knn_accuracy(feats[:30], labels[:30], feats[30:], labels[30:], k=5, num_classes=1000)
    assert "top5" not in two                                        # it would be 1.0 whatever the features
    ten = knn_accuracy(feats[:30], torch.arange(30) % 10, feats[30:], torch.arange(10), k=5, num_classes=1000)
    assert 0.0 <= ten["top5"] <= 1.0


# =============================================================================================================
# encoder folders: a hostile local-dir: backbone, the saved input size
# =============================================================================================================


def test_local_dir_backbone_is_checked_as_an_untrusted_folder(encoder, tmp_path):
    from mimcl_hub.train import ConfigError, TrainConfig

    config = json.loads((encoder / "config.json").read_text())
    huge = tmp_path / "huge"
    shutil.copytree(encoder, huge)
    (huge / "config.json").write_text(json.dumps(dict(config, model_args=dict(config["model_args"],
                                                                              embed_dim=1_000_000))))
    with pytest.raises(ConfigError, match=r"--model_name: .*huge/config.json: model_args.embed_dim must be an int"):
        TrainConfig(output_dir=str(tmp_path / "r"), model_name=f"local-dir:{huge}", img_size=16)
    other = tmp_path / "other"
    shutil.copytree(encoder, other)
    (other / "config.json").write_text(json.dumps(dict(config, architecture="vit_tiny_patch4_32")))
    with pytest.raises(ConfigError, match=r"weights do not match .*other/config.json.*Nothing was allocated"):
        TrainConfig(output_dir=str(tmp_path / "r"), model_name=f"local-dir:{other}", img_size=16)
    TrainConfig(output_dir=str(tmp_path / "r"), model_name=f"local-dir:{encoder}", img_size=16)


def test_the_saved_input_size_is_the_size_it_was_built_at(encoder):
    import timm

    from mimcl_hub import MIMCLEncoder
    from mimcl_hub.hub import RunCard
    from mimcl_hub.hub.card import load_model_card

    config = json.loads((encoder / "config.json").read_text())
    assert config["model_args"]["img_size"] == 16 and config["pretrained_cfg"]["input_size"] == [3, 16, 16]
    assert MIMCLEncoder.from_pretrained(encoder).data_config()["input_size"] == (3, 16, 16)    # what eval uses
    model = timm.create_model(f"local-dir:{encoder}", pretrained=True)
    assert timm.data.resolve_data_config({}, model=model)["input_size"] == (3, 16, 16)
    assert RunCard.from_model_card(load_model_card(encoder), config).img_size == 16


def test_eval_of_a_hub_id_offline_names_the_model(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    proc = subprocess.run([sys.executable, "-m", "mimcl_hub.cli", "eval", "someorg/somemodel"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "encoder 'someorg/somemodel': not a local folder" in proc.stderr
    assert "HF_HUB_OFFLINE" in proc.stderr


# =============================================================================================================
# mimcl mine: the output is checked before any clip is read; a full disk names what it could not write
# =============================================================================================================


def test_mine_refuses_an_existing_output_before_reading_the_source(tmp_path, capsys):
    out = tmp_path / "mined"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    missing = tmp_path / "no_such_video.mp4"            # reading it would fail: the output is checked first
    code = mimcl(["mine", str(missing), "--output", str(out)])
    _one_line_error(capsys, code, f"{out} already exists (pass --overwrite")
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a dataset")
    code = mimcl(["mine", str(missing), "--output", str(a_file), "--overwrite"])
    _one_line_error(capsys, code, "exists and is not a folder")
    assert a_file.read_text() == "not a dataset" and (out / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("full", ["datasets_cache", "output"])
def test_a_full_disk_is_one_line_naming_it(tmp_path, full):
    """The Datasets cache on a full disk (``datasets`` wraps the OSError in a DatasetGenerationError) or the output
    on a full disk: exit 2, the reason in one line, nothing left behind."""
    why = mount_namespace_available()
    if why:
        pytest.skip(why)
    disk = tmp_path / "disk"
    disk.mkdir()
    cache = disk / "cache" if full == "datasets_cache" else tmp_path / "cache"
    out = tmp_path / "mined" if full == "datasets_cache" else disk / "mined"
    env = dict(os.environ, HF_DATASETS_CACHE=str(cache), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    proc = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                           f'mount -t tmpfs -o size=1m tmpfs {disk} && exec "$0" "$@"', sys.executable, "-m",
                           "mimcl_hub.cli", "mine", "scenes:2", "--seed", "11", "--output", str(out)],
                           env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "No space left on device" in proc.stderr
    if full == "output":
        assert f"cannot write the dataset to {out} (nothing was written)" in proc.stderr
    assert not out.exists()


def test_exit_code_follows_a_library_wrapper_but_never_a_bug():
    from datasets.exceptions import DatasetGenerationError

    from mimcl_hub.errors import exit_code, failure_message

    try:
        try:
            raise OSError(28, "No space left on device")
        except OSError as e:
            raise DatasetGenerationError("An error occurred while generating the dataset") from e
    except DatasetGenerationError as wrapped:
        assert exit_code(wrapped) == 2
        assert failure_message(wrapped) == ("An error occurred while generating the dataset "
                                            "(OSError: [Errno 28] No space left on device)")
    try:
        try:
            raise ValueError("bad")
        except ValueError as e:
            raise RuntimeError("a bug") from e
    except RuntimeError as bug:
        assert exit_code(bug) is None                  # a builtin wrapper may be our bug: keep its traceback


# =============================================================================================================
# mimcl train --recipe PATH.py: whatever the file does wrong is one line naming it, never "exit 0, nothing trained"
# =============================================================================================================

BAD_RECIPES = {
    "raises": ('raise RuntimeError("boom")\n', "running it raised RuntimeError at line 1: boom"),
    "syntax_error": ("def f(:\n", "not valid Python (line 1"),
    "exits_zero": ("import sys\nsys.exit(0)\n", "running it raised SystemExit at line 2"),
    "missing_import": ("import mimcl_no_such_package_xyz\n", "ModuleNotFoundError at line 1"),
    "no_defaults": ("X = 1\n", "the file defines no DEFAULTS dict"),
}


@pytest.mark.parametrize("case", list(BAD_RECIPES))
def test_a_broken_recipe_file_is_one_line_naming_it(tmp_path, capsys, case):
    text, needle = BAD_RECIPES[case]
    recipe = tmp_path / f"my_recipe_{case}.py"
    recipe.write_text(text)
    code = mimcl(["train", "--recipe", str(recipe), "--output_dir", str(tmp_path / "run")])
    _one_line_error(capsys, code, f"--recipe {recipe}", needle)
    assert not (tmp_path / "run").exists()


# =============================================================================================================
# leaderboard: one row per folder, distinct names, a bound on results per card, outputs
# =============================================================================================================


def test_the_same_folder_spelled_three_ways_is_one_row(evaluated, tmp_path):
    from mimcl_hub.hub.leaderboard import build_leaderboard

    link = tmp_path / "link"
    link.symlink_to(evaluated)
    board = build_leaderboard([str(evaluated), f"{evaluated}/", f"{evaluated}/../{evaluated.name}", str(link)])
    assert len(board.rows) == 1 and not board.errors


def test_two_folders_of_the_same_name_get_distinct_names(evaluated, tmp_path):
    from mimcl_hub.hub.leaderboard import build_leaderboard

    a, b = tmp_path / "a" / "enc", tmp_path / "b" / "enc"
    shutil.copytree(evaluated, a)
    shutil.copytree(evaluated, b)
    board = build_leaderboard([str(a), str(b)])
    assert sorted(row["model"] for row in board.rows) == sorted([str(a), str(b)])


def test_a_card_with_ten_thousand_results_is_not_ranked(evaluated, tmp_path, capsys):
    import yaml

    big = tmp_path / "big"
    shutil.copytree(evaluated, big)
    _, front, body = (big / "README.md").read_text().split("---\n", 2)
    meta = yaml.safe_load(front)
    first = meta["model-index"][0]["results"][0]
    meta["model-index"][0]["results"] += [
        {"task": first["task"], "dataset": {"name": f"d{i}", "type": f"d{i}", "split": "test"},
         "metrics": [{"type": "accuracy", "value": 0.5, "name": "kNN top-1 accuracy"}]} for i in range(10_000)]
    (big / "README.md").write_text("---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n" + body)
    out = tmp_path / "board.json"
    code = mimcl(["leaderboard", str(big), str(evaluated), "--output", str(out)])
    assert code == 0
    board = json.loads(out.read_text())
    assert [row["model"] for row in board["rows"]] == [evaluated.name] and len(board["columns"]) <= 3
    assert "10,002 results, more than the 256" in board["errors"][0]["error"]


def test_leaderboard_output_folders_and_formats(evaluated, tmp_path, capsys):
    out = tmp_path / "new" / "dir" / "board.md"
    assert mimcl(["leaderboard", str(evaluated), "--output", str(out)]) == 0
    assert out.read_text().startswith("| rank | model |")
    code = mimcl(["leaderboard", str(evaluated), "--format", "json", "--output", str(tmp_path / "board.html")])
    _one_line_error(capsys, code, "--format json contradicts --output")
    assert not (tmp_path / "board.html").exists()


# =============================================================================================================
# push: an encoder that would not load is never published; branch names; hashing does not load files
# =============================================================================================================


@pytest.mark.parametrize("case", ["empty_weights", "nan_weights", "config_of_another_model"])
def test_push_refuses_an_encoder_that_would_not_load_before_any_request(encoder, tmp_path, case):
    from safetensors.torch import load_file, save_file

    from mimcl_hub.hub import PushError, push_encoder

    folder = tmp_path / "enc"
    shutil.copytree(encoder, folder)
    if case == "empty_weights":
        (folder / "model.safetensors").write_bytes(b"")
    elif case == "nan_weights":
        state = load_file(str(folder / "model.safetensors"))
        name = sorted(state)[0]
        state[name] = torch.full_like(state[name], float("nan"))
        save_file(state, str(folder / "model.safetensors"))
    else:
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps(dict(config, architecture="vit_tiny_patch4_32")))
    # a closed port: any request would fail with a connection error, not this message
    with pytest.raises(PushError, match=rf"cannot push {folder}: it would not load"):
        push_encoder(folder, "tester/enc", token="hf_x", endpoint="http://127.0.0.1:9", max_retries=0)


@pytest.mark.parametrize("revision", ["../../x", "a..b", "with space", "x.lock", "/x", "a:b"])
def test_push_refuses_a_revision_that_is_no_branch_name(encoder, revision):
    from mimcl_hub.hub import PushError, push_encoder

    with pytest.raises(PushError, match="not a git branch name"):
        push_encoder(encoder, "tester/enc", token="hf_x", endpoint="http://127.0.0.1:9", revision=revision,
                     max_retries=0)


def test_push_hashes_files_in_chunks(tmp_path):
    from mimcl_hub.hub.push import _file_digest, git_blob_sha1

    data = os.urandom(3_000_001)
    small = tmp_path / "small.bin"
    small.write_bytes(data)
    digest = _file_digest(small)
    assert (digest.size, digest.sha1, digest.sha256) == (len(data), git_blob_sha1(data), hashlib.sha256(data).hexdigest())
    big = tmp_path / "big.bin"                          # a sparse 256 MiB file: hashed without loading it
    with open(big, "wb") as f:
        f.truncate(256 << 20)
    tracemalloc.start()
    try:
        _file_digest(big)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, peak


# =============================================================================================================
# Ctrl-C: one line and status 130, nothing half-written (mine), the checkpoints so far kept (train)
# =============================================================================================================


def _interrupt_when(args: list[str], marker: str, cwd: Path) -> tuple[int, str]:
    """Run ``python -m mimcl_hub.cli ARGS``, send SIGINT (Ctrl-C) once ``marker`` appears on its stderr."""
    import signal

    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "mimcl_hub.cli", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if marker in line:
            proc.send_signal(signal.SIGINT)
            break
    rest = proc.stderr.read()
    proc.wait(timeout=300)
    return proc.returncode, "".join(seen) + rest


def test_ctrl_c_during_mining_is_one_line_and_leaves_no_output(tmp_path):
    out = tmp_path / "mined"
    code, err = _interrupt_when(["mine", "scenes:40", "--seed", "21", "--output", str(out)], "mining 40 clips",
                                tmp_path)
    assert code == 130 and "Traceback" not in err, err[-3000:]
    assert "mimcl mine: interrupted (Ctrl-C)" in err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_ctrl_c_during_training_keeps_the_checkpoints_and_says_how_to_resume(tmp_path, mined_two_scenes):
    out = tmp_path / "run"
    code, err = _interrupt_when(["train", "--output_dir", str(out), "--video_dataset", mined_two_scenes,
                                 "--model_name", "test_vit", "--img_size", "16", "--per_device_train_batch_size", "4",
                                 "--max_steps", "1000", "--save_steps", "1", "--eval_dataset", "none", "--report_to",
                                 "none", "--disable_tqdm", "--mixed_precision", "no"],
                                "checkpoint-1", tmp_path)
    assert code == 130 and "Traceback" not in err, err[-3000:]
    assert "interrupted (Ctrl-C)" in err and "--resume_from_checkpoint latest" in err
    assert any(p.name.startswith("checkpoint-") for p in (out / "checkpoints").iterdir())
