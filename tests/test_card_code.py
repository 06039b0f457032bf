"""Every recipe's model card, as pushed, runs: two training steps of each of the seven recipes are pushed to the
local Hub endpoint (tests/hub_server.py) with ``--push_to_hub``; then every Python block of each pushed
``README.md`` — extracted from the card's text and run verbatim, with the repo id the card names — prints
embeddings equal (1e-5) to ``MIMCLEncoder.from_pretrained(...).embed`` of the same image. The card's metadata is
checked with huggingface_hub's own parsers (``ModelCard``, ``ModelCardData``, ``model_index_to_eval_results`` /
``eval_results_to_model_index``, ``validate_repo_id``), and DINO's encoder is its teacher.

How the blocks run (about two minutes for the whole file on two shared cores): one runner process imports what
the blocks import (numpy, PIL, torch, timm, transformers) but never ``mimcl_hub``, then runs each block in its own
``os.fork()`` child, in a fresh namespace — so every block starts in a process where ``mimcl_hub`` was never
imported and must import what it needs itself. The ViT cards' timm and transformers blocks must leave
``"mimcl_hub" not in sys.modules``; the CIFAR ResNets' blocks without their ``import mimcl_hub`` line fail as the
card warns (timm: "Unknown model", transformers: ImportError).
"""

import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from mimcl_hub.models import REQUIRES_MIMCL_HUB
from mimcl_hub.objectives import OBJECTIVES, RELEASED_WEIGHTS
from mimcl_hub.train import RECIPES

sys.path.insert(0, os.path.dirname(__file__))
from hub_server import HubServer, client_env  # noqa: E402
from helpers import save_mined_scenes  # noqa: E402

TOKEN = "hf_cardcodeTOKEN4321"
USER = "tester"
NAMES = sorted(RECIPES)
#: two steps, tiny batches, a small kNN monitor on the bundled digits (so the card has model-index results)
TINY_FLAGS = ["--img_size", "16", "--per_device_train_batch_size", "4", "--twin_batch_size", "4", "--max_steps", "2",
              "--save_steps", "2", "--eval_dataset", "digits", "--knn_max_train", "64", "--knn_max_test", "32",
              "--disable_tqdm", "--mixed_precision", "no", "--report_to", "none"]

_TRAIN = textwrap.dedent("""
    import json, sys
    from accelerate.state import AcceleratorState, GradientState
    from mimcl_hub.train import RECIPES, run_recipe
    spec = json.loads(sys.argv[1])
    for name in sorted(RECIPES):
        rc = run_recipe(name, [*spec["flags"], "--output_dir", f"{spec['root']}/{name}", "--push_to_hub",
                               "--hub_model_id", f"{spec['user']}/{name}"])
        AcceleratorState._reset_state(True)
        GradientState._reset_state()
        if rc:
            sys.exit(f"recipe {name} exited {rc}")
""")

#: Runs each job's code (a card's block, verbatim) in a fork of a process that never imported mimcl_hub; saves
#: the block's ``features`` and ``image`` (or the exception it raised) for the test.
_RUNNER = textwrap.dedent("""
    import json, os, sys, traceback
    import numpy as np, PIL.Image, torch, timm, timm.data
    import transformers
    from transformers import AutoImageProcessor, AutoModel
    assert "mimcl_hub" not in sys.modules
    for job in json.load(open(sys.argv[1])):
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                namespace = {"__name__": "__main__"}
                exec(compile(job["code"], job["name"], "exec"), namespace)
                torch.save({"features": namespace["features"].detach().cpu(),
                            "image": np.asarray(namespace["image"]),
                            "mimcl_hub_imported": "mimcl_hub" in sys.modules}, job["out"])
                status = 0
            except BaseException as e:
                with open(job["out"] + ".error", "w") as f:
                    f.write(f"{type(e).__name__}: {e}")
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(status)
        os.waitpid(pid, 0)
""")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def python_blocks(text: str) -> list[str]:
    """Every ```python block of a markdown text, verbatim."""
    return re.findall(r"^```python\n(.*?)^```$", text, re.S | re.M)


def _kind(block: str) -> str:
    kinds = [k for k, marker in (("mimcl_hub", "MIMCLEncoder.from_pretrained("), ("timm", "timm.create_model("),
                                 ("transformers", "AutoModel.from_pretrained(")) if marker in block]
    assert len(kinds) == 1, block
    return kinds[0]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models on a shared CPU: one torch thread is several times faster than the default pool."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def hub():
    with HubServer(token=TOKEN, user=USER, orgs=("mimcl-org",)) as server:
        yield server


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    return save_mined_scenes(tmp_path_factory, 1, seed=3, num_frames=12)


def _env(hub, home):
    # one thread per process: on a shared CPU, torch's default thread pool makes tiny models several times slower
    return {**client_env(hub, home, TOKEN), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def trained(hub, scenes, tmp_path_factory):
    """The seven recipes, two steps each, trained and pushed to ``tester/<recipe>`` (one process)."""
    root = tmp_path_factory.mktemp("runs")
    spec = {"root": str(root), "user": USER, "flags": ["--video_dataset", scenes, *TINY_FLAGS]}
    proc = subprocess.run([sys.executable, "-c", _TRAIN, json.dumps(spec)], env=_env(hub, root / "home"),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return root


@pytest.fixture(scope="module")
def ran(hub, trained, tmp_path_factory):
    """Every Python block of every pushed card, run (see the module docstring); plus, for one CIFAR ResNet card, its
    timm and transformers blocks without their ``import mimcl_hub`` line."""
    work = tmp_path_factory.mktemp("blocks")
    jobs, cards = [], {}
    for name in NAMES:
        cards[name] = hub.files(f"{USER}/{name}")["README.md"].decode("utf-8")
        for i, block in enumerate(python_blocks(cards[name])):
            jobs.append({"name": f"{name}/{_kind(block)}", "code": block, "out": str(work / f"{name}-{i}.pt")})
    for block in python_blocks(cards["resnet18_byol"]):
        if _kind(block) != "mimcl_hub":
            without = "\n".join(line for line in block.splitlines() if not line.startswith("import mimcl_hub"))
            jobs.append({"name": f"without-import/{_kind(block)}", "code": without,
                         "out": str(work / f"without-import-{_kind(block)}.pt")})
    (work / "jobs.json").write_text(json.dumps(jobs))
    proc = subprocess.run([sys.executable, "-c", _RUNNER, str(work / "jobs.json")], env=_env(hub, work / "home"),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = {}
    for job in jobs:
        error = Path(job["out"] + ".error")
        out.setdefault(job["name"], []).append(
            {"error": error.read_text()} if error.exists() else torch.load(job["out"], weights_only=False))
    return {"cards": cards, "runs": out, "stdout": proc.stdout}


@pytest.mark.parametrize("name", NAMES)
def test_every_block_of_the_pushed_card_runs_and_agrees_with_mimcl_encoder(name, hub, trained, ran):
    from mimcl_hub import MIMCLEncoder

    recipe = RECIPES[name]
    folder = trained / name / "encoder"
    remote = {p: _sha(d) for p, d in hub.files(f"{USER}/{name}").items() if p != ".gitattributes"}
    assert remote == {p.relative_to(folder).as_posix(): _sha(p.read_bytes())
                      for p in folder.rglob("*") if p.is_file()}                # the pushed repo = the folder

    card = ran["cards"][name]
    blocks = python_blocks(card)
    assert sorted(_kind(b) for b in blocks) == ["mimcl_hub", "timm", "transformers"]
    assert all(f'"{USER}/{name}"' in b or f'"hf-hub:{USER}/{name}"' in b for b in blocks)    # the real repo id
    assert "path/to/encoder" not in card
    needs_mimcl_hub = recipe.backbone in REQUIRES_MIMCL_HUB
    how_to_use = card.split("## How to use", 1)[1]
    if needs_mimcl_hub:       # said first, before any code, and every block imports it
        assert how_to_use.index("pip install mimcl-hub") < how_to_use.index("```python")
        assert how_to_use.index("`import mimcl_hub`") < how_to_use.index("```python")
        assert all("import mimcl_hub" in b or "from mimcl_hub import" in b for b in blocks)
    else:                     # the timm / transformers blocks do not need it
        assert all("mimcl_hub" not in b for b in blocks if _kind(b) != "mimcl_hub")

    runs = {kind: ran["runs"][f"{name}/{kind}"][0] for kind in ("mimcl_hub", "timm", "transformers")}
    for kind, run in runs.items():
        assert "error" not in run, f"{name} {kind} block: {run.get('error')}"
    image = runs["mimcl_hub"]["image"]
    assert image.dtype == np.uint8 and image.shape == (32, 32, 3)
    expected = MIMCLEncoder.from_pretrained(folder).embed(image)
    assert expected.shape[0] == 1 and torch.isfinite(expected).all()
    for kind, run in runs.items():
        np.testing.assert_array_equal(run["image"], image)                     # the same example image
        torch.testing.assert_close(run["features"].float(), expected, atol=1e-5, rtol=0, msg=f"{name} {kind}")
        if not needs_mimcl_hub and kind != "mimcl_hub":
            assert run["mimcl_hub_imported"] is False, f"{name} {kind} block imported mimcl_hub"


def test_cifar_resnet_blocks_fail_without_the_import_line_as_the_card_says(ran):
    card = ran["cards"]["resnet18_byol"]
    timm_error = ran["runs"]["without-import/timm"][0].get("error", "")
    hf_error = ran["runs"]["without-import/transformers"][0].get("error", "")
    assert "Unknown model (resnet18_cifar)" in timm_error and "`Unknown model (resnet18_cifar)`" in card
    # transformers >= 5 raises an ImportError suggesting a timm upgrade; 4.53 (the floor) passes timm's error on
    assert (hf_error.startswith("ImportError") or "Unknown model (resnet18_cifar)" in hf_error), hf_error
    assert "ImportError" in card and "same error" in card


@pytest.mark.parametrize("name", NAMES)
def test_pushed_card_metadata_reads_right_in_huggingface_hub(name, trained, ran):
    from huggingface_hub import ModelCard, ModelCardData
    from huggingface_hub.repocard_data import eval_results_to_model_index, model_index_to_eval_results
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    from mimcl_hub.hub import RunCard

    recipe = RECIPES[name]
    card = ModelCard(ran["cards"][name])                    # the Hub client's parser, strict metadata checks
    data = card.data
    as_dict = data.to_dict()
    assert ModelCardData(**as_dict).to_dict() == as_dict   # a round trip through ModelCardData
    model_name, results = model_index_to_eval_results(as_dict["model-index"])
    assert model_name == f"{USER}/{name}" and results
    assert eval_results_to_model_index(model_name, results) == as_dict["model-index"]
    # the training data is a local folder: no Hub dataset; the kNN set (digits) is never listed as training data
    assert not data.datasets
    for r in results:          # a local evaluation set is named SOURCE:NAME, which no Hub id can be
        assert r.dataset_type == "sklearn:digits" and r.dataset_name.startswith("scikit-learn digits")
        with pytest.raises(HFValidationError):
            validate_repo_id(r.dataset_type)
    # library: timm only where plain timm loads it
    needs_mimcl_hub = recipe.backbone in REQUIRES_MIMCL_HUB
    assert data.library_name == ("mimcl_hub" if needs_mimcl_hub else "timm")
    assert {"timm", recipe.backbone, recipe.objective, "twin-mode-mi"} <= set(data.tags)
    # the title sentence names the trained variant; the timm architecture is given separately
    block = data.mimcl_hub
    first = card.text.split("\n\n", 2)[1]
    assert first.startswith(f"A self-supervised **{recipe.backbone}** image encoder")
    assert f"**timm architecture:** `{block['architecture']}`" in card.text
    if not needs_mimcl_hub:
        config = json.loads((trained / name / "encoder" / "config.json").read_text())
        assert block["architecture"] == config["architecture"] == "vit_tiny_patch16_224"
        assert f"`model_args` `{json.dumps(config['model_args'], sort_keys=True)}`" in card.text
    # which weights were released, in the YAML and in the text
    released = OBJECTIVES[recipe.objective].released
    assert block["released_weights"] == released
    assert f"**Released weights:** {RELEASED_WEIGHTS[released]}." in card.text
    assert released == {"dino": "teacher", "byol": "online", "moco": "query"}.get(recipe.objective, "shared")
    assert RunCard.from_model_card(card).released_weights == released


def test_dino_releases_the_teacher_and_its_knn_is_the_cards(trained, ran):
    from huggingface_hub import ModelCard
    from safetensors.torch import load_file

    from mimcl_hub import MIMCLEncoder
    from mimcl_hub.eval.knn import KNNMonitor, load_knn_datasets

    run = trained / "vit_dino"
    encoder = load_file(run / "encoder" / "model.safetensors")
    student = load_file(run / "checkpoints" / "checkpoint-2" / "model.safetensors")
    objective = load_file(run / "checkpoints" / "checkpoint-2" / "model_1.safetensors")
    prefix = "view_objective.target_backbone."
    teacher = {k[len(prefix):]: v for k, v in objective.items() if k.startswith(prefix)}
    assert encoder.keys() == teacher.keys() == student.keys()
    for key in encoder:
        assert torch.equal(encoder[key], teacher[key]), key
    assert max(float((encoder[k] - student[k]).abs().max()) for k in encoder) > 1e-6   # two steps apart
    # the other momentum objectives release the trained (online / query) backbone
    for name in ("resnet18_byol", "resnet18_moco"):
        saved = load_file(trained / name / "encoder" / "model.safetensors")
        online = load_file(trained / name / "checkpoints" / "checkpoint-2" / "model.safetensors")
        assert all(torch.equal(saved[k], online[k]) for k in saved), name
    # the card's kNN result is the monitor's on the released weights (the same settings as the run's monitor)
    card = ModelCard.load(run / "encoder" / "README.md")
    top1 = [r for r in card.data.eval_results if r.metric_name == "kNN top-1 accuracy"][0]
    k, t = re.fullmatch(r"k=(\d+),T=([\d.]+)", top1.metric_config).groups()
    enc = MIMCLEncoder.from_pretrained(run / "encoder")
    data_cfg = enc.data_config()
    knn_train, knn_test = load_knn_datasets("digits", img_size=16, mean=data_cfg["mean"], std=data_cfg["std"],
                                            max_train=64, max_test=32, seed=card.data.mimcl_hub["seed"])
    measured = KNNMonitor(knn_train, knn_test, k=int(k), T=float(t))(enc.model)
    assert top1.metric_value == pytest.approx(round(measured["knn_top1"], 4), abs=1e-4)
