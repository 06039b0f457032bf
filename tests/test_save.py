"""Encoder folders: timm config.json without num_classes in model_args, safetensors, model card with
model-index; load with timm (local-dir) and transformers AutoModel offline; atomic replacement."""

import dataclasses
import json
import os

import pytest
import torch

import mimcl_hub  # noqa: F401  (registers the small-image variants)
from mimcl_hub.hub import EvalEntry, RunCard, save_encoder
from mimcl_hub.models import create_backbone
from mimcl_hub.objectives import build_infoaug

CARD = RunCard(objective="byol", mi_objective="simclr", mi_weight=0.5, twin_mode="mi", license="apache-2.0",
               datasets=["uoft-cs/cifar10"], model_id="tester/vit-byol",
               results=[EvalEntry("digits", "knn_top1", 0.4321, "scikit-learn digits", config="k=20,T=0.07"),
                        EvalEntry("digits", "knn_top5", 0.9, "scikit-learn digits", config="k=20,T=0.07")],
               train_metrics={"train_loss": 1.25, "global_step": 6}, mining={"k": 5, "grid": 8},
               training_config={"learning_rate": 0.001, "max_steps": 6})


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    model = create_backbone("vit_tiny_patch4_32", img_size=16)
    with torch.no_grad():                    # not the init: make sure the weights really travel
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return model.eval()


@pytest.fixture(scope="module")
def vit_folder(vit, tmp_path_factory):
    objective = build_infoaug("byol", "simclr", feature_dim=vit.num_features, mi_weight=0.5)
    objective.build_targets(vit)
    folder = tmp_path_factory.mktemp("enc") / "encoder"
    save_encoder(vit, folder, CARD, heads=objective, heads_config=objective.config)
    return folder


def test_folder_layout_and_config(vit_folder, vit):
    names = sorted(os.listdir(vit_folder))
    assert names == ["README.md", "config.json", "heads", "model.safetensors", "training_metrics.json"]
    config = json.loads((vit_folder / "config.json").read_text())
    assert config["architecture"] == "vit_tiny_patch16_224"          # standard timm name: no mimcl_hub needed
    assert config["num_classes"] == 0 and config["num_features"] == 192
    assert "num_classes" not in config["model_args"]
    assert config["model_args"]["img_size"] == 16 and config["model_args"]["patch_size"] == 4
    assert config["pretrained_cfg"]["input_size"] == [3, 16, 16]
    from safetensors.torch import load_file

    weights = load_file(vit_folder / "model.safetensors")
    assert set(weights) == set(vit.state_dict())                      # backbone only
    heads = load_file(vit_folder / "heads" / "model.safetensors")
    assert heads and not any("target_backbone" in k for k in heads)   # no backbone copies in heads/
    assert json.loads((vit_folder / "heads" / "config.json").read_text())["view"] == "byol"
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(vit_folder).st_mode & 0o777 == 0o777 & ~umask       # not mkdtemp's owner-only mode
    assert os.stat(vit_folder / "model.safetensors").st_mode & 0o777 == 0o666 & ~umask


def test_loads_in_timm(vit_folder, vit):
    import timm

    loaded = timm.create_model(f"local-dir:{vit_folder}", pretrained=True).eval()
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), vit(x), atol=1e-5, rtol=0)


def test_loads_in_transformers_offline(vit_folder, vit, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(vit_folder)).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        out = model(pixel_values=x)
        torch.testing.assert_close(out.pooler_output, vit(x), atol=1e-5, rtol=0)


def test_model_card_metadata(vit_folder):
    from huggingface_hub import ModelCard

    card = ModelCard.load(vit_folder / "README.md")
    data = card.data
    assert data.library_name == "timm" and data.pipeline_tag == "image-feature-extraction"
    assert data.license == "apache-2.0" and data.datasets == ["uoft-cs/cifar10"]
    assert data.tags[:4] == ["mimcl_hub", "self-supervised", "infoaug", "byol"]
    top1 = [r for r in data.eval_results if r.metric_type == "accuracy"]
    assert len(top1) == 1 and top1[0].metric_value == pytest.approx(0.4321)
    assert top1[0].dataset_type == "digits" and top1[0].task_type == "image-classification"
    text = card.text
    assert "arXiv:2511.00028" in text and "λ = 0.5" in text and "| grid | 8 |" in text
    assert "Intended uses" in text and "Limitations" in text and '"max_steps": 6' in text


def test_cifar_resnet_card_says_import(tmp_path):
    import timm

    model = create_backbone("resnet18_cifar").eval()
    folder = save_encoder(model, tmp_path / "enc", {"objective": "simclr", "twin_mode": "none", "mi_weight": 0.0})
    assert json.loads((tmp_path / "enc" / "config.json").read_text())["architecture"] == "resnet18_cifar"
    assert "import mimcl_hub" in (tmp_path / "enc" / "README.md").read_text()
    loaded = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()   # mimcl_hub is imported here
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), atol=1e-5, rtol=0)
    from huggingface_hub import ModelCard

    assert ModelCard.load(tmp_path / "enc" / "README.md").data.eval_results is None   # no kNN, no model-index


def test_replacement_is_atomic(tmp_path, vit, monkeypatch):
    folder = tmp_path / "enc"
    save_encoder(vit, folder, dataclasses.replace(CARD, model_id="first"))
    before = sorted(os.listdir(folder))

    from mimcl_hub.hub import save as save_module

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(save_module, "build_card", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        save_encoder(vit, folder, dataclasses.replace(CARD, model_id="second"))
    assert sorted(os.listdir(folder)) == before                       # old folder intact
    assert "first" in (folder / "README.md").read_text()
    assert sorted(os.listdir(tmp_path)) == ["enc"]                     # no temporary leftovers
    monkeypatch.undo()
    save_encoder(vit, folder, dataclasses.replace(CARD, model_id="third"))
    assert "third" in (folder / "README.md").read_text()
    assert sorted(os.listdir(tmp_path)) == ["enc"]


def test_rejects_wrapped_or_headed_models(tmp_path):
    headed = create_backbone("vit_tiny_patch4_32", img_size=16)
    headed.reset_classifier(10)
    with pytest.raises(ValueError, match="headless"):
        save_encoder(headed, tmp_path / "a")

    class Wrapper(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.module = m
            self.num_classes = 0

    with pytest.raises(ValueError, match="unwrap"):
        save_encoder(Wrapper(create_backbone("vit_tiny_patch4_32", img_size=16)), tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_the_same_weights_give_the_same_bytes(tmp_path, vit):
    """A re-save of unchanged weights writes byte-identical files (so pushing it again commits nothing)."""
    for _ in range(5):     # with two metadata keys, each pair of saves had a 1/2 chance of differing
        first = save_encoder(vit, tmp_path / "a", CARD)
        second = save_encoder(vit, tmp_path / "b", CARD)
        for name in ("model.safetensors", "config.json", "README.md"):
            assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert first != second
