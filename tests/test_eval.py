"""evaluate_encoder writes eval_results.json and merges kNN / linear results into the card's model-index;
the card still renders (with the twin picture); the linear probe is exact on separable data; clear errors."""

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import mimcl_hub  # noqa: F401
from mimcl_hub.eval import evaluate_encoder, linear_probe
from mimcl_hub.hub import EvalEntry, RunCard, save_encoder
from mimcl_hub.models import create_backbone

TWINS_PNG = Path(__file__).resolve().parents[1] / "model_cards" / "assets" / "bikes_twins.png"
SMALL = dict(max_train=200, max_test=150)


@pytest.fixture()
def folder(tmp_path):
    torch.manual_seed(0)
    model = create_backbone("vit_tiny_patch4_32", img_size=16).eval()     # 16x16: fast on 2 CPU cores
    out = tmp_path / "enc"
    save_encoder(model, out, RunCard(objective="simclr", model_id="tester/vit-eval",
                                     results=[EvalEntry("digits", "knn_top1", 0.25, "scikit-learn digits")]),
                 twin_figure=TWINS_PNG if TWINS_PNG.is_file() else None)
    return out


def _render(card_text: str) -> str:
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark").enable("table").render(card_text)


def test_evaluate_digits_updates_results_and_card(folder):
    from huggingface_hub import ModelCard

    before = (folder / "README.md").read_text()
    out = evaluate_encoder(folder, datasets=("digits",), **SMALL)
    res = out["results"]["digits"]
    assert 0.1 < res["knn_top1"] <= 1 and 0.1 < res["linear_top1"] <= 1 and res["knn_top5"] >= res["knn_top1"]
    assert res["num_train"] == 200 and res["num_test"] == 150 and res["num_classes"] == 10

    saved = json.loads((folder / "eval_results.json").read_text())
    assert saved["results"]["digits"]["knn_top1"] == pytest.approx(res["knn_top1"])

    card = ModelCard.load(folder / "README.md")
    by_name = {r.metric_name: r for r in card.data.eval_results}
    assert set(by_name) == {"kNN top-1 accuracy", "kNN top-5 accuracy", "Linear probe top-1 accuracy"}
    assert by_name["kNN top-1 accuracy"].metric_value == pytest.approx(round(res["knn_top1"], 4))   # replaced 0.25
    assert by_name["Linear probe top-1 accuracy"].metric_value == pytest.approx(round(res["linear_top1"], 4))
    assert all(r.dataset_type == "sklearn:digits" and r.task_type == "image-classification" for r in card.data.eval_results)
    # the rest of the card is kept: metadata and body
    assert card.data.library_name == "timm" and card.data.pipeline_tag == "image-feature-extraction"
    assert "mimcl_hub" in card.data.tags
    for line in ("## How to use", "## Intended uses", "## Limitations", "arXiv:2511.00028"):
        assert line in before and line in card.text
    assert "Linear probe" not in before and "| scikit-learn digits |" in card.text

    html = _render(card.text)
    assert "<table>" in html and "<h2>How to use</h2>" in html
    if TWINS_PNG.is_file():
        assert (folder / "twins.png").is_file()
        assert '<img src="twins.png"' in html
    assert not [n for n in os.listdir(folder) if n.startswith(".tmp")]    # atomic writes left nothing behind


def test_second_eval_merges_not_duplicates(folder):
    from huggingface_hub import ModelCard

    evaluate_encoder(folder, linear=False, knn_k=5, **SMALL)
    first = ModelCard.load(folder / "README.md").data.eval_results
    assert {r.metric_name for r in first} == {"kNN top-1 accuracy", "kNN top-5 accuracy"}
    assert {r.metric_config for r in first} == {"k=5,T=0.07"}

    evaluate_encoder(folder, linear=True, knn_k=20, **SMALL)               # adds a metric, replaces the kNN ones
    card = ModelCard.load(folder / "README.md")
    results = card.data.eval_results
    keys = [(r.dataset_type, r.dataset_split, r.metric_type, r.metric_name) for r in results]
    assert len(keys) == len(set(keys)) == 3
    assert {r.metric_config for r in results if r.metric_name.startswith("kNN")} == {"k=20,T=0.07"}
    assert card.text.count("<!-- mimcl-eval:start -->") == 1                 # one results table, replaced
    assert set(json.loads((folder / "eval_results.json").read_text())["results"]) == {"digits"}


def test_evaluate_saved_dataset_and_columns(folder, tmp_path):
    import datasets

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 20)
    imgs = [np.full((12, 12, 3), 60 * y + 20, dtype=np.uint8) + rng.integers(0, 10, (12, 12, 3), dtype=np.uint8)
            for y in labels]
    features = datasets.Features({"img": datasets.Image(), "target": datasets.Value("int64")})
    ds = datasets.Dataset.from_dict({"img": imgs, "target": labels.tolist()}, features=features)
    ds.train_test_split(test_size=0.25, seed=0).save_to_disk(str(tmp_path / "toy"))
    with pytest.raises(ValueError, match="image / label columns"):
        evaluate_encoder(folder, datasets=[str(tmp_path / "toy")], linear=False)
    out = evaluate_encoder(folder, datasets=[str(tmp_path / "toy")], image_column="img", label_column="target")
    res = out["results"][str(tmp_path / "toy")]
    assert res["num_classes"] == 3 and res["linear_top1"] == 1.0


def test_string_labels_reach_the_card_and_a_repeated_dataset_is_evaluated_once(folder, tmp_path):
    """issue 19 item 8: a dataset with string labels (no ClassLabel) is evaluated, its labels mapped to class ids
    (sorted strings of train, the same mapping for test), and its results merged into the card; a dataset named
    twice is evaluated once."""
    import datasets
    from huggingface_hub import ModelCard

    rng = np.random.default_rng(0)
    names = np.array(["zebra", "ant", "moth"])
    labels = np.repeat(np.arange(3), 12)
    imgs = [np.full((12, 12, 3), 70 * y + 20, dtype=np.uint8) + rng.integers(0, 10, (12, 12, 3), dtype=np.uint8)
            for y in labels]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.Value("string")})
    ds = datasets.Dataset.from_dict({"image": imgs, "label": names[labels].tolist()}, features=features)
    path = str(tmp_path / "strings")
    ds.train_test_split(test_size=0.25, seed=0).save_to_disk(path)
    out = evaluate_encoder(folder, datasets=[path, path, Path(path)])
    assert list(out["results"]) == [path]
    res = out["results"][path]
    assert res["num_classes"] == 3 and res["knn_top1"] == 1.0 and res["linear_top1"] == 1.0   # separable by colour
    card = ModelCard.load(folder / "README.md")
    assert {r.metric_name for r in card.data.eval_results if r.dataset_type == "local:strings"} == {
        "kNN top-1 accuracy", "Linear probe top-1 accuracy"}
    assert card.text.count("| strings |") == 1 and path not in card.text


def test_bad_dataset_name_is_clear(folder):
    with pytest.raises(ValueError, match="no_such_dataset_xyz"):
        evaluate_encoder(folder, datasets=["no_such_dataset_xyz"])
    with pytest.raises(ValueError, match="'./no/such/folder': no such file or folder"):   # the resolver's message
        evaluate_encoder(folder, datasets=["./no/such/folder"])
    assert not (folder / "eval_results.json").exists()


def test_cli_eval_prints_json(folder, capsys):
    from mimcl_hub.cli import main

    assert main(["eval", str(folder), "--dataset", "digits", "--no_linear", "--max_train", "200",
                 "--max_test", "100"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert "linear_top1" not in printed["results"]["digits"] and printed["card_path"]
    assert main(["eval", str(folder), "--dataset", "./missing_dir"]) == 2


# ---------------------------------------------------------------------------------------- linear probe


def test_linear_probe_separable_synthetic():
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(4, 16, generator=g) * 5
    y = torch.arange(200) % 4
    x = centers[y] + 0.3 * torch.randn(200, 16, generator=g)
    acc = linear_probe(x[:120], y[:120], x[120:], y[120:], num_classes=4)
    assert acc == 1.0
    assert linear_probe(x[:120], y[:120], x[120:], y[120:], num_classes=4) == acc            # deterministic
    assert linear_probe(x[:120], y[:120], x[120:], y[120:], optimizer="adam", epochs=50, lr=0.05,
                        batch_size=32) == 1.0


def test_linear_probe_beats_chance_on_digits_features():
    from torch.utils.data import DataLoader

    from mimcl_hub.eval import extract_features, load_knn_datasets

    torch.manual_seed(0)
    model = create_backbone("vit_tiny_patch4_32", img_size=16).eval()
    train, test = load_knn_datasets("digits", img_size=16, max_train=300, max_test=200)
    tr_f, tr_y = extract_features(model, DataLoader(train, batch_size=128))
    te_f, te_y = extract_features(model, DataLoader(test, batch_size=128))
    acc = linear_probe(tr_f, tr_y, te_f, te_y, num_classes=10)
    assert acc > 0.3                                          # chance is 0.1 (random-init features)


def test_linear_probe_errors():
    x = torch.randn(10, 4)
    with pytest.raises(ValueError, match="dimension"):
        linear_probe(x, torch.zeros(10), torch.randn(5, 3), torch.zeros(5))
    with pytest.raises(ValueError, match="train_labels has 9 entries"):
        linear_probe(x, torch.zeros(9), x, torch.zeros(10))
    with pytest.raises(ValueError, match="num_classes"):
        linear_probe(x, torch.full((10,), 5), x, torch.zeros(10), num_classes=3)


# ---------------------------------------------------------------------------------------- a card that does not parse


def _yaml_error(card: str, marker: Path) -> str:
    return card.replace("library_name: timm", "library_name: [timm", 1)


def _python_tag(card: str, marker: Path) -> str:
    return card.replace("library_name: timm", f"library_name: !!python/object/apply:os.system ['touch {marker}']", 1)


def _nan_in_block(card: str, marker: Path) -> str:
    return card.replace("  objective: simclr\n", "  objective: simclr\n  epochs: .nan\n", 1)


@pytest.mark.parametrize("breaker, reason", [
    (_yaml_error, "the model card could not be parsed: while parsing a flow sequence"),
    (_python_tag, "the model card could not be parsed: could not determine a constructor for the tag"),
    (_nan_in_block, "the model card's mimcl_hub: block is invalid: epochs must be a number"),
])
def test_a_card_that_does_not_parse_updates_neither_file(folder, tmp_path, breaker, reason):
    """issue 19 item 11: a model card whose YAML does not parse (or carries a ``!!python/object`` tag) crashed
    ``mimcl eval`` with a YAML traceback after ``eval_results.json`` was written, so the two disagreed. The card is
    parsed first: a clear ValueError naming README.md, and neither file is written (the tag is never run)."""
    from mimcl_hub.cli import main

    marker = tmp_path / "pwned"
    (folder / "eval_results.json").write_text('{"model": "earlier", "results": {}}\n')
    card = folder / "README.md"
    card.write_text(breaker(card.read_text(), marker))
    before = {name: (folder / name).read_bytes() for name in ("README.md", "eval_results.json")}
    with pytest.raises(ValueError, match=r"README\.md: " + re.escape(reason)) as error:
        evaluate_encoder(folder, linear=False, **SMALL)
    assert "neither eval_results.json nor README.md was written" in str(error.value)
    assert main(["eval", str(folder), "--no_linear", "--max_train", "50", "--max_test", "50"]) == 2
    assert {name: (folder / name).read_bytes() for name in before} == before
    assert not marker.exists()
    assert not [n for n in os.listdir(folder) if n.startswith(".tmp")]
