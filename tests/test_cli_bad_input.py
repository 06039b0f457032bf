"""Every ``mimcl`` subcommand over one shared set of bad inputs (issue 19): exit status 2, one message naming the
input, no traceback, and nothing written.

The inputs are real files and folders of the wrong kind — missing, empty, corrupt, a file where a folder belongs and
a folder where a file belongs, a folder of unrelated files — plus outputs that are, contain or lie inside an input.
The matrix calls ``mimcl_hub.cli.main`` in this process (an exception escaping it fails the test, so "no traceback"
is checked by construction); one case per subcommand also runs as a real ``python -m mimcl_hub.cli`` process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from helpers import save_test_vit_encoder  # noqa: E402

BAD_KINDS = ("missing", "empty_file", "corrupt_file", "empty_folder", "unrelated_folder", "file_not_folder")


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> dict[str, Path]:
    """One path of each bad kind (plus a real video folder to nest outputs in)."""
    root = tmp_path_factory.mktemp("bad_inputs")
    paths = {name: root / name for name in BAD_KINDS}
    paths["empty_file"] = root / "empty.mp4"
    paths["empty_file"].write_bytes(b"")
    paths["corrupt_file"] = root / "corrupt.mp4"
    paths["corrupt_file"].write_bytes(os.urandom(4096))
    paths["empty_folder"].mkdir()
    paths["unrelated_folder"].mkdir()
    (paths["unrelated_folder"] / "notes.txt").write_text("not a video, not a dataset, not an encoder\n")
    paths["file_not_folder"] = root / "model.txt"
    paths["file_not_folder"].write_text("config.json should be in a folder, this is a file\n")
    return paths


OFFLINE = dict(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_ENDPOINT="http://127.0.0.1:9",
               HF_TOKEN="hf_not_a_real_token")


@pytest.fixture(autouse=True)
def _offline_and_fresh_accelerate_state(monkeypatch):
    for key, value in OFFLINE.items():
        monkeypatch.setenv(key, value)
    yield
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()


class _Result:
    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def _mimcl(*args: str, cwd: Path, capsys, monkeypatch) -> _Result:
    """``mimcl ARGS`` in this process, from ``cwd``."""
    from mimcl_hub.cli import main

    monkeypatch.chdir(cwd)
    capsys.readouterr()
    code = main(list(args))
    out = capsys.readouterr()
    return _Result(code, out.out, out.err)


def _mimcl_process(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m mimcl_hub.cli ARGS`` as a user types it, offline."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", **OFFLINE)
    return subprocess.run([sys.executable, "-m", "mimcl_hub.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


#: subcommand -> argv with ``{in}`` for the bad input and ``{out}`` for a fresh output path
COMMANDS = {
    "mine": ["mine", "{in}", "--output", "{out}"],
    "train": ["train", "--video_dataset", "{in}", "--output_dir", "{out}", "--max_steps", "1", "--eval_dataset",
              "none", "--report_to", "none"],
    "train_config": ["train", "--config", "{in}", "--output_dir", "{out}"],
    "eval": ["eval", "{in}"],
    "eval_dataset": ["eval", "{encoder}", "--dataset", "{in}", "--no_card", "--output_dir", "{out}"],
    "push": ["push", "{in}", "--repo_id", "someone/enc"],
    "leaderboard": ["leaderboard", "{in}", "--output", "{out}.md"],
}


@pytest.fixture(scope="module")
def encoder(tmp_path_factory) -> Path:
    return save_test_vit_encoder(tmp_path_factory.mktemp("enc") / "encoder")


@pytest.mark.parametrize("kind", BAD_KINDS)
@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_subcommand_refuses_bad_input_with_one_line(bad, encoder, tmp_path, capsys, monkeypatch, command,
                                                          kind):
    """Issue 19: exit 2, a message naming the input, no Traceback, and no output written."""
    if command == "train_config" and kind in ("empty_folder", "unrelated_folder"):
        kind = "file_not_folder"            # --config takes a file: its folder cases are the file cases
    given = str(bad[kind])
    out = tmp_path / "out"
    argv = [a.format(**{"in": given, "out": str(out), "encoder": str(encoder)}) for a in COMMANDS[command]]
    proc = _mimcl(*argv, cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, f"{argv}\n{text[-3000:]}"
    assert "Traceback" not in text, text[-3000:]
    assert given in proc.stderr or os.path.basename(given) in proc.stderr, proc.stderr[-2000:]
    assert not out.exists() or not any(out.iterdir()) or command == "train", sorted(out.iterdir())
    assert not Path(f"{out}.md").exists()


#: (subcommand, where the output is): a leaderboard file cannot contain a folder, so it has no "contains" case
OVERLAPS = [(c, w) for c in ("mine", "train", "eval_dataset", "leaderboard") for w in ("same", "inside", "contains")
            if (c, w) != ("leaderboard", "contains")]


@pytest.mark.parametrize("command,where", OVERLAPS)
def test_an_output_that_is_contains_or_lies_inside_an_input_is_refused_before_any_work(tmp_path, encoder, capsys,
                                                                                         monkeypatch, command, where):
    """Issue 19 item 1: ``mimcl mine DIR --output DIR --overwrite`` once deleted the videos it read. Any output
    that is, contains or lies inside an input is refused before any work, and the input is untouched."""
    source = tmp_path / "data" / "videos"
    source.mkdir(parents=True)
    (source / "clip.mp4").write_bytes(b"\0" * 1024)
    before = sorted(p.name for p in source.iterdir())
    out = {"same": source, "inside": source / "out", "contains": tmp_path / "data"}[where]
    given = {"mine": ["mine", str(source), "--output", str(out), "--overwrite"],
             "train": ["train", "--video_dataset", str(source), "--output_dir", str(out), "--overwrite_output_dir",
                       "--eval_dataset", "none"],
             "eval_dataset": ["eval", str(encoder), "--dataset", str(source), "--output_dir", str(out)],
             "leaderboard": ["leaderboard", str(source), "--output", str(source if where == "same" else out / "board.md")]
             }[command]
    proc = _mimcl(*given, cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and str(source) in proc.stderr, proc.stderr[-2000:]
    assert sorted(p.name for p in source.iterdir()) == before            # nothing deleted or added


@pytest.mark.parametrize("command", ["mine", "train", "eval", "push", "leaderboard"])
def test_a_real_process_exits_2_with_one_line(bad, encoder, tmp_path, command):
    """The same through ``python -m mimcl_hub.cli`` (what a user types): exit status 2, the input named, no
    traceback, one line on stderr from mimcl."""
    given = str(bad["corrupt_file"])
    argv = [a.format(**{"in": given, "out": str(tmp_path / "out"), "encoder": str(encoder)}) for a in COMMANDS[command]]
    proc = _mimcl_process(*argv, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith(f"mimcl {command}")]
    assert len(lines) == 1 and (given in lines[0] or os.path.basename(given) in lines[0]), proc.stderr[-2000:]
