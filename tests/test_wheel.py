"""The package installed from a wheel works exactly like the editable checkout (issue 13).

The wheel is built from the project's files (``git ls-files``: what a fresh clone has), installed with ``pip``
into a fresh virtual environment (``--system-site-packages`` lends it the heavy dependencies already installed;
the wheel's own ``mimcl_hub`` shadows the editable one), and every command runs from a folder outside the
checkout: recipes, the model-card template and the leaderboard page must come from package data.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _project_files() -> list[str]:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs the git checkout to know the project's files (git ls-files)")
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if line and (REPO / line).is_file()]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python of a fresh venv with the wheel installed, a work folder outside the checkout, env)."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    for name in _project_files():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(root / "dist"), str(src)], check=True, capture_output=True, text=True, timeout=600)
    wheel = next((root / "dist").glob("mimcl_hub-*.whl"))
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(root / "venv")], check=True,
                   timeout=300)
    python = root / "venv" / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--ignore-installed", str(wheel)], check=True,
                   capture_output=True, text=True, timeout=300)
    work = root / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONUNBUFFERED="1",
               PATH=f"{root / 'venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    return python, work, env, wheel


def _run(cmd, installed, timeout=600):
    python, work, env, _ = installed
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_wheel_carries_the_package_data(installed):
    names = zipfile.ZipFile(installed[3]).namelist()
    assert not any(n.startswith(("tests/", "recipes/", "bench/")) for n in names)
    data = [n for n in names if n.startswith("mimcl_hub/") and not n.endswith(".py")]
    assert any(n.endswith(".md") for n in data) and any(n.endswith(".html") for n in data), data


def test_installed_package_is_the_wheel_not_the_checkout(installed):
    python = installed[0]
    proc = _run([str(python), "-c", "import mimcl_hub, json; print(json.dumps([mimcl_hub.__file__, "
                 "mimcl_hub.__version__]))"], installed)
    path, version = json.loads(proc.stdout.strip().splitlines()[-1])
    assert str(python.parent.parent) in path and str(REPO) not in path, path
    assert _run(["mimcl", "--version"], installed).stdout.strip() == f"mimcl {version}"


def test_train_a_recipe_render_its_card_and_rank_it_from_the_wheel(installed):
    """``mimcl train --recipe vit_simclr --max_steps 2``, its model card (the packaged template, not a fallback) and
    ``mimcl leaderboard ... --format html`` (the packaged page), all outside the checkout."""
    work = installed[1]
    _run(["mimcl", "train", "--recipe", "vit_simclr", "--max_steps", "2", "--output_dir", "run",
          "--per_device_train_batch_size", "8", "--twin_batch_size", "8", "--knn_max_train", "200",
          "--knn_max_test", "100", "--report_to", "none", "--disable_tqdm"], installed, timeout=900)
    card = (work / "run" / "encoder" / "README.md").read_text()
    assert "## How to use" in card and "mimcl_hub:" in card and "model-index" in card
    _run(["mimcl", "eval", "run/encoder", "--dataset", "digits", "--max_train", "200", "--max_test", "100"], installed)
    _run(["mimcl", "leaderboard", "run/encoder", "--format", "html", "--output", "board.html"], installed)
    page = (work / "board.html").read_text()
    assert "<table" in page and "vit_tiny_patch4_32" in page
