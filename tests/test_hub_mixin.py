"""The hub_mixin shape (issue 15, item 3) against the Hub-compatible server on 127.0.0.1 (tests/hub_server.py),
through the real huggingface_hub client in subprocesses (HF_ENDPOINT is read when huggingface_hub is imported; this
test process runs offline):

* ``MIMCLEncoder.push_to_hub`` / ``save_pretrained(push_to_hub=True)`` upload what ``save_pretrained`` writes with
  ``push_encoder`` (the code of ``mimcl push`` and training's ``--push_to_hub``): a round trip gives the same
  weights, config.json and card, a second push commits nothing, ``create_pr`` opens ``refs/pr/N``;
* ``mimcl eval ORG/NAME --push [--create_pr]`` merges its results into the Hub card's model-index (replacing a
  result of the same (dataset, split, metric), keeping every other YAML field and the body outside the results
  table), for a mimcl_hub card and for a card from elsewhere; the leaderboard reads the new result;
* a commit on top of a revision the branch has moved past is refused (nothing overwritten);
* bad flag combinations fail before any request, with exit status 2 and a message naming the flag.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

import mimcl_hub  # noqa: F401
from mimcl_hub.hub import EvalEntry, MIMCLEncoder, RunCard, save_encoder
from mimcl_hub.models import create_backbone

sys.path.insert(0, os.path.dirname(__file__))
from hub_server import HubServer, client_env  # noqa: E402

TOKEN = "hf_testtokenMIXINwxyz"
SMALL = ["--max_train", "200", "--max_test", "150"]
FOREIGN_CARD = """---
license: mit
library_name: timm
tags:
- image-feature-extraction
- someone-elses-model
pipeline_tag: image-feature-extraction
datasets:
- someone/pretraining-set
custom_field:
  nested: [1, 2, 3]
---

# Someone else's encoder

Trained elsewhere, without mimcl_hub.

## Training

Details that must survive the update.
"""


@pytest.fixture(scope="module")
def hub():
    with HubServer(token=TOKEN, user="tester", orgs=("mimcl-org",)) as server:
        yield server


@pytest.fixture(scope="module")
def encoder_folder(tmp_path_factory):
    torch.manual_seed(0)
    model = create_backbone("vit_tiny_patch4_32", img_size=16).eval()      # 16x16: fast on 2 CPU cores
    folder = tmp_path_factory.mktemp("enc") / "encoder"
    save_encoder(model, folder, RunCard(objective="simclr", model_id="mimcl-org/vit-eval",
                                        hub_model_id="mimcl-org/vit-eval", license="apache-2.0",
                                        results=[EvalEntry("digits", "knn_top1", 0.25, "scikit-learn digits",
                                                           config="k=20,T=0.07"),
                                                 EvalEntry("other-set", "knn_top1", 0.5, "another set")]))
    return folder


def _run(hub, home, *args, timeout=300):
    return subprocess.run([sys.executable, *map(str, args)], env=client_env(hub, home, TOKEN), capture_output=True,
                          text=True, timeout=timeout)


def _mimcl(hub, home, *args):
    return _run(hub, home, "-m", "mimcl_hub.cli", *args)


def _python(hub, home, code: str):
    proc = _run(hub, home, "-c", textwrap.dedent(code))
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _split(readme: bytes) -> tuple[dict, str]:
    """(parsed YAML metadata, body) of a card."""
    text = readme.decode("utf-8")
    assert text.startswith("---\n")
    meta, _, body = text[4:].partition("\n---\n")
    return yaml.safe_load(meta), body


def _outside_results(body: str) -> str:
    """The body without the results table that ``mimcl eval`` manages (between its markers), blank-line runs as one
    (the table is inserted as a block of its own, with a blank line on each side)."""
    head, found, rest = body.partition("<!-- mimcl-eval:start -->")
    return re.sub(r"\n{3,}", "\n\n", head + rest.partition("<!-- mimcl-eval:end -->")[2] if found else body)


def _results(meta: dict) -> dict:
    """{(dataset, split, metric type, metric name): (value, config)} of a card's model-index."""
    out = {}
    for entry in meta.get("model-index", [{}])[0].get("results", []):
        for metric in entry["metrics"]:
            key = (entry["dataset"]["type"], entry["dataset"].get("split"), metric["type"], metric.get("name"))
            assert key not in out, f"duplicate result {key}"
            out[key] = (metric["value"], metric.get("config"))
    return out


KNN1 = ("sklearn:digits", "test", "accuracy", "kNN top-1 accuracy")
LIN1 = ("sklearn:digits", "test", "accuracy", "Linear probe top-1 accuracy")


# ------------------------------------------------------------------------------------------- push_to_hub


def test_push_to_hub_round_trip_idempotent_and_pull_request(hub, encoder_folder, tmp_path):
    out = _python(hub, tmp_path / "home", f"""
        import json, torch
        from mimcl_hub.hub import MIMCLEncoder
        enc = MIMCLEncoder.from_pretrained({str(encoder_folder)!r})
        first = enc.push_to_hub("tester/mixin-vit")
        second = enc.push_to_hub("tester/mixin-vit")              # unchanged: nothing committed
        back = MIMCLEncoder.from_pretrained("tester/mixin-vit")
        a, b = enc.model.state_dict(), back.model.state_dict()
        same = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        x = torch.rand(2, 3, 16, 16)
        with torch.no_grad():
            close = torch.allclose(enc(x), back(x), atol=0, rtol=0)
        enc.model.pos_embed.data += 1.0                           # changed weights: a new commit ...
        pr = enc.push_to_hub("tester/mixin-vit", create_pr=True)  # ... as a pull request
        print(json.dumps({{"first": first, "second": second, "same_weights": same, "same_features": close,
                          "config": back.config == enc.config, "card": str(back.card.content) == str(enc.card.content),
                          "pr": pr}}))
    """)
    repo = hub.repo("tester/mixin-vit")
    assert out["same_weights"] and out["same_features"] and out["config"] and out["card"]
    assert out["second"] == out["first"] and out["first"].endswith("/commit/" + repo.branches["main"])
    assert len([c for c in repo.commits.values() if c.parent is not None]) == 2      # the push and the PR only
    # the files on the Hub are the folder's, byte for byte (what save_pretrained writes = what training writes)
    main = hub.files("tester/mixin-vit", "main")
    for name in ("config.json", "model.safetensors", "README.md", "training_metrics.json"):
        assert main[name] == (encoder_folder / name).read_bytes(), name
    # the pull request: refs/pr/1 holds the new weights, main is unchanged
    assert out["pr"].endswith("/tester/mixin-vit/discussions/1")
    assert [pr["ref"] for pr in hub.pull_requests("tester/mixin-vit")] == ["refs/pr/1"]
    pr_files = hub.files("tester/mixin-vit", "refs/pr/1")
    assert pr_files["model.safetensors"] != main["model.safetensors"]
    assert pr_files["README.md"] == main["README.md"] and pr_files["config.json"] == main["config.json"]
    assert hub.files("tester/mixin-vit")["model.safetensors"] == (encoder_folder / "model.safetensors").read_bytes()


def test_save_pretrained_push_to_hub_names_the_repo_in_a_new_card(hub, tmp_path):
    out = _python(hub, tmp_path / "home", f"""
        import json, torch
        from mimcl_hub.hub import MIMCLEncoder
        from mimcl_hub.models import create_backbone
        torch.manual_seed(1)
        enc = MIMCLEncoder(create_backbone("test_vit", img_size=16).eval())     # no folder, no card
        url = enc.save_pretrained({str(tmp_path / "fresh")!r}, push_to_hub=True, repo_id="mimcl-org/fresh")
        print(json.dumps({{"url": url}}))
    """)
    main = hub.files("mimcl-org/fresh", "main")
    assert out["url"] == f"{hub.url}/mimcl-org/fresh/commit/{hub.repo('mimcl-org/fresh').branches['main']}"
    assert main["README.md"] == (tmp_path / "fresh" / "README.md").read_bytes()
    meta, body = _split(main["README.md"])
    assert "model-index" not in meta                  # no results yet
    assert "mimcl-org/fresh" in body                  # the card's snippets load the repo it was pushed to
    assert "path/to/encoder" not in body


def test_save_pretrained_push_arguments_are_checked_before_writing(tmp_path):
    enc = MIMCLEncoder(create_backbone("test_vit", img_size=16).eval())
    with pytest.raises(ValueError, match="needs repo_id"):
        enc.save_pretrained(tmp_path / "a", push_to_hub=True)
    with pytest.raises(ValueError, match="pass push_to_hub=True"):
        enc.save_pretrained(tmp_path / "b", create_pr=True)
    with pytest.raises(ValueError, match="invalid repo_id"):
        enc.push_to_hub("not a repo id")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# ------------------------------------------------------------------------------------------- eval --push


def test_eval_push_merges_results_into_the_hub_card(hub, encoder_folder, tmp_path):
    home = tmp_path / "home"
    pushed = _mimcl(hub, home, "push", encoder_folder, "--repo_id", "mimcl-org/vit-eval")
    assert pushed.returncode == 0, pushed.stderr
    before_meta, before_body = _split(hub.files("mimcl-org/vit-eval")["README.md"])

    proc = _mimcl(hub, home, "eval", "mimcl-org/vit-eval", "--push", *SMALL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    answer = json.loads(proc.stdout)
    res = answer["results"]["digits"]
    assert answer["push"]["committed"] and not answer["push"]["pull_request"]
    head = hub.repo("mimcl-org/vit-eval").branches["main"]
    assert answer["push"]["url"].endswith(f"/commit/{head}") and f"committed {answer['push']['url']}" in proc.stderr
    assert hub.repo("mimcl-org/vit-eval").commits[head].parent == answer["revision"]     # on top of what was read

    files = hub.files("mimcl-org/vit-eval")
    meta, body = _split(files["README.md"])
    # every other metadata field and the body outside the results table unchanged
    assert {k: v for k, v in meta.items() if k != "model-index"} == \
        {k: v for k, v in before_meta.items() if k != "model-index"}
    assert _outside_results(body) == _outside_results(before_body)
    results = _results(meta)
    assert results[KNN1] == (pytest.approx(round(res["knn_top1"], 4)), "k=20,T=0.07")      # replaced 0.25
    assert ("digits", "test", "accuracy", "kNN top-1 accuracy") not in results      # the old card's name, replaced
    assert results[LIN1][0] == pytest.approx(round(res["linear_top1"], 4))
    assert results[("other-set", "test", "accuracy", "kNN top-1 accuracy")] == (0.5, None)  # kept
    assert f"{res['knn_top1']:.4f}" in body.partition("<!-- mimcl-eval:start -->")[2]
    assert json.loads(files["eval_results.json"])["results"]["digits"]["knn_top1"] == pytest.approx(res["knn_top1"])

    # a second run with another value replaces, never duplicates (_results asserts no duplicate key)
    again = _mimcl(hub, home, "eval", "mimcl-org/vit-eval", "--push", "--knn_k", "5", "--no_linear", *SMALL)
    assert again.returncode == 0, again.stderr[-3000:]
    res2 = json.loads(again.stdout)["results"]["digits"]
    meta2, body2 = _split(hub.files("mimcl-org/vit-eval")["README.md"])
    results2 = _results(meta2)
    assert results2[KNN1] == (pytest.approx(round(res2["knn_top1"], 4)), "k=5,T=0.07")
    assert results2[LIN1] == results[LIN1] and len(results2) == len(results)
    assert _outside_results(body2) == _outside_results(before_body)

    # the leaderboard reads the new result from the Hub card
    board = _mimcl(hub, home, "leaderboard", "mimcl-org/vit-eval", "--format", "json")
    assert board.returncode == 0, board.stderr
    row = json.loads(board.stdout)["rows"][0]
    assert row["digits/knn_top1"] == pytest.approx(round(res2["knn_top1"], 4))
    assert row["digits/linear_top1"] == pytest.approx(round(res["linear_top1"], 4))


def test_eval_push_create_pr_on_a_card_from_elsewhere(hub, encoder_folder, tmp_path):
    """A card without a mimcl_hub: block (someone else's model): --create_pr opens refs/pr/1 with the merged card,
    main does not move, every YAML field but the model-index and the whole body stay."""
    import shutil

    home = tmp_path / "home"
    foreign = tmp_path / "foreign"
    shutil.copytree(encoder_folder, foreign)
    (foreign / "README.md").write_text(FOREIGN_CARD)
    (foreign / "eval_results.json").unlink(missing_ok=True)
    assert _mimcl(hub, home, "push", foreign, "--repo_id", "mimcl-org/foreign").returncode == 0
    main_before = hub.files("mimcl-org/foreign")
    head_before = hub.repo("mimcl-org/foreign").branches["main"]

    proc = _mimcl(hub, home, "eval", "mimcl-org/foreign", "--push", "--create_pr", "--no_linear", *SMALL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    answer = json.loads(proc.stdout)
    assert answer["push"]["pull_request"] and answer["push"]["url"].endswith("/mimcl-org/foreign/discussions/1")
    assert f"opened pull request {answer['push']['url']}" in proc.stderr
    assert hub.repo("mimcl-org/foreign").branches["main"] == head_before
    assert hub.files("mimcl-org/foreign") == main_before
    (pr,) = hub.pull_requests("mimcl-org/foreign")
    assert pr["ref"] == "refs/pr/1" and pr["base"] == head_before and pr["target"] == "main"

    meta_before, body_before = _split(main_before["README.md"])
    meta, body = _split(hub.files("mimcl-org/foreign", "refs/pr/1")["README.md"])
    assert {k: v for k, v in meta.items() if k != "model-index"} == meta_before
    assert _outside_results(body) == body_before
    assert _results(meta)[KNN1][0] == pytest.approx(round(answer["results"]["digits"]["knn_top1"], 4))
    assert meta["model-index"][0]["name"] == "mimcl-org/foreign"


def test_commit_on_a_moved_branch_is_refused_and_a_pr_from_it_is_not(hub, encoder_folder, tmp_path):
    """parent_commit: a branch that moved since the revision was read is never overwritten."""
    home = tmp_path / "home"
    assert _mimcl(hub, home, "push", encoder_folder, "--repo_id", "mimcl-org/stale").returncode == 0
    old = hub.repo("mimcl-org/stale").branches["main"]
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "notes.md").write_text("someone else's change\n")
    (tmp_path / "two").mkdir()
    (tmp_path / "two" / "notes.md").write_text("ours\n")
    out = _python(hub, home, f"""
        import json
        from mimcl_hub.hub.push import StaleRevisionError, push_folder
        push_folder({str(tmp_path / "one")!r}, "mimcl-org/stale", mirror=False)          # the branch moves on
        try:
            push_folder({str(tmp_path / "two")!r}, "mimcl-org/stale", mirror=False, parent_commit={old!r})
            stale = None
        except StaleRevisionError as e:
            stale = str(e)
        pr = push_folder({str(tmp_path / "two")!r}, "mimcl-org/stale", mirror=False, parent_commit={old!r},
                         create_pr=True)
        print(json.dumps({{"stale": stale, "pr": pr}}))
    """)
    assert out["stale"] and "has moved from" in out["stale"] and "nothing was committed" in out["stale"]
    assert hub.files("mimcl-org/stale")["notes.md"] == b"someone else's change\n"
    assert out["pr"].endswith("/discussions/1")
    assert hub.pull_requests("mimcl-org/stale")[0]["base"] == old
    assert hub.files("mimcl-org/stale", "refs/pr/1")["notes.md"] == b"ours\n"


def test_push_eval_results_to_a_repo_without_a_card(hub, tmp_path):
    """push_eval_results (what --push calls after evaluating) on a repo with no README.md: a card holding just the
    model-index and the results table is committed; the same results again commit nothing."""
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "notes.txt").write_text("a repo without a model card\n")
    result = {"knn_top1": 0.61234, "knn_top5": 0.9, "knn_k": 20, "knn_t": 0.07, "split": "test", "num_train": 10,
              "num_test": 5}
    out = _python(hub, tmp_path / "home", f"""
        import json
        from huggingface_hub import HfApi
        from mimcl_hub.eval import push_eval_results
        from mimcl_hub.hub.push import push_folder
        push_folder({str(tmp_path / "files")!r}, "mimcl-org/no-card")
        head = HfApi().repo_info("mimcl-org/no-card").sha
        first = push_eval_results("mimcl-org/no-card", {{"digits": {result!r}}}, parent_commit=head)
        head2 = HfApi().repo_info("mimcl-org/no-card").sha
        again = push_eval_results("mimcl-org/no-card", {{"digits": {result!r}}}, parent_commit=head2)
        print(json.dumps({{"first": first, "again": again, "head": head, "head2": head2}}))
    """)
    assert out["first"]["committed"] and out["first"]["url"].endswith("/commit/" + out["head2"])
    assert out["again"] == {"url": None, "committed": False, "pull_request": False, "revision": out["head2"]}
    assert hub.repo("mimcl-org/no-card").branches["main"] == out["head2"]
    files = hub.files("mimcl-org/no-card")
    meta, body = _split(files["README.md"])
    assert set(meta) == {"model-index"} and meta["model-index"][0]["name"] == "mimcl-org/no-card"
    assert _results(meta)[KNN1] == (0.6123, "k=20,T=0.07")
    assert body.lstrip("\n").startswith("<!-- mimcl-eval:start -->") and "0.6123" in body
    assert files["notes.txt"] == b"a repo without a model card\n"
    assert json.loads(files["eval_results.json"])["results"]["digits"]["knn_top1"] == 0.61234


# ------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("args, message", [
    (["{folder}", "--create_pr"], "--create_pr opens a pull request"),
    (["{folder}", "--push"], "is a local folder"),
    (["mimcl-org/vit-eval", "--push", "--no_card"], "cannot be combined with --no_card"),
    (["mimcl-org/vit-eval", "--push", "--revision", "a" * 40], "is a commit id"),
    (["not/a/repo", "--push"], "invalid MODEL for --push"),
    (["bad..name/x", "--push"], "invalid MODEL for --push"),
])
def test_eval_push_bad_flags_fail_before_any_request(encoder_folder, args, message, capsys, monkeypatch):
    from mimcl_hub.cli import main

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")           # nothing may be asked of any Hub
    before = {p.name: p.read_bytes() for p in encoder_folder.iterdir() if p.is_file()}
    code = main(["eval", *[a.format(folder=encoder_folder) for a in args], "--max_train", "20"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err, err
    assert {p.name: p.read_bytes() for p in encoder_folder.iterdir() if p.is_file()} == before


def test_mimcl_push_create_pr_opens_a_pull_request(hub, encoder_folder, tmp_path):
    import shutil

    home = tmp_path / "home"
    assert _mimcl(hub, home, "push", encoder_folder, "--repo_id", "mimcl-org/cli-pr").returncode == 0
    head = hub.repo("mimcl-org/cli-pr").branches["main"]
    changed = tmp_path / "changed"
    shutil.copytree(encoder_folder, changed)
    (changed / "training_metrics.json").write_text('{"train_loss": 0.5}\n')
    proc = _mimcl(hub, home, "push", changed, "--repo_id", "mimcl-org/cli-pr", "--create_pr")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == f"{hub.url}/mimcl-org/cli-pr/discussions/1"
    assert hub.repo("mimcl-org/cli-pr").branches["main"] == head
    assert hub.files("mimcl-org/cli-pr", "refs/pr/1")["training_metrics.json"] == b'{"train_loss": 0.5}\n'


def test_push_create_pr_to_a_missing_repo_is_clear(hub, encoder_folder, tmp_path):
    proc = _mimcl(hub, tmp_path / "home", "push", encoder_folder, "--repo_id", "mimcl-org/nowhere", "--create_pr")
    assert proc.returncode == 2 and "mimcl-org/nowhere" in proc.stderr and "Traceback" not in proc.stderr
    assert hub.repo("mimcl-org/nowhere") is None
