"""The Accelerate training loop end to end, at tiny sizes (ViT-Ti/4 at 16 px, batch 8, a mined
two-scene dataset): flag validation, checkpoints + encoder folder, SIGKILL resume equality, kills
while a checkpoint is written, the output-folder lock, NaN stops, LARS, and a 2-process DDP run."""

import json
import shutil
import math
import os
import runpy
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from helpers import fresh_accelerate_state, mined_scenes
from mimcl_hub.train import (CheckpointError, ConfigError, FaultPlan, NonFiniteLossError, OutputDirLockedError,
                             TrainConfig, TrainingInterrupted, build_optimizer, latest_checkpoint, list_checkpoints,
                             lr_lambda, parse_config, resolve_checkpoint, train)

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "vit_simclr.py"
WITH_FAULTS = Path(__file__).resolve().parent / "train_with_faults.py"
RECIPES = sorted(p.stem for p in (REPO / "recipes").glob("*.py"))

#: the vit_simclr recipe's defaults: in-process runs use them too, so they equal the subprocess runs
DEFAULTS = runpy.run_path(str(RECIPE))["DEFAULTS"]
#: tiny and fp32 (resume equality is checked at 1e-4)
TINY = dict(DEFAULTS, model_name="vit_tiny_patch4_32", img_size=16, per_device_train_batch_size=8, twin_batch_size=8,
            mixed_precision="no", eval_dataset="none", disable_tqdm=True, warmup_steps=2, logging_steps=1,
            save_total_limit=None, report_to="none")
TINY.pop("output_dir")
#: the resume runs: 24 steps (several epochs of the small mined set), checkpoints every 3 steps
RESUME = dict(TINY, max_steps=24, save_steps=3)


def _env(**extra):
    return dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONUNBUFFERED="1", **extra)


def _script(faults: dict | None) -> list[str]:
    """The recipe, or the recipe under a fault plan (tests/train_with_faults.py)."""
    return [str(RECIPE)] if faults is None else [str(WITH_FAULTS), json.dumps(faults)]


def _flags(values: dict) -> list[str]:
    out = []
    for k, v in values.items():
        if v is not None:
            out += [f"--{k}", str(v)]
    return out


def _cfg(out, scenes, base=None, **overrides) -> TrainConfig:
    return TrainConfig(**{**(TINY if base is None else base), **overrides, "output_dir": str(out),
                          "video_dataset": scenes})


def _weights(folder: Path) -> dict:
    return load_file(folder / "encoder" / "model.safetensors")


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


_fresh_accelerate_state = pytest.fixture(autouse=True)(fresh_accelerate_state)
scenes = pytest.fixture(scope="module")(mined_scenes)


@pytest.fixture(scope="module")
def reference(scenes, tmp_path_factory):
    """The uninterrupted run every resumed run must reproduce."""
    out = tmp_path_factory.mktemp("reference")
    result = train(_cfg(out, scenes, RESUME))
    assert result.global_step == 24 and result.epoch > 2      # resumed runs cross epoch boundaries
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    return out


# ----------------------------------------------------------------------------------------------------
# flags
# ----------------------------------------------------------------------------------------------------


def test_bad_flags_fail_fast_with_every_problem_listed():
    with pytest.raises(ConfigError) as err:
        parse_config(["--objective", "simclrr", "--max_steps", "0", "--video_dataset", "/no/such/folder",
                      "--push_to_hub", "--learning_rate", "-1", "--mi_objective", "byol"])
    message = str(err.value)
    assert "--objective: unknown objective 'simclrr' (did you mean 'simclr'?)" in message
    for name in ("barlow_twins", "byol", "dino", "moco", "simclr", "simsiam", "vicreg"):
        assert name in message                                     # the valid names are listed
    assert "--max_steps: must be a positive number" in message
    assert "--video_dataset: '/no/such/folder': no such file or folder" in message
    assert "--hub_model_id: --push_to_hub needs --hub_model_id" in message
    assert "--learning_rate" in message
    assert "--mi_objective" not in message                          # byol is valid


@pytest.mark.parametrize("argv,expected", [
    (["--max_steps", "-5"], "--max_steps"),
    (["--max_steps", "-1", "--num_train_epochs", "0"], "--num_train_epochs"),
    (["--per_device_train_batch_size", "1"], "--per_device_train_batch_size"),
    (["--save_steps", "-1"], "--save_steps"),
    (["--eval_dataset", "./missing_dir"], "--eval_dataset"),
    (["--model_name", "vit_tiny_patch4_23"], "close matches: vit_tiny_patch4_32"),
    (["--objective_args", "{not json"], "--objective_args: not valid JSON"),
    (["--objective_args", '{"temprature": 0.5}'], "simclr takes no argument(s) ['temprature']"),
    (["--report_to", "tensorbored"], "--report_to"),
    (["--learning_rte", "0.1"], "did you mean --learning_rate?"),
])
def test_single_bad_flag(argv, expected):
    with pytest.raises(ConfigError, match=None) as err:
        parse_config(argv)
    assert expected in str(err.value)


def test_bad_twin_mode_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as err:
        parse_config(["--twin_mode", "best"])
    assert err.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_precedence_defaults_file_cli(tmp_path):
    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text("max_steps: 7\nlearning_rate: 0.01\nobjective_args: {temperature: 0.5}\n")
    recipe = {"objective": "moco", "max_steps": 3, "output_dir": str(tmp_path / "o")}
    config = parse_config(["--config", str(cfg_file), "--learning_rate", "0.02"], defaults=recipe)
    assert (config.objective, config.max_steps, config.learning_rate) == ("moco", 7, 0.02)
    assert config.objective_kwargs()[0] == {"temperature": 0.5}
    json_file = tmp_path / "run.json"
    json_file.write_text(json.dumps({"twin_mode": "random", "mi_weight": 0.5}))
    config = parse_config([str(json_file)])                         # HF habit: a single positional file
    assert (config.twin_mode, config.mi_weight) == ("random", 0.5)
    (tmp_path / "bad.json").write_text(json.dumps({"max_stepz": 3}))
    with pytest.raises(ConfigError, match="max_stepz .did you mean max_steps"):
        parse_config([str(tmp_path / "bad.json")])


def test_recipes_parse_and_fail_fast(capsys):
    assert {"vit_simclr", "resnet18_byol", "resnet18_moco", "resnet18_simsiam", "resnet18_barlow_twins",
            "resnet18_vicreg", "vit_dino"} <= set(RECIPES)
    for name in RECIPES:
        module = runpy.run_path(str(REPO / "recipes" / f"{name}.py"))
        config = parse_config([], defaults=module["DEFAULTS"])      # the defaults form a valid config
        assert config.output_dir == f"outputs/{name}"
        assert module["main"](["--max_steps", "0"]) == 2            # bad flags: exit 2, no work
        assert "--max_steps" in capsys.readouterr().err


def test_direct_config_is_validated_too(tmp_path):
    with pytest.raises(ConfigError, match="twin_mode"):
        TrainConfig(output_dir=str(tmp_path), twin_mode="best")


def test_lr_schedule():
    f = lr_lambda(warmup_steps=4, total_steps=20, min_lr_ratio=0.1)
    assert [round(f(s), 3) for s in range(4)] == [0.2, 0.4, 0.6, 0.8]
    assert f(4) == pytest.approx(1.0)
    assert f(12) == pytest.approx(0.1 + 0.9 * 0.5)
    assert f(20) == pytest.approx(0.1) and f(30) == pytest.approx(0.1)


def test_lars_excludes_bias_and_norm_from_adaptation(tmp_path):
    backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    objective = torch.nn.Linear(4, 2)
    config = TrainConfig(output_dir=str(tmp_path), optimizer="lars", learning_rate=0.5, weight_decay=1e-4,
                         momentum=0.9, lars_trust_coefficient=0.001)
    opt = build_optimizer(config, backbone, objective)
    decay, no_decay = opt.param_groups
    assert {id(p) for p in decay["params"]} == {id(backbone[0].weight), id(objective.weight)}
    assert decay["always_adapt"] and not no_decay["always_adapt"] and no_decay["weight_decay"] == 0.0
    params = list(backbone.parameters()) + list(objective.parameters())
    before = [p.detach().clone() for p in params]
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    w0, w1 = before[0], backbone[0].weight.detach()
    g = torch.ones_like(w0) + 1e-4 * w0
    trust = 0.001 * w0.norm() / (torch.ones_like(w0).norm() + 1e-4 * w0.norm() + 1e-8)
    torch.testing.assert_close(w1, w0 - 0.5 * trust * g)                       # adapted (trust ratio)
    torch.testing.assert_close(backbone[0].bias.detach(), before[1] - 0.5)       # bias: plain SGD step
    torch.testing.assert_close(backbone[1].weight.detach(), before[2] - 0.5)     # BN weight: plain SGD step


# ----------------------------------------------------------------------------------------------------
# a short run: checkpoints, encoder folder, model card
# ----------------------------------------------------------------------------------------------------


def test_short_run_saves_checkpoints_and_a_loadable_encoder(scenes, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "run"
    result = train(_cfg(out, scenes, max_steps=4, save_steps=2, save_total_limit=1, eval_dataset="digits",
                        knn_max_train=200, knn_max_test=100, knn_every=2))
    assert result.global_step == 4 and math.isfinite(result.train_loss)
    assert [s for s, _ in list_checkpoints(out)] == [4]                     # rotated: the newest one kept
    assert sorted(os.listdir(out / "checkpoints")) == ["checkpoint-4"]     # no temporary leftovers
    enc = out / "encoder"
    assert {"config.json", "model.safetensors", "README.md", "training_metrics.json", "twins.png",
            "heads"} <= set(os.listdir(enc))
    config = json.loads((enc / "config.json").read_text())
    assert config["num_classes"] == 0 and "num_classes" not in config["model_args"]

    # the trained backbone = the backbone state in the last checkpoint (model 0 of the Accelerator)
    from mimcl_hub.models import create_backbone

    trained = create_backbone("vit_tiny_patch4_32", img_size=16)
    trained.load_state_dict(load_file(out / "checkpoints" / "checkpoint-4" / "model.safetensors"))
    trained.eval()
    import timm
    from transformers import AutoModel

    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        ref = trained(x)
        torch.testing.assert_close(timm.create_model(f"local-dir:{enc}", pretrained=True).eval()(x), ref,
                                   atol=1e-5, rtol=0)
        torch.testing.assert_close(AutoModel.from_pretrained(str(enc)).eval()(pixel_values=x).pooler_output, ref,
                                   atol=1e-5, rtol=0)

    from huggingface_hub import ModelCard

    results = ModelCard.load(enc / "README.md").data.eval_results
    top1 = [r for r in results if r.metric_type == "accuracy"][0]
    assert top1.metric_value == pytest.approx(result.metrics["knn_top1"], abs=1e-4)
    logs = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]
    assert [d["step"] for d in logs if "knn_top1" in d] == [2]              # the online monitor at step 2
    assert any("final/knn_top1" in d for d in logs)
    assert all(d["twin_batch"] >= 2 and d["mi_skipped"] == 0 for d in logs if "twin_batch" in d)  # MI branch ran
    saved = json.loads((out / "train_results.json").read_text())
    assert saved["global_step"] == 4 and saved["metrics"]["knn_top1"] == result.metrics["knn_top1"]


# ----------------------------------------------------------------------------------------------------
# resume
# ----------------------------------------------------------------------------------------------------


def _start(out: Path, scenes: str, faults: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *_script(faults), *_flags(dict(RESUME, output_dir=out, video_dataset=scenes))],
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_sigkill_then_resume_matches_an_uninterrupted_run(scenes, reference, tmp_path):
    out = tmp_path / "killed"
    proc = _start(out, scenes)
    marker = out / "checkpoints" / "checkpoint-3" / "mimcl_checkpoint.json"
    deadline = time.time() + 180
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    log = proc.communicate()[0]
    assert proc.returncode == -signal.SIGKILL, log[-3000:]
    assert not (out / "encoder").exists()                      # it really died mid-run
    done = latest_checkpoint(out)
    assert done is not None and int(done.name.split("-")[1]) < 24

    result = train(_cfg(out, scenes, RESUME, resume_from_checkpoint="latest"))
    assert result.resumed_from == str(done) and result.global_step == 24
    assert _max_diff(_weights(out), _weights(reference)) <= 1e-4
    heads = load_file(out / "checkpoints" / "checkpoint-24" / "model_1.safetensors")
    heads_ref = load_file(reference / "checkpoints" / "checkpoint-24" / "model_1.safetensors")
    assert _max_diff(heads, heads_ref) <= 1e-4                  # objective state (heads) too


def test_kill_while_writing_a_checkpoint_never_exposes_it(scenes, reference, tmp_path):
    out = tmp_path / "killed_in_save"
    proc = _start(out, scenes, faults={"kill_in_checkpoint_at_step": 6})
    log = proc.communicate(timeout=300)[0]
    assert proc.returncode == -signal.SIGKILL, log[-3000:]
    ckpts = out / "checkpoints"
    partial = ckpts / ".tmp-checkpoint-6"
    assert partial.is_dir() and (partial / "model.safetensors").exists()   # killed after writing weights
    assert not (ckpts / "checkpoint-6").exists()
    assert [s for s, _ in list_checkpoints(out)] == [3]
    assert latest_checkpoint(out) == ckpts / "checkpoint-3"
    with pytest.raises(CheckpointError, match="not a complete mimcl_hub checkpoint"):
        resolve_checkpoint(str(partial), out)

    result = train(_cfg(out, scenes, RESUME, resume_from_checkpoint="latest"))
    assert result.resumed_from == str(ckpts / "checkpoint-3")
    assert not partial.exists()                                  # the leftover is cleaned up
    assert _max_diff(_weights(out), _weights(reference)) <= 1e-4


def test_resume_guards(scenes, reference, tmp_path):
    with pytest.raises(CheckpointError, match="already has checkpoints"):
        train(_cfg(reference, scenes, RESUME))
    with pytest.raises(CheckpointError, match="objective: checkpoint 'simclr' vs now 'byol'"):
        train(_cfg(reference, scenes, RESUME, resume_from_checkpoint="latest", objective="byol"))
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        train(_cfg(tmp_path / "empty", scenes, RESUME, resume_from_checkpoint="latest"))


def test_overwrite_output_dir_starts_afresh(scenes, tmp_path):
    out = tmp_path / "again"
    train(_cfg(out, scenes, max_steps=2, save_steps=1))
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    result = train(_cfg(out, scenes, max_steps=1, save_steps=1, overwrite_output_dir=True))
    assert result.global_step == 1
    assert [s for s, _ in list_checkpoints(out)] == [1]         # the earlier run's checkpoint-2 is gone


def test_two_runs_on_one_output_dir_do_not_clobber(scenes, tmp_path):
    from mimcl_hub.train.checkpoint import run_lock

    out = tmp_path / "shared"
    with run_lock(out):                                          # "another run" holds the folder
        with pytest.raises(OutputDirLockedError, match=f"pid {os.getpid()}"):
            train(_cfg(out, scenes, max_steps=2))
    assert not (out / "checkpoints").exists()


# ----------------------------------------------------------------------------------------------------
# NaN
# ----------------------------------------------------------------------------------------------------


def test_nan_loss_stops_with_the_last_good_checkpoint_intact(scenes, tmp_path):
    out = tmp_path / "nan"
    cfg = dict(TINY, max_steps=8, save_steps=2)
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at step 5.*checkpoint-4"):
        train(_cfg(out, scenes, cfg), faults=FaultPlan(nan_loss_at_step=5))
    assert [s for s, _ in list_checkpoints(out)] == [2, 4] and not (out / "encoder").exists()
    for t in load_file(out / "checkpoints" / "checkpoint-4" / "model.safetensors").values():
        assert torch.isfinite(t).all()
    # the lock was released and the run continues from the good checkpoint
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    result = train(_cfg(out, scenes, cfg, resume_from_checkpoint="latest"))
    assert result.global_step == 8


def test_exploding_learning_rate_stops_cleanly(scenes, tmp_path):
    out = tmp_path / "explode"
    with pytest.raises(NonFiniteLossError, match="(loss|gradient norm) is (nan|inf)"):
        train(_cfg(out, scenes, max_steps=10, save_steps=1, learning_rate=1e30, optimizer="sgd",
                   max_grad_norm=0.0, warmup_steps=0))
    for _, path in list_checkpoints(out):                        # every checkpoint written is finite
        for t in load_file(path / "model.safetensors").values():
            assert torch.isfinite(t).all()


# ----------------------------------------------------------------------------------------------------
# two processes
# ----------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch_two(out: Path, scenes: str, faults: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()), *_script(faults),
           *_flags(dict(TINY, per_device_train_batch_size=4, twin_batch_size=4, max_steps=4, save_steps=2,
                        check_sync_every=1, output_dir=out, video_dataset=scenes))]
    return subprocess.run(cmd, env=_env(ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1"), capture_output=True,
                          text=True, timeout=300)


def test_two_processes_stay_in_sync(scenes, tmp_path):
    out = tmp_path / "ddp"
    proc = _launch_two(out, scenes)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert json.loads((out / "train_results.json").read_text())["num_processes"] == 2
    logs = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]
    checks = [d for d in logs if "sync_max_diff" in d]
    assert [d["step"] for d in checks] == [1, 2, 3, 4]
    assert all(d["sync_max_diff"] == 0.0 and d["sync_processes"] == 2 for d in checks)
    assert all(d["twin_batch"] >= 2 for d in logs if "twin_batch" in d)
    assert (out / "encoder" / "model.safetensors").exists()


def test_sync_check_catches_diverged_processes(scenes, tmp_path):
    proc = _launch_two(tmp_path / "ddp_bad", scenes, faults={"desync_at_step": 2})
    assert proc.returncode != 0
    assert "ProcessesOutOfSyncError" in proc.stderr and "after step 2" in proc.stderr


# ----------------------------------------------------------------------------------------------------
# the step never waits for the device (issue 13)
# ----------------------------------------------------------------------------------------------------


def test_no_host_reads_on_non_logging_steps(scenes, tmp_path, monkeypatch):
    """Issue 13: losses and logs stay tensors inside a step; the host reads them only at logging steps. Counts
    ``Tensor.item`` calls anywhere, and ``float(t)`` / ``int(t)`` / ``bool(t)`` of tensors in the training loop and
    the objectives, between consecutive optimizer steps: zero where neither step logs, checkpoints nor evaluates."""
    calls: list[str] = []
    real_item = torch.Tensor.item
    monkeypatch.setattr(torch.Tensor, "item", lambda self: calls.append("item") or real_item(self))
    watched = (os.sep + os.path.join("mimcl_hub", "train") + os.sep, os.sep + os.path.join("mimcl_hub", "objectives") + os.sep)
    for name in ("__float__", "__int__", "__bool__", "__index__"):
        real = getattr(torch.Tensor, name)

        def host_read(self, _real=real, _name=name):
            caller = sys._getframe(1).f_code.co_filename
            if any(part in caller for part in watched) and not caller.endswith(os.path.join("train", "data.py")):
                calls.append(f"{_name} in {os.path.basename(caller)}:{sys._getframe(1).f_lineno}")
            return _real(self)

        monkeypatch.setattr(torch.Tensor, name, host_read)
    seen: dict[int, int] = {}
    train(_cfg(tmp_path / "syncs", scenes, max_steps=7, logging_steps=3, save_steps=0, eval_dataset="none"),
          faults=FaultPlan(after_step=lambda step: seen.__setitem__(step, len(calls))))
    # between after_step(k - 1) and after_step(k): step k's micro-batch and optimizer step, plus the logging of
    # step k - 1 when it logs (steps 3, 6 and the last, 7); checkpoints only after the loop (save_steps=0)
    per_step = {k: seen[k] - seen[k - 1] for k in range(2, 8)}
    assert {k: per_step[k] for k in (2, 3, 5, 6)} == {2: 0, 3: 0, 5: 0, 6: 0}, calls
    assert per_step[4] > 0 and per_step[7] > 0         # the logging steps do read (the counter works)


# ----------------------------------------------------------------------------------------------------
# SIGTERM (issue 19 item 16)
# ----------------------------------------------------------------------------------------------------


def test_sigterm_saves_a_checkpoint_and_resume_matches_an_uninterrupted_run(scenes, reference, tmp_path):
    """Issue 19 item 16: SIGTERM (Slurm, preemptible clouds) saves a checkpoint at the next step boundary and exits
    cleanly (status 143, one line, no traceback); resuming from it reproduces the uninterrupted run."""
    out = tmp_path / "terminated"
    proc = _start(out, scenes)
    marker = out / "checkpoints" / "checkpoint-3" / "mimcl_checkpoint.json"
    deadline = time.time() + 180
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGTERM)
    log = proc.communicate(timeout=120)[0]
    assert proc.returncode == 143, log[-3000:]
    assert "stopped by SIGTERM after step" in log and "Traceback" not in log, log[-3000:]
    done = latest_checkpoint(out)
    stopped_at = int(log.split("stopped by SIGTERM after step ")[1].split(";")[0])
    assert done is not None and int(done.name.split("-")[1]) == stopped_at and stopped_at < 24
    assert not (out / "encoder").exists()

    result = train(_cfg(out, scenes, RESUME, resume_from_checkpoint="latest"))
    assert result.resumed_from == str(done) and result.global_step == 24
    assert _max_diff(_weights(out), _weights(reference)) <= 1e-4


def test_sigterm_in_process_raises_training_interrupted_with_the_checkpoint(scenes, tmp_path):
    """Issue 19 item 16: the same path in-process: ``train`` raises TrainingInterrupted naming the saved checkpoint."""
    out = tmp_path / "term_inproc"
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(TrainingInterrupted) as err:
        train(_cfg(out, scenes, max_steps=6, save_steps=0), faults=FaultPlan(sigterm_at_step=2))
    # the signal arrives after step 2; processes agree on it as the next step starts, which finishes and is saved
    assert err.value.step == 3 and err.value.checkpoint == str(out / "checkpoints" / "checkpoint-3")
    assert [s for s, _ in list_checkpoints(out)] == [3]
    assert signal.getsignal(signal.SIGTERM) is before                 # the previous handler is back


# ----------------------------------------------------------------------------------------------------
# resume refuses other data or other state shapes (issue 19 item 14)
# ----------------------------------------------------------------------------------------------------


def test_resume_refuses_another_dataset_or_head_width_naming_both_values(scenes, reference, tmp_path):
    """Issue 19 item 14: a resumed run must not mix in other data at the saved batch position, nor load a state of
    other shapes: the refusal names the setting and both values, before any step."""
    from mimcl_hub.data import make_scenes, mine_dataset

    other = tmp_path / "other_scenes"
    mine_dataset(make_scenes(2, seed=1, num_frames=16, height=128, width=128,
                             cache_dir=str(tmp_path / "cache")), max_side=128).save_to_disk(str(other))
    copy = tmp_path / "copy"
    shutil.copytree(reference, copy)
    with pytest.raises(CheckpointError, match=r"video_dataset: checkpoint '.*scenes' vs now '.*other_scenes'"):
        train(_cfg(copy, str(other), RESUME, resume_from_checkpoint="latest"))
    with pytest.raises(CheckpointError, match=r"objective_args: checkpoint \{\} vs now \{'hidden_dim': 64\}"):
        train(_cfg(copy, scenes, RESUME, resume_from_checkpoint="latest", objective_args='{"hidden_dim": 64}'))
    with pytest.raises(CheckpointError, match=r"max_side: checkpoint 160 vs now 96"):
        train(_cfg(copy, scenes, RESUME, resume_from_checkpoint="latest", max_side=96))
    # the same path with other content (the folder was replaced after the checkpoint): the data fingerprint differs
    moved = tmp_path / "replaced"
    shutil.copytree(scenes, moved / "data")
    train(_cfg(moved / "run", str(moved / "data"), RESUME, max_steps=3, save_steps=3))
    shutil.rmtree(moved / "data")
    shutil.copytree(other, moved / "data")
    with pytest.raises(CheckpointError, match=r"training data fingerprint: checkpoint '.+' vs now '.+'"):
        train(_cfg(moved / "run", str(moved / "data"), RESUME, max_steps=6, resume_from_checkpoint="latest"))
    # settings that may change on resume are accepted (a longer run with another learning rate)
    result = train(_cfg(copy, scenes, RESUME, resume_from_checkpoint="latest", max_steps=25, learning_rate=5e-4))
    assert result.global_step == 25


# ----------------------------------------------------------------------------------------------------
# CPU threads under accelerate launch (issue 13)
# ----------------------------------------------------------------------------------------------------


THREADS_SCRIPT = """
import torch
from mimcl_hub.train.threads import configure_cpu_threads, usable_cores
set_to = configure_cpu_threads("cpu", 1)
print("THREADS", torch.get_num_threads(), usable_cores(), set_to)
"""


@pytest.mark.parametrize("user_env,expect", [({}, "cores"), ({"OMP_NUM_THREADS": "1"}, 1)],
                         ids=["no-config-no-choice", "user-set-OMP_NUM_THREADS"])
def test_accelerate_launch_without_config_uses_every_core(tmp_path, user_env, expect):
    """Issue 13: ``accelerate launch`` without a config sets OMP_NUM_THREADS=1; a CPU run still gets
    cores // processes threads, unless the user set the thread count."""
    script = tmp_path / "threads.py"
    script.write_text(THREADS_SCRIPT)
    env = _env(HF_HOME=str(tmp_path / "hf_home"), **user_env)      # no Accelerate config file anywhere
    if "OMP_NUM_THREADS" not in user_env:
        env.pop("OMP_NUM_THREADS", None)
    proc = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", str(script)], env=env,
                          capture_output=True, text=True, timeout=120)
    line = next(l for l in proc.stdout.splitlines() if l.startswith("THREADS"))
    threads, cores = int(line.split()[1]), int(line.split()[2])
    assert threads == (cores if expect == "cores" else expect), proc.stdout + proc.stderr
