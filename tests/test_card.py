"""The typed run card: a rendered card parses back into the same RunCard (everything its YAML holds), fields are
checked and named, objective titles come from the objective registry, and the card template and the leaderboard
Space are package data read with importlib.resources."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch

import mimcl_hub  # noqa: F401  (registers the small-image variants)
from mimcl_hub.hub import EvalEntry, RunCard, save_encoder
from mimcl_hub.hub.card import BODY_FIELDS, META_FIELDS, METRICS, load_model_card, objective_title
from mimcl_hub.hub.save import encoder_config
from mimcl_hub.models import create_backbone
from mimcl_hub.objectives import OBJECTIVES

FULL = RunCard(
    model_id="tester/vit-vicreg", hub_model_id="tester/vit-vicreg-hub", backbone="vit_tiny_patch4_32",
    objective="vicreg", mi_objective="byol", twin_mode="random", mi_weight=0.25, released_weights="shared", epochs=1.5,
    steps=12, batch_size=8,
    seed=7, license="mit", datasets=["uoft-cs/cifar10", "org/clips"], tags=["demo", "tiny"],
    train_data="two procedural scenes", mining={"clips": 2, "option grid": 6},
    training_config={"learning_rate": 0.01, "max_steps": 12}, train_metrics={"train_loss": 2.5, "global_step": 12},
    results=[EvalEntry("digits", "knn_top1", 0.4321, "scikit-learn digits", config="k=20,T=0.07"),
             EvalEntry("digits", "knn_top5", 0.9, "scikit-learn digits", config="k=20,T=0.07"),
             EvalEntry("digits", "linear_top1", 0.5, "scikit-learn digits", config="lbfgs,epochs=100,wd=0.0001"),
             EvalEntry("uoft-cs/cifar10", "f1", 0.125, split="validation")],
)


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    return create_backbone("vit_tiny_patch4_32", img_size=16).eval()


@pytest.fixture(scope="module")
def full_folder(vit, tmp_path_factory):
    folder = tmp_path_factory.mktemp("card") / "enc"
    save_encoder(vit, folder, FULL)
    return folder


def test_a_rendered_card_parses_back_into_the_same_run_card(full_folder, vit):
    from huggingface_hub import ModelCard

    rendered = FULL.completed(encoder_config(vit))
    assert rendered.architecture == "vit_tiny_patch16_224" and rendered.img_size == 16
    expected = rendered.yaml_view()
    for source in (full_folder, full_folder / "README.md", str(full_folder / "README.md"),
                   ModelCard.load(full_folder / "README.md")):
        assert RunCard.from_model_card(source) == expected
    assert [f for f in BODY_FIELDS if getattr(expected, f) != getattr(FULL, f)] == list(BODY_FIELDS)
    assert all(getattr(expected, f) == getattr(rendered, f) for f in META_FIELDS)
    # the body shows what the YAML does not hold
    text = (full_folder / "README.md").read_text()
    assert "two procedural scenes" in text and "| option grid | 6 |" in text and '"learning_rate": 0.01' in text
    assert "hf-hub:tester/vit-vicreg-hub" in text
    assert "| scikit-learn digits | Linear probe top-1 accuracy | 0.5000 | lbfgs,epochs=100,wd=0.0001 |" in text
    # saving the parsed card again gives the same YAML: the round trip is a fixed point
    again = full_folder.parent / "again"
    save_encoder(vit, again, RunCard.from_model_card(full_folder))
    assert load_model_card(again).data.to_dict() == load_model_card(full_folder).data.to_dict()


def test_the_yaml_keeps_its_layout(full_folder):
    data = load_model_card(full_folder).data.to_dict()
    assert data["tags"] == ["mimcl_hub", "self-supervised", "infoaug", "vicreg", "byol", "twin-mode-random",
                            "vit_tiny_patch4_32", "timm", "demo", "tiny"]
    assert list(data["mimcl_hub"]) == list(META_FIELDS)
    assert data["mimcl_hub"]["backbone"] == "vit_tiny_patch4_32" and data["mimcl_hub"]["mi_weight"] == 0.25
    index = data["model-index"][0]
    assert index["name"] == "tester/vit-vicreg" and data["library_name"] == "timm"
    by_name = {m["name"]: m for r in index["results"] for m in r["metrics"]}
    assert by_name["kNN top-1 accuracy"] == {"type": "accuracy", "value": 0.4321, "name": "kNN top-1 accuracy",
                                             "config": "k=20,T=0.07"}
    assert by_name["f1"]["type"] == "f1"


def test_eval_entries_round_trip_through_eval_results():
    for metric in (*METRICS, "f1", "mean_iou"):
        entry = EvalEntry("org/data", metric, 0.75, "Org data", split="validation", config="x=1")
        assert EvalEntry.from_eval_result(entry.to_eval_result()) == entry
    assert EvalEntry("digits", "knn_top1", 1).dataset_name == "digits" and EvalEntry("d", "f1", 1).title == "f1"
    assert EvalEntry("d", "knn_top5", 1).title == "kNN top-5 accuracy"


def test_completed_fills_what_the_run_left_unset(vit):
    card = RunCard(hub_model_id="org/enc", twin_mode="mi", mi_weight=0.5,
                   training_config={"model_name": "vit_tiny_patch4_32", "seed": 3, "per_device_train_batch_size": 4,
                                    "max_steps_resolved": 9},
                   train_metrics={"epoch": float("nan"), "global_step": 8})
    done = card.completed(encoder_config(vit))
    assert (done.model_id, done.backbone, done.architecture, done.img_size) == (
        "org/enc", "vit_tiny_patch4_32", "vit_tiny_patch16_224", 16)
    assert (done.seed, done.batch_size, done.steps, done.epochs) == (3, 4, 8, None)     # NaN epoch: left unset
    assert RunCard().completed(encoder_config(vit)).backbone == "vit_tiny_patch16_224"
    assert RunCard().completed(encoder_config(vit)).model_id == "mimcl_hub encoder"


def test_one_spelling_of_each_fact():
    card = RunCard(objective="byol", twin_mode="none", mi_weight=0.5, tags=["byol", "mimcl_hub", "x", "x"])
    assert card.mi_weight == 0.0 and card.mi_objective == "byol" and not card.uses_mi_branch
    assert card.tags == ["x"] and card.all_tags == ["mimcl_hub", "self-supervised", "infoaug", "byol",
                                                    "twin-mode-none", "timm", "x"]
    mi = RunCard(objective="byol", mi_objective="simclr", twin_mode="mi", mi_weight=0.5)
    assert mi.uses_mi_branch and mi.all_tags[4:] == ["simclr", "twin-mode-mi", "timm"]
    merged = FULL.merge_results([EvalEntry("digits", "knn_top1", 0.6), EvalEntry("new", "knn_top1", 0.1)])
    assert [(e.dataset, e.metric, e.value) for e in merged.results][:2] == [("digits", "knn_top1", 0.6),
                                                                             ("digits", "knn_top5", 0.9)]
    assert merged.results[-1].dataset == "new" and len(merged.results) == len(FULL.results) + 1
    assert FULL.results[0].value == 0.4321                                      # merge_results returns a copy


@pytest.mark.parametrize("fields, message", [
    ({"epochs": float("nan")}, "epochs must be a number >= 0 (or unset), got nan"),
    ({"mi_weight": -1.0}, "mi_weight must be a number >= 0"),
    ({"steps": "5"}, "steps must be an int"),
    ({"seed": 1.5}, "seed must be an int"),
    ({"twin_mode": 3}, "twin_mode must be a string"),
    ({"tags": ["a", 1]}, "tags must be a list of strings"),
    ({"mining": [1]}, "mining must be a mapping"),
    ({"results": [EvalEntry("d", "f1", 1), EvalEntry("d", "f1", 2)]}, "more than one entry for ('d', 'test', 'f1')"),
])
def test_bad_fields_are_named(fields, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        RunCard(**fields)


def test_bad_entries_and_unknown_fields_are_named():
    with pytest.raises(ValueError, match=r"metric 'digits/knn_top1' must be a finite number, got nan"):
        EvalEntry("digits", "knn_top1", float("nan"))
    with pytest.raises(ValueError, match="dataset must be a non-empty string"):
        EvalEntry("", "knn_top1", 0.5)
    with pytest.raises(ValueError, match=r"unknown run card field\(s\) \['knn'\]"):
        RunCard.from_dict({"objective": "simclr", "knn": {"top1": 0.5}})
    assert RunCard.from_dict({"objective": "moco", "results": [{"dataset": "d", "metric": "f1", "value": 1}]}) == \
        RunCard(objective="moco", results=[EvalEntry("d", "f1", 1.0)])


def test_a_card_from_elsewhere_and_bad_blocks(tmp_path, full_folder):
    text = (full_folder / "README.md").read_text()
    start, end = text.index("mimcl_hub:\n"), text.index("model-index:")
    plain = tmp_path / "plain.md"
    plain.write_text(text[:start] + text[end:])
    card = RunCard.from_model_card(plain, config={"architecture": "resnet50"})
    assert (card.backbone, card.architecture, card.objective) == ("resnet50", "resnet50", "vicreg")   # from tags
    assert card.twin_mode is None and card.mi_weight is None and card.epochs is None
    assert RunCard.from_model_card(plain).backbone is None

    bad = tmp_path / "bad.md"
    bad.write_text(text.replace("  epochs: 1.5\n", "  epochs: .nan\n", 1))
    with pytest.raises(ValueError, match=r"block is invalid: epochs must be a number >= 0 \(or unset\), got nan"):
        RunCard.from_model_card(bad)
    bad.write_text(text.replace("  steps: 12\n", "  steps: twelve\n", 1))
    with pytest.raises(ValueError, match=r"steps must be an int.*'twelve'"):
        RunCard.from_model_card(bad)
    bad.write_text(text.replace("value: 0.4321", "value: n/a", 1))
    with pytest.raises(ValueError, match=r"model-index metric 'digits/knn_top1' has value 'n/a', not a finite number"):
        RunCard.from_model_card(bad)


def test_yaml_object_tags_are_refused_never_run(tmp_path, full_folder):
    marker = tmp_path / "pwned"
    card = tmp_path / "README.md"
    text = (full_folder / "README.md").read_text()
    card.write_text(text.replace("library_name: timm", f"library_name: !!python/object/apply:os.system "
                                                       f"['touch {marker}']", 1))
    with pytest.raises(ValueError, match="the model card could not be parsed: could not determine a constructor"):
        RunCard.from_model_card(tmp_path)
    assert not marker.exists()
    with pytest.raises(FileNotFoundError, match="no model card"):
        load_model_card(tmp_path / "missing")


def test_objective_titles_come_from_the_registry(vit, tmp_path):
    for name, cls in OBJECTIVES.items():
        assert "arXiv" in cls.paper and objective_title(name) == cls.paper
    assert objective_title("my_objective") == "my_objective"
    save_encoder(vit, tmp_path / "enc", RunCard(objective="barlow_twins"))
    assert f"trained with **{OBJECTIVES['barlow_twins'].paper}**" in (tmp_path / "enc" / "README.md").read_text()


def test_templates_are_package_data():
    from importlib import resources

    from huggingface_hub import SpaceCard

    from mimcl_hub.hub import leaderboard, save

    package = Path(str(resources.files("mimcl_hub.hub")))
    assert (package / save.CARD_TEMPLATE).is_file() and save.card_template() == (
        package / "templates" / "model_card.md").read_text(encoding="utf-8")
    assert "{{ card_data }}" in save.card_template()
    page = leaderboard.page_template()
    assert page == (package / "space" / "index.html").read_text(encoding="utf-8") and "/*LEADERBOARD_DATA*/" in page
    assert SpaceCard(leaderboard.space_readme()).data.sdk == "static"
    for module in package.glob("*.py"):                          # nothing is looked up beside the package
        assert "parents[2]" not in module.read_text(), module.name
    pyproject = (package.parents[1] / "pyproject.toml").read_text()
    assert '"mimcl_hub.hub" = ["templates/*.md", "space/*.html", "space/*.md"]' in pyproject


# ------------------------------------------------------------------------------- metadata the Hub reads correctly
def test_training_datasets_never_list_the_evaluation_set(tmp_path):
    from mimcl_hub.train import TrainConfig
    from mimcl_hub.train.encoder_folder import training_datasets

    local = tmp_path / "clips"
    local.mkdir()
    assert training_datasets(TrainConfig(video_dataset="org/clips", eval_dataset="uoft-cs/cifar10",
                                         output_dir=str(tmp_path / "a"))) == ["org/clips"]
    assert training_datasets(TrainConfig(train_dataset="org/images", twin_dataset="org/twins",
                                         eval_dataset="uoft-cs/cifar10", output_dir=str(tmp_path / "b"))) == \
        ["org/images", "org/twins"]
    assert training_datasets(TrainConfig(video_dataset=str(local), eval_dataset="uoft-cs/cifar10",
                                         output_dir=str(tmp_path / "c"))) == []


def test_evaluation_datasets_are_named_as_the_model_index_expects(tmp_path):
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    from mimcl_hub.eval.evaluate import eval_entries
    from mimcl_hub.hub.card import dataset_column, model_index_dataset

    folder = tmp_path / "my-photos"
    folder.mkdir()
    assert model_index_dataset("uoft-cs/cifar10") == "uoft-cs/cifar10"           # a Hub id as is
    assert model_index_dataset("digits") == "sklearn:digits"                     # built in: SOURCE:NAME
    assert model_index_dataset(str(folder)) == "local:my-photos"                 # a folder: no local path on a card
    assert model_index_dataset(str(folder) + "/") == "local:my-photos"
    assert model_index_dataset("sklearn:digits") == "sklearn:digits"             # already a model-index name
    validate_repo_id("uoft-cs/cifar10")
    for local in ("sklearn:digits", "local:my-photos"):                          # never mistaken for a Hub dataset
        with pytest.raises(HFValidationError):
            validate_repo_id(local)
    result = {"knn_top1": 0.5, "knn_k": 20, "knn_t": 0.07}
    assert [(e.dataset, e.dataset_name) for e in eval_entries("digits", result)] == [("sklearn:digits",
                                                                                      "scikit-learn digits")]
    assert [(e.dataset, e.dataset_name) for e in eval_entries(str(folder), result)] == [("local:my-photos",
                                                                                         "my-photos")]
    assert [(e.dataset, e.dataset_name) for e in eval_entries("uoft-cs/cifar10", result)] == [
        ("uoft-cs/cifar10", "uoft-cs/cifar10")]
    # a card written before this naming says `digits`: same leaderboard column and merge key as `sklearn:digits`
    old, new = EvalEntry("digits", "knn_top1", 0.4), EvalEntry("sklearn:digits", "knn_top1", 0.6)
    assert dataset_column("sklearn:digits") == dataset_column("digits") == "digits"
    assert old.column == new.column == "digits/knn_top1" and old.key == new.key
    merged = RunCard(results=[old]).merge_results([new])
    assert [(e.dataset, e.value) for e in merged.results] == [("sklearn:digits", 0.6)]
    assert EvalEntry("local:my-photos", "f1", 1).column == "local:my-photos/f1"


def test_card_names_the_variant_the_architecture_and_the_released_weights(vit, tmp_path):
    from huggingface_hub import ModelCard, ModelCardData
    from huggingface_hub.repocard_data import eval_results_to_model_index, model_index_to_eval_results

    from mimcl_hub.objectives import RELEASED_WEIGHTS

    card = dataclasses.replace(FULL, objective="dino", mi_objective="dino", released_weights="teacher")
    save_encoder(vit, tmp_path / "enc", card)
    parsed = ModelCard.load(tmp_path / "enc" / "README.md")
    text = parsed.text
    assert "A self-supervised **vit_tiny_patch4_32** image encoder" in text
    assert "**vit_tiny_patch16_224** image encoder" not in text
    assert ('**timm architecture:** `vit_tiny_patch16_224`, `model_args` '
            '`{"global_pool": "token", "img_size": 16, "in_chans": 3, "patch_size": 4}`') in text
    assert f"**Released weights:** {RELEASED_WEIGHTS['teacher']}." in text and "teacher" in RELEASED_WEIGHTS["teacher"]
    data = parsed.data.to_dict()
    assert data["mimcl_hub"]["released_weights"] == "teacher"
    assert {"dino", "twin-mode-random", "vit_tiny_patch4_32", "timm"} <= set(data["tags"])
    assert ModelCardData(**data).to_dict() == data
    name, results = model_index_to_eval_results(data["model-index"])
    assert eval_results_to_model_index(name, results) == data["model-index"]
    assert RunCard.from_model_card(parsed).released_weights == "teacher"
    # the How-to-use blocks name the pushed repo; a local folder gets a placeholder path
    assert '"tester/vit-vicreg-hub"' in text and "hf-hub:tester/vit-vicreg-hub" in text
    save_encoder(vit, tmp_path / "local", RunCard(objective="simclr"))
    local = (tmp_path / "local" / "README.md").read_text()
    assert '"path/to/encoder"' in local and "local-dir:path/to/encoder" in local


def test_cifar_resnet_cards_do_not_promise_plain_timm(tmp_path):
    from huggingface_hub import ModelCard

    model = create_backbone("resnet18_cifar", img_size=16).eval()
    save_encoder(model, tmp_path / "enc", RunCard(objective="byol", backbone="resnet18_cifar", hub_model_id="o/r"))
    card = ModelCard.load(tmp_path / "enc" / "README.md")
    assert card.data.library_name == "mimcl_hub" and "timm" in card.data.tags and "resnet18_cifar" in card.data.tags
    how_to_use = card.text.split("## How to use", 1)[1]
    assert how_to_use.index("pip install mimcl-hub") < how_to_use.index("```python")


def test_an_architecture_timm_does_not_know_names_the_fix(vit, tmp_path):
    from mimcl_hub import MIMCLEncoder
    from mimcl_hub.models.backbones import unknown_architecture_message

    folder = tmp_path / "enc"
    save_encoder(vit, folder, RunCard(objective="simclr"))
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(dict(config, architecture="resnet34_cifar")))
    with pytest.raises(ValueError, match=r"unknown timm architecture 'resnet34_cifar'.*pip install -U mimcl-hub.*"
                                         r"`import mimcl_hub` before loading"):
        MIMCLEncoder.from_pretrained(folder)
    assert "registered by mimcl_hub" in unknown_architecture_message("resnet18_cifar")
    assert "`import mimcl_hub`" in unknown_architecture_message("resnet18_cifar")
