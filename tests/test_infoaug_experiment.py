"""bench/infoaug_experiment.py end to end at its ``--tiny`` setting (test_vit at 16 px, 3 steps, digits
subset): every run's encoder folder and evaluation, the table (one row per objective x mode), mean /
std over seeds and differences to ``none`` against numpy, RESULT lines, resume (skip finished runs,
finish a run killed after training, continue from a checkpoint), reproducibility of a fresh rerun,
the subprocess launcher, and the paper preset's configurations (parsed and validated, not run)."""

import contextlib
import io
import json
import re
import runpy
import shutil
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = runpy.run_path(str(REPO / "bench" / "infoaug_experiment.py"), run_name="infoaug_experiment")
MODES = ("none", "random", "mi")
SEEDS = (0, 1)


def _reset_accelerate():
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def run_bench(*argv) -> str:
    """Run the benchmark's main() in-process; returns its stdout."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert BENCH["main"](list(argv)) == 0
    _reset_accelerate()
    return buf.getvalue()


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    out = tmp_path_factory.mktemp("infoaug") / "exp"
    stdout = run_bench("--tiny", "--output_dir", str(out), "--no_leaderboard")
    return out, stdout


def _load(out: Path) -> dict:
    return json.loads((out / "experiment.json").read_text())


def _statuses(stdout: str) -> dict[str, str]:
    return dict(re.findall(r"^\[\d+/\d+\] (\S+): (.+?) in [\d.]+ s;", stdout, flags=re.M))


def test_every_run_has_an_evaluated_encoder_folder(experiment):
    out, stdout = experiment
    names = [f"simclr-{m}-seed{s}" for s in SEEDS for m in MODES]
    assert set(_statuses(stdout)) == set(names) and set(_statuses(stdout).values()) == {"trained"}
    for name in names:
        enc = out / "runs" / name / "encoder"
        for f in ("config.json", "model.safetensors", "README.md", "eval_results.json"):
            assert (enc / f).is_file(), f"{enc / f} missing"
        assert json.loads((enc / "config.json").read_text())["architecture"] == "test_vit"
        res = json.loads((enc / "eval_results.json").read_text())["results"]["digits"]
        assert res["num_train"] == 300 and res["num_test"] == 200
        from huggingface_hub import ModelCard

        evals = ModelCard.load(enc / "README.md").data.eval_results      # evaluate_encoder wrote the model-index
        assert {(e.dataset_type, e.metric_name) for e in evals} >= {("sklearn:digits", "kNN top-1 accuracy"),
                                                                     ("sklearn:digits", "Linear probe top-1 accuracy")}
        knn = next(e.metric_value for e in evals if e.metric_name == "kNN top-1 accuracy")
        assert knn == pytest.approx(round(res["knn_top1"], 4))
    runs = _load(out)["runs"]
    assert sorted(r["name"] for r in runs) == sorted(names)
    # same budget: the three modes differ only in twin_mode
    cfgs = {r["name"]: json.loads((out / "runs" / r["name"] / "train_config.json").read_text())["train_config"]
            for r in runs}
    for s in SEEDS:
        base = {k: v for k, v in cfgs[f"simclr-none-seed{s}"].items() if k not in ("twin_mode", "output_dir")}
        for m in ("random", "mi"):
            other = {k: v for k, v in cfgs[f"simclr-{m}-seed{s}"].items() if k not in ("twin_mode", "output_dir")}
            assert other == base
    assert cfgs["simclr-none-seed0"]["max_steps"] == 3 and cfgs["simclr-none-seed0"]["seed"] == 0


def test_table_has_one_row_per_objective_and_mode(experiment):
    out, stdout = experiment
    md = (out / "experiment.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| simclr |")]
    assert [r.split("|")[2].strip() for r in rows] == list(MODES)
    assert all(r.split("|")[3].strip() == "2" for r in rows)          # seeds per row
    assert all(r in stdout for r in rows)                                # printed as written
    assert rows[0].split("|")[5].strip() == "—"                          # no difference for the baseline
    data = _load(out)
    assert data["finished"] is True and data["preset"] == "tiny"


def test_mean_std_and_differences_match_numpy(experiment):
    out, stdout = experiment
    data = _load(out)
    by = {(r["twin_mode"], r["seed"]): r["results"]["digits"] for r in data["runs"]}
    md_rows = {line.split("|")[2].strip(): line for line in (out / "experiment.md").read_text().splitlines()
               if line.startswith("| simclr |")}
    for metric_i, metric in enumerate(("knn_top1", "linear_top1")):
        base = np.array([by[("none", s)][metric] for s in SEEDS])
        for mode in MODES:
            vals = np.array([by[(mode, s)][metric] for s in SEEDS])
            summ = data["summary"]["simclr"][mode]["digits"][metric]
            assert summ["values"] == pytest.approx(vals.tolist())
            assert summ["mean"] == pytest.approx(vals.mean(), abs=1e-12)
            assert summ["std"] == pytest.approx(vals.std(ddof=1), abs=1e-12)
            cells = [c.strip() for c in md_rows[mode].split("|")[1:-1]]
            assert cells[3 + 2 * metric_i] == f"{vals.mean():.4f} ± {vals.std(ddof=1):.4f}"
            assert f"RESULT simclr_{mode}_digits_{metric}={vals.mean():.4f}" in stdout
            if mode == "none":
                continue
            d = data["deltas"]["simclr"][mode]["digits"][metric]
            assert d["diff"] == pytest.approx(vals.mean() - base.mean(), abs=1e-12)
            assert d["paired_std"] == pytest.approx((vals - base).std(ddof=1), abs=1e-12)
            assert cells[4 + 2 * metric_i] == f"{vals.mean() - base.mean():+.4f} ± {(vals - base).std(ddof=1):.4f}"
            assert f"RESULT simclr_{mode}_digits_{metric}_delta={vals.mean() - base.mean():+.4f}" in stdout


def test_rerun_skips_finished_runs_and_resumes_unfinished_ones(experiment, tmp_path):
    out, _ = experiment
    work = tmp_path / "exp"
    shutil.copytree(out, work)
    before = _load(work)["summary"]
    weights = work / "runs" / "simclr-random-seed1" / "encoder" / "model.safetensors"
    mtime = weights.stat().st_mtime_ns
    # kill simulations: one run lost its encoder (killed after its last checkpoint), one its evaluation
    shutil.rmtree(work / "runs" / "simclr-mi-seed1" / "encoder")
    (work / "runs" / "simclr-none-seed0" / "encoder" / "eval_results.json").unlink()
    stdout = run_bench("--tiny", "--output_dir", str(work), "--no_leaderboard")
    status = _statuses(stdout)
    assert status.pop("simclr-mi-seed1") == "resumed + trained"
    assert status.pop("simclr-none-seed0") == "evaluated (already trained)"
    assert set(status.values()) == {"skipped (done)"}
    assert weights.stat().st_mtime_ns == mtime
    assert _load(work)["summary"] == before                    # a resumed run reaches the same numbers
    # a folder written with other settings is refused, before any work
    with pytest.raises(SystemExit, match="other settings.*max_steps: 3 -> 4"):
        run_bench("--tiny", "--output_dir", str(work), "--no_leaderboard", "--max_steps", "4")


def test_fresh_rerun_reproduces_the_numbers(experiment, tmp_path):
    out, _ = experiment
    run_bench("--tiny", "--output_dir", str(tmp_path / "again"), "--no_leaderboard", "--seeds", "1",
              "--modes", "none,mi")
    again = {r["name"]: r["results"] for r in _load(tmp_path / "again")["runs"]}
    first = {r["name"]: r["results"] for r in _load(out)["runs"]}
    assert set(again) == {"simclr-none-seed1", "simclr-mi-seed1"}
    assert again == {k: first[k] for k in again}


def test_subprocess_launcher_runs_mimcl_train(experiment, tmp_path):
    out, _ = experiment
    stdout = run_bench("--tiny", "--output_dir", str(tmp_path / "sub"), "--no_leaderboard", "--seeds", "0",
                       "--modes", "none", "--launcher", "python")
    assert _statuses(stdout) == {"simclr-none-seed0": "trained"}
    run = tmp_path / "sub" / "runs" / "simclr-none-seed0"
    assert (run / "mimcl_train.json").is_file() and (run / "encoder" / "model.safetensors").is_file()
    ours = _load(tmp_path / "sub")["runs"][0]["results"]
    ref = next(r["results"] for r in _load(out)["runs"] if r["name"] == "simclr-none-seed0")
    assert ours == ref                      # `mimcl train CONFIG.json` = the in-process train(TrainConfig)


def _plan(*argv):
    args = BENCH["build_parser"]().parse_args(list(argv))
    return BENCH["resolve"](args)


def test_local_preset_trains_the_two_sources_offline(tmp_path):
    """--preset local writes the digits train split as an imagefolder and mines the bundled clips with `mimcl mine`
    (Parquet pairs with crops), then trains the view branch on the images and the MI branch on the pairs."""
    import datasets

    from mimcl_hub.data import is_mined_folder

    out = tmp_path / "local"
    tiny = ["--model_name", "test_vit", "--img_size", "16", "--max_steps", "2", "--per_device_train_batch_size", "8",
            "--twin_batch_size", "8", "--mixed_precision", "no", "--seeds", "0", "--modes", "none,mi",
            "--eval_max_train", "200", "--eval_max_test", "100", "--no_leaderboard"]
    stdout = run_bench("--preset", "local", "--output_dir", str(out), *tiny)
    images = datasets.load_dataset(str(out / "data" / "digits-train"), split="train")
    assert len(images) == 1078 and images[0]["image"].size == (32, 32)       # the split evaluate_encoder probes on
    assert is_mined_folder(out / "data" / "mined-bundled")
    for mode in ("none", "mi"):
        run = json.loads((out / "runs" / f"simclr-{mode}-seed0" / "train_config.json").read_text())["train_config"]
        assert run["train_dataset"] == str(out / "data" / "digits-train")
        assert run["twin_dataset"] == str(out / "data" / "mined-bundled") and run.get("video_dataset") is None
    log = (out / "runs" / "simclr-mi-seed0" / "trainer_log.jsonl").read_text().splitlines()
    assert all(json.loads(line).get("twin_batch", 8.0) > 0 for line in log)          # the MI branch trained
    assert "view branch" in stdout and len(_load(out)["runs"]) == 2


def test_paper_preset_is_a_valid_gpu_configuration(tmp_path):
    from mimcl_hub.train import TrainConfig, parse_config

    plan = _plan("--preset", "paper", "--twin_dataset", "some-org/some-mined-pairs", "--output_dir", str(tmp_path))
    assert plan["objectives"] == ["simclr", "moco", "byol", "simsiam", "barlow_twins", "vicreg", "dino"]
    assert len(plan["runs"]) == 7 * 3 * 3
    assert plan["eval"]["datasets"] == ["uoft-cs/cifar10", "uoft-cs/cifar100", "tanganke/stl10"]
    assert plan["eval"]["max_train"] is None and plan["threads"] is None
    for run in plan["runs"]:
        cfg = TrainConfig(**run["config"])
        assert cfg.model_name == "resnet18_cifar" and cfg.img_size == 32
        assert cfg.per_device_train_batch_size == 256 and cfg.max_steps == -1 and cfg.num_train_epochs >= 800
        assert cfg.video_dataset is None and cfg.twin_mode == run["twin_mode"]
        assert (cfg.train_dataset, cfg.train_image_column) == ("uoft-cs/cifar10", "img")     # solo-learn's setting
        assert cfg.twin_dataset == "some-org/some-mined-pairs"
        assert cfg.mi_objective_name == cfg.objective
    byol = next(r["config"] for r in plan["runs"] if r["objective"] == "byol")
    assert (byol["optimizer"], byol["learning_rate"]) == ("lars", 1.0)
    # each run's config file is what `mimcl train CONFIG.json` (the --launcher path) parses
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(plan["runs"][0]["config"]))
    assert parse_config([str(path)]) == TrainConfig(**plan["runs"][0]["config"])
    # multi-GPU: a per-device batch and a launcher
    (tmp_path / "mined").mkdir()
    plan = _plan("--preset", "paper", "--twin_dataset", str(tmp_path / "mined"), "--per_device_train_batch_size", "64",
                 "--launcher", "accelerate launch --multi_gpu --num_processes 4", "--objectives", "byol,dino",
                 "--num_train_epochs", "200")
    assert {r["config"]["per_device_train_batch_size"] for r in plan["runs"]} == {64}
    assert {r["config"]["num_train_epochs"] for r in plan["runs"]} == {200.0}
    assert plan["launcher"].startswith("accelerate launch") and len(plan["runs"]) == 18


@pytest.mark.parametrize("argv,message", [
    (["--preset", "paper"], "--twin_dataset is required"),
    (["--tiny", "--objectives", "simclrr"], "unknown ['simclrr']"),
    (["--tiny", "--modes", "mi,random"], "must include 'none'"),
    (["--tiny", "--train_args", '{"seed": 3}'], "seed is set by the experiment"),
    (["--tiny", "--learning_rate", "-1"], "--learning_rate"),
])
def test_bad_arguments_fail_before_any_work(argv, message, tmp_path):
    with pytest.raises(SystemExit) as err:
        _plan(*argv, "--output_dir", str(tmp_path / "x"))
    assert message in str(err.value)
    assert not (tmp_path / "x").exists()
