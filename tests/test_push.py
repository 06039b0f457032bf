"""``mimcl push`` / ``push_encoder`` against a Hub-compatible server on 127.0.0.1 (tests/hub_server.py),
through the real huggingface_hub client in subprocesses (HF_ENDPOINT is read when huggingface_hub is
imported, and this test process runs with HF_HUB_OFFLINE=1): the pushed repo equals the folder, loads by
repo id in timm and transformers; bad token / folder / repo id and an interrupted commit fail clearly
and leave no repo or partial commit behind."""

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import mimcl_hub  # noqa: F401  (registers the small-image variants)
from mimcl_hub.hub import EvalEntry, PushError, RunCard, mask_token, push_encoder, save_encoder
from mimcl_hub.models import create_backbone
from mimcl_hub.objectives import build_infoaug

sys.path.insert(0, os.path.dirname(__file__))
from hub_server import HubServer, client_env  # noqa: E402

TOKEN = "hf_testtokenABCDwxyz"
CARD = RunCard(objective="byol", mi_objective="simclr", mi_weight=0.5, twin_mode="mi", license="apache-2.0",
               datasets=["uoft-cs/cifar10"], model_id="tester/vit-byol",
               results=[EvalEntry("digits", "knn_top1", 0.4321, "scikit-learn digits", config="k=20,T=0.07"),
                        EvalEntry("digits", "knn_top5", 0.9, "scikit-learn digits", config="k=20,T=0.07")],
               train_metrics={"train_loss": 1.25, "global_step": 6}, training_config={"max_steps": 6})


@pytest.fixture(scope="module")
def hub():
    with HubServer(token=TOKEN, user="tester", orgs=("mimcl-org",)) as server:
        yield server


@pytest.fixture(scope="module")
def encoder_folder(tmp_path_factory):
    torch.manual_seed(0)
    vit = create_backbone("vit_tiny_patch4_32", img_size=16)
    with torch.no_grad():                    # not the init: make sure the weights really travel
        for p in vit.parameters():
            p.add_(0.01 * torch.randn_like(p))
    objective = build_infoaug("byol", "simclr", feature_dim=vit.num_features, mi_weight=0.5)
    objective.build_targets(vit)
    folder = tmp_path_factory.mktemp("enc") / "encoder"
    save_encoder(vit.eval(), folder, CARD, heads=objective, heads_config=objective.config)
    return folder


def _env(hub, home, token=TOKEN):
    return client_env(hub, home, token)


def _mimcl(hub, home, *args, token=TOKEN, **extra_env):
    return subprocess.run([sys.executable, "-m", "mimcl_hub.cli", *map(str, args)],
                          env={**_env(hub, home, token), **extra_env}, capture_output=True, text=True, timeout=120)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _folder_files(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): _sha(p.read_bytes()) for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def pushed(hub, encoder_folder, tmp_path_factory):
    home = tmp_path_factory.mktemp("hf_home")
    result = _mimcl(hub, home, "push", encoder_folder, "--repo-id", "mimcl-org/vit-byol")
    assert result.returncode == 0, result.stderr
    return result


def test_push_uploads_the_folder_as_one_commit(hub, encoder_folder, pushed):
    repo = hub.repo("mimcl-org/vit-byol")
    assert repo is not None and not repo.private
    assert len(repo.commits) == 2                                        # the initial commit + ONE upload commit
    head = repo.branches["main"]
    assert pushed.stdout.strip().endswith(f"/mimcl-org/vit-byol/commit/{head}")
    remote = {p: _sha(d) for p, d in hub.files("mimcl-org/vit-byol").items() if p != ".gitattributes"}
    assert remote == _folder_files(encoder_folder)
    assert "heads/model.safetensors" in remote
    assert not hub.unhandled, hub.unhandled


def test_download_by_repo_id_loads_in_timm_and_transformers(hub, encoder_folder, pushed, tmp_path):
    import timm

    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    torch.save(x, tmp_path / "x.pt")
    script = textwrap.dedent(f"""
        import hashlib, json, os, sys, torch
        from huggingface_hub import snapshot_download
        folder = snapshot_download("mimcl-org/vit-byol")
        files = {{}}
        for root, _, names in os.walk(folder):
            for n in names:
                p = os.path.join(root, n)
                files[os.path.relpath(p, folder).replace(os.sep, "/")] = hashlib.sha256(open(p, "rb").read()).hexdigest()
        import timm
        from transformers import AutoModel
        x = torch.load({str(tmp_path / "x.pt")!r})
        with torch.no_grad():
            t = timm.create_model("hf-hub:mimcl-org/vit-byol", pretrained=True).eval()(x)
            h = AutoModel.from_pretrained("mimcl-org/vit-byol").eval()(pixel_values=x).pooler_output
        torch.save({{"timm": t, "transformers": h}}, {str(tmp_path / "out.pt")!r})
        json.dump(files, open({str(tmp_path / "files.json")!r}, "w"))
    """)
    home = tmp_path / "hf_home"                                             # a fresh cache: really downloads
    result = subprocess.run([sys.executable, "-c", script], env=_env(hub, home, token=None),
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    downloaded = json.loads((tmp_path / "files.json").read_text())
    downloaded.pop(".gitattributes", None)
    assert downloaded == _folder_files(encoder_folder)
    out = torch.load(tmp_path / "out.pt")
    local = timm.create_model(f"local-dir:{encoder_folder}", pretrained=True).eval()
    with torch.no_grad():
        expected = local(x)
    torch.testing.assert_close(out["timm"], expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(out["transformers"], expected, atol=1e-5, rtol=0)
    assert not hub.unhandled, hub.unhandled


def test_bad_token_names_masked_token_and_repo(hub, encoder_folder, tmp_path):
    bad = "hf_wrongtoken0000abcd"
    result = _mimcl(hub, tmp_path, "push", encoder_folder, "--repo-id", "tester/bad-token", token=bad)
    assert result.returncode == 2
    err = result.stderr
    assert "hf_…abcd" in err and "tester/bad-token" in err and "401" in err
    assert bad not in err                                                   # never the whole token
    assert hub.repo("tester/bad-token") is None


def test_no_token_says_so(hub, encoder_folder, tmp_path):
    result = _mimcl(hub, tmp_path, "push", encoder_folder, "--repo-id", "tester/no-token", token=None)
    assert result.returncode == 2 and "no token" in result.stderr and "tester/no-token" in result.stderr
    assert hub.repo("tester/no-token") is None


@pytest.mark.parametrize("case", ["missing_folder", "not_encoder", "bad_repo_id", "no_namespace"])
def test_bad_input_fails_before_any_request(hub, encoder_folder, tmp_path, case, monkeypatch, capsys):
    folder, repo_id = encoder_folder, "tester/fine"
    if case == "missing_folder":
        folder = tmp_path / "nope"
    elif case == "not_encoder":
        folder = tmp_path / "half"
        folder.mkdir()
        (folder / "config.json").write_text("{}")
    elif case == "bad_repo_id":
        repo_id = "tester/bad..name"
    else:
        repo_id = "just-a-name"
    hub.reset_log()
    from mimcl_hub.cli import main                                           # in-process: no request may be sent

    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    code = main(["push", str(folder), "--repo-id", repo_id])
    err = capsys.readouterr().err
    assert code == 2
    expected = {"missing_folder": "does not exist", "not_encoder": "missing model.safetensors, README.md",
                "bad_repo_id": "invalid repo id", "no_namespace": "NAMESPACE/NAME"}[case]
    assert expected in err and err.startswith("mimcl push: error: ")
    assert hub.requests == []


@pytest.mark.parametrize("mode", ["drop", "500"])
def test_interrupted_commit_leaves_no_partial_commit(hub, encoder_folder, tmp_path, mode):
    """Without retries (MIMCL_PUSH_MAX_RETRIES=0) an interrupted commit fails clearly and leaves nothing;
    tests/test_reliability.py covers the retries themselves."""
    repo_id = f"tester/interrupted-{mode}"
    hub.fail_next(1, mode=mode, path_contains=f"/{repo_id}/commit/")
    result = _mimcl(hub, tmp_path, "push", encoder_folder, "--repo-id", repo_id, MIMCL_PUSH_MAX_RETRIES="0")
    assert result.returncode == 2, result.stdout
    assert repo_id in result.stderr and "failed" in result.stderr and "Traceback" not in result.stderr
    assert "after 1 attempt of create the commit (max_retries=0)" in result.stderr
    repo = hub.repo(repo_id)
    assert repo is not None and len(repo.commits) == 1                     # only the Hub's initial commit
    assert set(hub.files(repo_id)) == {".gitattributes"}
    # pushing again completes it
    again = _mimcl(hub, tmp_path, "push", encoder_folder, "--repo-id", repo_id)
    assert again.returncode == 0, again.stderr
    assert {p: _sha(d) for p, d in hub.files(repo_id).items() if p != ".gitattributes"} == _folder_files(encoder_folder)


def test_repush_to_branch_mirrors_folder(hub, encoder_folder, pushed, tmp_path):
    import shutil

    folder = tmp_path / "enc2"
    shutil.copytree(encoder_folder, folder)
    shutil.rmtree(folder / "heads")
    (folder / "training_metrics.json").write_text('{"train_loss": 0.5}')
    result = _mimcl(hub, tmp_path, "push", folder, "--repo-id", "mimcl-org/vit-byol", "--revision", "dev",
                    "--private", "--commit-message", "second")
    assert result.returncode == 0, result.stderr
    dev = {p: _sha(d) for p, d in hub.files("mimcl-org/vit-byol", "dev").items() if p != ".gitattributes"}
    assert dev == _folder_files(folder)                                      # heads/ deleted, metrics replaced
    assert "heads/model.safetensors" in hub.files("mimcl-org/vit-byol", "main")  # main untouched
    repo = hub.repo("mimcl-org/vit-byol")
    assert repo.commits[repo.branches["dev"]].title == "second"


def test_mask_token_and_python_api_validation(tmp_path):
    assert mask_token(None) == "no token" and mask_token("") == "no token"
    assert mask_token("hf_abcdefghijklmnop") == "hf_…mnop"
    assert "abcdefgh" not in mask_token("abcdefghijkl")
    with pytest.raises(PushError, match="does not exist"):
        push_encoder(tmp_path / "missing", "a/b")
    assert issubclass(PushError, ValueError) and issubclass(PushError, RuntimeError)


def test_recipe_push_to_hub_uploads_the_trained_encoder(hub, tmp_path):
    """--push_to_hub at the end of a (tiny) training run lands the encoder folder as one commit."""
    from mimcl_hub.data import make_scenes, mine_dataset

    data = tmp_path / "scenes"
    mine_dataset(make_scenes(1, seed=3, num_frames=12, cache_dir=str(tmp_path / "cache")), max_side=128).save_to_disk(str(data))
    out = tmp_path / "run"
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "vit_simclr.py"
    proc = subprocess.run(
        [sys.executable, str(recipe), "--output_dir", str(out), "--video_dataset", str(data), "--img_size", "16",
         "--per_device_train_batch_size", "4", "--twin_batch_size", "4", "--max_steps", "2", "--save_steps", "2",
         "--eval_dataset", "none", "--disable_tqdm", "--mixed_precision", "no",
         "--push_to_hub", "--hub_model_id", "tester/trained-run"],
        env=_env(hub, tmp_path / "home"), capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert hub.files("tester/trained-run", "main").keys() >= {"config.json", "model.safetensors", "README.md"}
    local = _folder_files(out / "encoder")
    remote = hub.files("tester/trained-run", "main")
    for name, digest in local.items():
        assert _sha(remote[name]) == digest, name
