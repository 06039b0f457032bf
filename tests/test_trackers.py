"""Trackers and progress (issue 15, item 5): what ``--report_to`` sends is read back with the trackers' own readers
(TensorBoard's ``EventAccumulator``; wandb's offline run file with wandb's own protobuf schema) and equals what the
run reports (``trainer_log.jsonl``, ``train_results.json``); ``--report_to auto`` without TensorBoard says so; only
the main process of a 2-process run logs; progress bars follow one rule (mimcl_hub._progress): on in a terminal,
off in CI and log files, where long work logs a progress line instead."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import pty
import runpy
import select
import socket
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from mimcl_hub._progress import PROGRESS_ENV, ProgressLog, datasets_progress, progress, show_progress_bars
from mimcl_hub.train import ConfigError, TrainConfig, lr_lambda, parse_config, train
from mimcl_hub.train.trackers import resolve_trackers, tracker_available

from helpers import fresh_accelerate_state, mined_scenes

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "vit_simclr.py"
DEFAULTS = runpy.run_path(str(RECIPE))["DEFAULTS"]
#: tiny and fp32: 4 steps of ViT-Ti/4 at 16 px, a log line per step
TINY = dict(DEFAULTS, model_name="vit_tiny_patch4_32", img_size=16, per_device_train_batch_size=8, twin_batch_size=8,
            mixed_precision="no", eval_dataset="none", warmup_steps=2, logging_steps=1, max_steps=4, save_steps=0)
TINY.pop("output_dir")
#: the kNN monitor on scikit-learn's digits (offline): at step 2 (knn_top1) and at the end (final/knn_top1)
KNN = dict(eval_dataset="digits", knn_every=2, knn_max_train=200, knn_max_test=100)
BAR = "%|"          # what every tqdm bar line contains ("training: 100%|#####| 4/4 ...")


def _installed(name: str) -> bool:
    return tracker_available(name)


needs_tensorboard = pytest.mark.skipif(not _installed("tensorboard"), reason="pip install 'mimcl-hub[tracking]'")
needs_wandb = pytest.mark.skipif(not _installed("wandb"), reason="pip install wandb")


_fresh_accelerate_state = pytest.fixture(autouse=True)(fresh_accelerate_state)
scenes = pytest.fixture(scope="module")(mined_scenes)


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", PROGRESS_ENV, "WANDB_DIR")}
    return dict(env, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONUNBUFFERED="1", **extra)


def _flags(values: dict) -> list[str]:
    return [s for k, v in values.items() if v is not None for s in (f"--{k}", str(v))]


def _log_rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]


def _logged(out: Path, key: str) -> dict[int, float]:
    """{step: value} of ``key`` in the run's own log (trainer_log.jsonl)."""
    return {row["step"]: row[key] for row in _log_rows(out) if key in row}


def _expected_lr(step: int) -> float:
    """The warm-up + cosine schedule of TINY after ``step`` optimizer steps."""
    schedule = lr_lambda(TINY["warmup_steps"], TINY["max_steps"], TINY.get("min_lr_ratio", 0.0))
    return TINY["learning_rate"] * schedule(step)


# ----------------------------------------------------------------------------------------------------
# TensorBoard
# ----------------------------------------------------------------------------------------------------


def _scalars(folder: Path) -> dict[str, dict[int, float]]:
    """{tag: {step: value}} of the TensorBoard event files directly in ``folder``, read by TensorBoard itself;
    a step logged twice under one tag fails (only one process may write)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    out = {}
    for tag in acc.Tags()["scalars"]:
        events = acc.Scalars(tag)
        steps = [e.step for e in events]
        assert len(steps) == len(set(steps)), f"{tag}: steps written more than once: {steps}"
        out[tag] = {e.step: e.value for e in events}
    return out


@needs_tensorboard
def test_tensorboard_events_hold_loss_lr_and_knn_as_the_run_reports(scenes, tmp_path):
    out = tmp_path / "run"
    result = train(TrainConfig(**{**TINY, **KNN, "report_to": "tensorboard", "disable_tqdm": True,
                                  "output_dir": str(out), "video_dataset": scenes}))
    folder = out / "logs" / "mimcl_hub"            # ProjectConfiguration(logging_dir=OUTPUT_DIR/logs) / project name
    assert list(folder.glob("events.out.tfevents.*")), sorted(p.name for p in folder.iterdir())
    tb = _scalars(folder)

    loss, lr = _logged(out, "loss"), _logged(out, "lr")
    assert sorted(tb["loss"]) == sorted(loss) == [1, 2, 3, 4]
    for step in loss:                               # TensorBoard stores float32
        assert tb["loss"][step] == pytest.approx(loss[step], rel=1e-6)
        assert tb["lr"][step] == pytest.approx(lr[step], rel=1e-6)
        assert tb["lr"][step] == pytest.approx(_expected_lr(step), rel=1e-6, abs=1e-12)
    assert tb["loss"][4] == pytest.approx(result.train_loss, rel=1e-6)

    saved = json.loads((out / "train_results.json").read_text())
    assert tb["knn_top1"] == pytest.approx(_logged(out, "knn_top1")) and list(tb["knn_top1"]) == [2]
    assert tb["final/knn_top1"] == {4: pytest.approx(saved["metrics"]["knn_top1"], rel=1e-6)}
    assert saved["metrics"]["train_loss"] == pytest.approx(tb["loss"][4], rel=1e-6)
    assert 0.0 <= tb["final/knn_top1"][4] <= 1.0


# ----------------------------------------------------------------------------------------------------
# wandb (offline)
# ----------------------------------------------------------------------------------------------------


def _wandb_records(run_file: Path) -> list:
    """Every record of an offline run's ``run-*.wandb`` file, parsed with wandb's own protobuf schema.

    The file is a LevelDB-style log (what ``wandb sync`` uploads): a 7-byte header (``:W&B``, magic 0xBEE1,
    version), then 32 KiB blocks of chunks, each ``crc32 (4) | length (2) | type (1) | data``; type 1 is a whole
    record, 2 / 3 / 4 its first / middle / last piece; a block's tail shorter than a chunk header is padding."""
    from wandb.proto import wandb_internal_pb2

    data = run_file.read_bytes()
    ident, magic, _version = struct.unpack("<4sHB", data[:7])
    assert (ident, magic) == (b":W&B", 0xBEE1), f"{run_file} is not a wandb run file"
    block, pos, pieces, records = 32768, 7, b"", []
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:                  # zero padding at the end of a block
            pos += left
            continue
        pieces += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pieces)
            records.append(record)
            pieces = b""
    return records


def _wandb_history(run_dir: Path) -> dict[str, dict[int, float]]:
    """{key: {step: value}} of the offline run's history rows."""
    (run_file,) = run_dir.glob("run-*.wandb")
    out: dict[str, dict[int, float]] = {}
    for record in _wandb_records(run_file):
        if record.WhichOneof("record_type") != "history":
            continue
        row = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
        for key, value in row.items():
            if not key.startswith("_"):
                assert row["_step"] not in out.get(key, {}), f"{key} logged twice at step {row['_step']}"
                out.setdefault(key, {})[row["_step"]] = value
    return out


@needs_wandb
def test_wandb_offline_run_holds_the_same_metrics(scenes, tmp_path):
    """``--report_to wandb`` with WANDB_MODE=offline (no account, no network): the offline run lands in
    OUTPUT_DIR/logs/wandb, named after the output folder, with the run's loss, learning rate and kNN."""
    out = tmp_path / "wandb_run"
    proc = subprocess.run([sys.executable, str(RECIPE), *_flags(dict(TINY, **KNN, report_to="wandb",
                                                                     output_dir=out, video_dataset=scenes))],
                          env=_env(WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DISABLE_GIT="true"),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = (out / "logs" / "wandb").glob("offline-run-*")
    history = _wandb_history(run_dir)
    loss, lr = _logged(out, "loss"), _logged(out, "lr")
    assert history["loss"] == pytest.approx(loss) and sorted(loss) == [1, 2, 3, 4]     # wandb keeps float64
    assert history["lr"] == pytest.approx(lr)
    assert history["knn_top1"] == pytest.approx(_logged(out, "knn_top1")) and list(history["knn_top1"]) == [2]
    saved = json.loads((out / "train_results.json").read_text())
    assert history["final/knn_top1"] == {4: pytest.approx(saved["metrics"]["knn_top1"])}

    runs = [r for r in _wandb_records(next(run_dir.glob("run-*.wandb"))) if r.WhichOneof("record_type") == "run"]
    assert runs and runs[0].run.project == "mimcl_hub" and runs[0].run.display_name == "wandb_run"
    assert "metrics go to wandb" in proc.stderr


# ----------------------------------------------------------------------------------------------------
# two processes: only the main one logs
# ----------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@needs_tensorboard
def test_only_the_main_process_logs_under_accelerate_launch(scenes, tmp_path):
    """``accelerate launch --multi_gpu --num_processes 2`` on CPU (gloo): one TensorBoard event file, each step
    once, the losses of the run's log; with wandb installed, one offline run. stderr is a pipe, as in CI: no bar."""
    out = tmp_path / "ddp"
    trackers = "tensorboard,wandb" if _installed("wandb") else "tensorboard"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()), str(RECIPE),
           *_flags(dict(TINY, per_device_train_batch_size=4, twin_batch_size=4, report_to=trackers, output_dir=out,
                        video_dataset=scenes))]
    proc = subprocess.run(cmd, env=_env(ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1", WANDB_MODE="offline",
                                        WANDB_SILENT="true", WANDB_DISABLE_GIT="true"),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert json.loads((out / "train_results.json").read_text())["num_processes"] == 2
    folder = out / "logs" / "mimcl_hub"
    assert len(list(folder.glob("events.out.tfevents.*"))) == 1
    tb, loss = _scalars(folder), _logged(out, "loss")
    assert sorted(tb["loss"]) == sorted(loss) == [1, 2, 3, 4]
    assert all(tb["loss"][s] == pytest.approx(loss[s], rel=1e-6) for s in loss)
    if "wandb" in trackers:
        (run_dir,) = (out / "logs" / "wandb").glob("offline-run-*")
        assert _wandb_history(run_dir)["loss"] == pytest.approx(loss)
    assert BAR not in proc.stderr and BAR not in proc.stdout


# ----------------------------------------------------------------------------------------------------
# --report_to auto / validation
# ----------------------------------------------------------------------------------------------------


def test_report_to_auto_means_tensorboard_when_installed():
    assert resolve_trackers("auto") == (["tensorboard"] if _installed("tensorboard") else [])
    assert resolve_trackers("none") == [] and resolve_trackers("tensorboard, wandb") == ["tensorboard", "wandb"]


def test_report_to_refuses_mixtures_and_trackers_that_are_not_installed(tmp_path):
    base = ["--output_dir", str(tmp_path / "o"), "--eval_dataset", "none"]
    with pytest.raises(ConfigError, match=r"--report_to: 'auto,tensorboard': auto, all and none stand alone"):
        parse_config([*base, "--report_to", "auto,tensorboard"])
    missing = [t for t in ("mlflow", "aim", "clearml", "dvclive") if not _installed(t)]
    if not missing:
        pytest.skip("every probed tracker is installed")
    with pytest.raises(ConfigError, match=rf"--report_to: {missing[0]} is not installed \(pip install "):
        parse_config([*base, "--report_to", missing[0]])


def _run_in_pty(cmd: list[str], env: dict, timeout: float = 600) -> tuple[int, str]:
    """Run ``cmd`` with stdout and stderr on a pseudo-terminal (as in an interactive shell); returns (exit code,
    everything it printed)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))     # 40 rows, 160 columns
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:          # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        else:
            proc.kill()
    finally:
        os.close(master)
    return proc.wait(timeout=60), b"".join(chunks).decode(errors="replace")


#: run the recipe as if TensorBoard were not installed: ``sys.modules[name] = None`` is how Python itself marks a
#: module that cannot be imported (``import tensorboard`` raises ImportError, ``find_spec`` returns None)
WITHOUT_TENSORBOARD = ("import runpy, sys; sys.modules['tensorboard'] = sys.modules['tensorboardX'] = None; "
                       "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")


def test_report_to_auto_without_tensorboard_says_where_metrics_go_and_a_terminal_shows_the_bar(scenes, tmp_path):
    """The default ``--report_to auto`` in an environment without TensorBoard trains, writes no tracker files and
    logs one line naming where the metrics are and how to get TensorBoard. Run on a pseudo-terminal (stderr is a
    terminal, CI unset): the training bar is drawn."""
    out = tmp_path / "auto"
    code, text = _run_in_pty([sys.executable, "-c", WITHOUT_TENSORBOARD, str(RECIPE),
                              *_flags(dict(TINY, report_to="auto", output_dir=out, video_dataset=scenes))], _env())
    assert code == 0, text[-3000:]
    assert (out / "train_results.json").exists() and not (out / "logs").exists()
    lines = [line for line in text.splitlines() if "--report_to auto" in line]
    assert len(lines) == 1, text[-3000:]
    assert "TensorBoard is not installed" in lines[0] and 'pip install "mimcl-hub[tracking]"' in lines[0]
    assert "trainer_log.jsonl" in lines[0] and "train_results.json" in lines[0]
    assert "training: 100%|" in text                      # the bar, finished: 4/4 steps
    assert "4/4" in text


# ----------------------------------------------------------------------------------------------------
# progress bars: one rule
# ----------------------------------------------------------------------------------------------------


@pytest.fixture
def terminal():
    """A real terminal (the slave end of a pseudo-terminal), opened for writing."""
    master, slave = pty.openpty()
    stream = os.fdopen(slave, "w")
    yield stream
    stream.close()
    os.close(master)


def test_bars_rule_flag_then_env_then_terminal_and_ci(monkeypatch, terminal, tmp_path):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    with open(tmp_path / "log.txt", "w") as log_file:
        assert show_progress_bars(stream=terminal) is True          # an interactive terminal
        assert show_progress_bars(stream=log_file) is False         # a log file / pipe
        monkeypatch.setenv("CI", "true")
        assert show_progress_bars(stream=terminal) is False         # CI, even with a terminal
        monkeypatch.setenv("CI", "false")
        assert show_progress_bars(stream=terminal) is True
        monkeypatch.setenv("CI", "1")
        monkeypatch.setenv(PROGRESS_ENV, "1")
        assert show_progress_bars(stream=log_file) is True           # the env var beats CI and the stream
        monkeypatch.setenv(PROGRESS_ENV, "0")
        assert show_progress_bars(stream=terminal) is False
        assert show_progress_bars(False, stream=log_file) is True    # the flag beats everything
        assert show_progress_bars(True, stream=terminal) is False
        monkeypatch.setenv(PROGRESS_ENV, "maybe")
        with pytest.raises(ValueError, match=f"{PROGRESS_ENV}='maybe'"):
            show_progress_bars(stream=terminal)


def test_disable_tqdm_flag_parses_as_before_and_defaults_to_auto(tmp_path):
    base = ["--output_dir", str(tmp_path / "o"), "--eval_dataset", "none"]
    assert parse_config(base).disable_tqdm is None
    assert parse_config([*base, "--disable_tqdm"]).disable_tqdm is True
    assert parse_config([*base, "--disable_tqdm", "--max_steps", "3"]).disable_tqdm is True
    assert parse_config([*base, "--disable_tqdm", "false"]).disable_tqdm is False
    with pytest.raises(ConfigError, match="--disable_tqdm: must be true, false or unset"):
        TrainConfig(output_dir=str(tmp_path / "o"), eval_dataset="none", disable_tqdm="sometimes")


def test_progress_log_writes_periodic_lines_instead_of_a_bar(monkeypatch, caplog):
    monkeypatch.setenv(PROGRESS_ENV, "0")
    with caplog.at_level(logging.INFO, logger="mimcl_hub.progress"):
        bar = progress(total=4, desc="training", unit="step", interval=0.0)
        assert isinstance(bar, ProgressLog)
        for step in range(4):
            bar.set_postfix(loss=f"{1.0 / (step + 1):.4f}")
            bar.update(1)
        bar.close()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("training: 1/4 (25%), 0:00 elapsed, ") and "step/s" in lines[0]
    assert "~" in lines[0] and " left" in lines[0] and lines[0].endswith("loss=1.0000")
    assert lines[3].startswith("training: 4/4 (100%)") and lines[-1].startswith("training: 4/4 (100%)")
    assert len(lines) == 5                                       # 4 updates + the closing line

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="mimcl_hub.progress"):
        assert list(progress(range(50), desc="quick", interval=30.0)) == list(range(50))
    assert caplog.records == []                                  # short work stays silent


PROGRESS_SCRIPT = ("import time; from mimcl_hub._progress import progress\n"
                   "for _ in progress(range(5), desc='long work'): time.sleep(0.05)\n")


@pytest.mark.parametrize("env, bar", [({}, True), ({"CI": "true"}, False), ({PROGRESS_ENV: "0"}, False)])
def test_a_terminal_gets_a_bar_and_ci_does_not(env, bar):
    code, text = _run_in_pty([sys.executable, "-c", PROGRESS_SCRIPT], _env(**env), timeout=120)
    assert code == 0, text
    assert ("long work: 100%|" in text) is bar, text


def test_a_pipe_gets_no_bar():
    proc = subprocess.run([sys.executable, "-c", PROGRESS_SCRIPT], env=_env(), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and BAR not in proc.stderr and proc.stderr.strip() == "", proc.stderr


def test_datasets_map_bars_follow_the_rule(monkeypatch, capsys):
    import datasets
    from datasets import are_progress_bars_disabled

    monkeypatch.delenv("HF_DATASETS_DISABLE_PROGRESS_BARS", raising=False)
    monkeypatch.setenv("CI", "true")
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    before = are_progress_bars_disabled()
    ds = datasets.Dataset.from_dict({"x": list(range(8))})
    with datasets_progress():
        assert are_progress_bars_disabled()
        doubled = ds.map(lambda row: {"y": 2 * row["x"]}, desc="doubling")
    assert doubled["y"] == [2 * x for x in range(8)]
    assert "doubling" not in capsys.readouterr().err
    assert are_progress_bars_disabled() == before                # restored
    monkeypatch.setenv(PROGRESS_ENV, "1")
    with datasets_progress():
        assert not are_progress_bars_disabled()
        ds.map(lambda row: {"y": 3 * row["x"]}, desc="tripling")
    assert "tripling" in capsys.readouterr().err
    assert are_progress_bars_disabled() == before


FEATURES_SCRIPT = ("import torch; from mimcl_hub.eval import extract_features\n"
                   "batches = [(torch.randn(2, 3), torch.tensor([0, 1])) for _ in range(3)]\n"
                   "feats, labels = extract_features(torch.nn.Linear(3, 4), batches, desc='kNN features')\n"
                   "print('shape', tuple(feats.shape), labels.tolist())\n")


@pytest.mark.parametrize("env, bar", [({}, True), ({"CI": "1"}, False)])
def test_feature_extraction_shows_its_bar_in_a_terminal_only(env, bar):
    """Feature extraction (the kNN monitor, ``mimcl eval``) is long work: a bar per pass in a terminal, none in CI."""
    code, text = _run_in_pty([sys.executable, "-c", FEATURES_SCRIPT], _env(**env), timeout=120)
    assert code == 0, text
    assert "shape (6, 4) [0, 1, 0, 1, 0, 1]" in text
    assert ("kNN features:   0%|" in text and "| 0/3 " in text) is bar, text        # drawn, then cleared (leave=False)
