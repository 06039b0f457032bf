"""Backbone factory, registered small-image variants, config export and the saved-folder round trip."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import timm
import torch
from safetensors.torch import save_file
from timm.models._pretrained import filter_pretrained_cfg
from torch import nn

import mimcl_hub.models as M
from mimcl_hub.models import backbones as B

NATIVE = {"resnet18_cifar": 32, "resnet50_cifar": 32, "vit_tiny_patch4_32": 32, "vit_small_patch4_32": 32,
          "vit_tiny_patch8_64": 64}
DIMS = {"resnet18_cifar": 512, "resnet50_cifar": 2048, "vit_tiny_patch4_32": 192, "vit_small_patch4_32": 384,
        "vit_tiny_patch8_64": 192}


def _forward(model, size, batch=2):
    torch.manual_seed(0)
    with torch.no_grad():
        return model.eval()(torch.randn(batch, 3, size, size))


def test_registered_names():
    assert set(M.SMALL_IMAGE_MODELS) == set(NATIVE)
    for name in M.SMALL_IMAGE_MODELS:
        assert timm.is_model(name)
        assert name in timm.list_models("*")
        assert timm.models.model_entrypoint(name).__doc__.strip()


@pytest.mark.parametrize("name", sorted(NATIVE))
def test_variant_builds_with_timm_create_model(name):
    model = timm.create_model(name)  # pretrained_cfg num_classes=0 -> headless by default
    assert model.num_classes == 0 and model.num_features == DIMS[name]
    cfg = model.pretrained_cfg
    assert cfg["architecture"] == name
    assert tuple(cfg["input_size"]) == (3, NATIVE[name], NATIVE[name])
    for key in ("mean", "std", "interpolation", "crop_pct", "first_conv", "classifier"):
        assert cfg.get(key) is not None, key
    assert not (cfg.get("url") or cfg.get("hf_hub_id") or cfg.get("file"))  # no weights -> nothing to download
    assert _forward(model, NATIVE[name]).shape == (2, DIMS[name])


@pytest.mark.parametrize("name", sorted(NATIVE))
def test_variant_builds_with_create_backbone(name):
    model = M.create_backbone(name, drop_path_rate=0.1)
    out = _forward(model, NATIVE[name])
    assert out.shape == (2, model.num_features) == (2, DIMS[name])
    assert torch.isfinite(out).all()


def test_cifar_stem():
    model = M.create_backbone("resnet18_cifar").eval()
    assert isinstance(model.conv1, nn.Conv2d)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1) and model.conv1.padding == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)
    feats = {}
    model.layer1.register_forward_hook(lambda m, i, o: feats.setdefault("layer1", o))
    _forward(model, 32)
    assert feats["layer1"].shape == (2, 64, 32, 32)
    assert [f["reduction"] for f in model.feature_info] == [1, 1, 2, 4, 8]
    # features_only goes through timm's wrapper with the corrected reductions
    fmap = timm.create_model("resnet18_cifar", features_only=True, out_indices=(1, 4))(torch.randn(1, 3, 32, 32))
    assert [tuple(f.shape[-2:]) for f in fmap] == [(32, 32), (4, 4)]
    # the standard stem down-samples by 4 before layer1
    std = timm.create_model("resnet18", num_classes=0).eval()
    std.layer1.register_forward_hook(lambda m, i, o: feats.setdefault("std", o))
    _forward(std, 32)
    assert feats["std"].shape[-2:] == (8, 8)


@pytest.mark.parametrize("cifar,standard", [("resnet18_cifar", "resnet18"), ("resnet50_cifar", "resnet50")])
def test_cifar_state_dict_keys_match_timm(cifar, standard):
    ours = timm.create_model(cifar).state_dict()
    theirs = timm.create_model(standard, num_classes=0).state_dict()
    assert list(ours) == list(theirs)
    differ = [k for k in ours if ours[k].shape != theirs[k].shape]
    assert differ == ["conv1.weight"] and ours["conv1.weight"].shape[-2:] == (3, 3)
    # everything but the stem conv is interchangeable with timm's own resnet
    missing, unexpected = timm.create_model(standard, num_classes=0).load_state_dict(
        {k: v for k, v in ours.items() if k != "conv1.weight"}, strict=False)
    assert missing == ["conv1.weight"] and unexpected == []


def test_cifar_rejects_stem_arguments():
    with pytest.raises(ValueError, match="stem"):
        timm.create_model("resnet18_cifar", stem_type="deep")
    with pytest.raises(ValueError, match="output_stride"):
        M.create_backbone("resnet18_cifar", output_stride=8)


@pytest.mark.parametrize("name,kwargs,size,dim", [
    ("resnet18", {}, 64, 512),
    ("vit_tiny_patch16_224", dict(img_size=32, patch_size=4), 32, 192),
    ("vit_tiny_patch16_224", dict(img_size=32), 32, 192),
    ("test_vit", dict(img_size=32), 32, None),
    ("test_resnet", {}, 32, None),
])
def test_standard_timm_names(name, kwargs, size, dim):
    model = M.create_backbone(name, **kwargs)
    assert model.num_classes == 0
    out = _forward(model, size)
    assert out.shape == (2, model.num_features)
    if dim is not None:
        assert model.num_features == dim


def test_vit_variant_is_standard_architecture_plus_model_args():
    variant = M.create_backbone("vit_tiny_patch4_32")
    cfg = M.timm_config_for("vit_tiny_patch4_32")
    assert cfg == {"architecture": "vit_tiny_patch16_224", "model_args": {"img_size": 32, "patch_size": 4}}
    standard = timm.create_model(cfg["architecture"], num_classes=0, **cfg["model_args"])
    assert type(standard) is type(variant)
    standard.load_state_dict(variant.state_dict(), strict=True)
    assert torch.equal(_forward(variant, 32), _forward(standard, 32))


def test_timm_config_for():
    assert M.timm_config_for("vit_small_patch4_32")["architecture"] == "vit_small_patch16_224"
    assert M.timm_config_for("vit_tiny_patch8_64")["model_args"] == {"img_size": 64, "patch_size": 8}
    assert M.timm_config_for("resnet18") == {"architecture": "resnet18", "model_args": {}}
    assert M.timm_config_for("resnet18.a1_in1k")["architecture"] == "resnet18"
    for name in M.REQUIRES_MIMCL_HUB:  # no standard equivalent: keeps its registered name
        assert M.timm_config_for(name)["architecture"] == name
    assert set(M.REQUIRES_MIMCL_HUB) == {"resnet18_cifar", "resnet50_cifar"}
    from_model = M.timm_config_for(M.create_backbone("vit_tiny_patch8_64", in_chans=1, drop_path_rate=0.1))
    assert from_model["architecture"] == "vit_tiny_patch16_224"
    assert from_model["model_args"]["in_chans"] == 1 and from_model["model_args"]["img_size"] == 64
    for name in NATIVE:
        args = M.timm_config_for(M.create_backbone(name))["model_args"]
        assert "num_classes" not in args and not any("drop" in k for k in args)
        json.dumps(args)
    with pytest.raises(ValueError, match="resnt18"):
        M.timm_config_for("resnt18")
    with pytest.raises(ValueError, match="not a timm model"):
        M.timm_config_for(nn.Linear(2, 2))


def test_unknown_name_lists_close_matches():
    with pytest.raises(ValueError, match=r"Unknown backbone 'resnt18'.*resnet18"):
        M.create_backbone("resnt18")
    with pytest.raises(ValueError, match="vit_tiny_patch4_32"):
        M.create_backbone("vit_tiny_patch4_23")
    with pytest.raises(ValueError, match="no config.json"):
        M.create_backbone("local-dir:/nonexistent/folder")


@pytest.mark.parametrize("img_size", [(32, 48), (32, 32, 3), 0, -32, 32.0, "32", True])
def test_bad_img_size(img_size):
    with pytest.raises(ValueError, match=r"img_size.*'resnet18'"):
        M.create_backbone("resnet18", img_size=img_size)


def test_img_size_must_fit_patches():
    with pytest.raises(ValueError, match=r"img_size=30.*'vit_tiny_patch4_32'.*patch size 4x4"):
        M.create_backbone("vit_tiny_patch4_32", img_size=30)
    model = M.create_backbone("vit_tiny_patch4_32", img_size=(48, 48))  # square pair is fine
    assert _forward(model, 48).shape == (2, 192)


def test_refuses_heads_and_unpooled_outputs():
    with pytest.raises(ValueError, match="num_classes"):
        M.create_backbone("resnet18_cifar", num_classes=10)
    with pytest.raises(ValueError, match="pooled"):
        M.create_backbone("resnet18_cifar", global_pool="")


def test_sync_batchnorm_converts_every_bn():
    plain = M.create_backbone("resnet18_cifar")
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    model = M.create_backbone("resnet18_cifar", sync_batchnorm=True)
    assert sum(isinstance(m, nn.SyncBatchNorm) for m in model.modules()) == n_bn == 20
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, nn.SyncBatchNorm)
                   for m in model.modules())
    assert model.pretrained_cfg["architecture"] == "resnet18_cifar"
    assert _forward(model, 32).shape == (2, 512)


def test_data_config():
    cfg = M.backbone_data_config(M.create_backbone("resnet18_cifar"))
    assert cfg["input_size"] == (3, 32, 32) and cfg["interpolation"] == "bilinear"
    assert cfg["mean"] == pytest.approx(B.CIFAR10_MEAN) and cfg["std"] == pytest.approx(B.CIFAR10_STD)
    cfg = M.backbone_data_config(M.create_backbone("vit_tiny_patch8_64"))
    assert cfg["input_size"] == (3, 64, 64) and cfg["interpolation"] == "bicubic"
    assert cfg["mean"] == pytest.approx((0.485, 0.456, 0.406)) and cfg["std"] == pytest.approx((0.229, 0.224, 0.225))
    # the size the backbone was created for, not its checkpoint's
    assert M.backbone_data_config(M.create_backbone("vit_tiny_patch16_224", img_size=32, patch_size=4))[
        "input_size"] == (3, 32, 32)
    assert M.backbone_data_config(M.create_backbone("resnet18", img_size=64))["input_size"] == (3, 64, 64)
    assert M.backbone_data_config(M.create_backbone("test_vit", img_size=32))["input_size"] == (3, 32, 32)
    # straight into timm's transform factory
    tf = timm.data.create_transform(**M.backbone_data_config(M.create_backbone("resnet18_cifar")))
    assert tf is not None
    with pytest.raises(ValueError, match="not a timm model"):
        M.backbone_data_config(nn.Linear(2, 2))


def test_pretrained_is_offline_only(tmp_path):
    for name in ("vit_tiny_patch4_32", "resnet18"):  # no weights at all / weights only on the Hub
        with pytest.raises(M.OfflineWeightsError, match="never downloads"):
            M.create_backbone(name, pretrained=True)
    with pytest.raises(ValueError, match="local Hugging Face cache"):
        M.create_backbone("hf-hub:timm/resnet18.a1_in1k")
    # local weights through timm's own overlay
    src = M.create_backbone("resnet18_cifar")
    path = tmp_path / "w.safetensors"
    save_file(src.state_dict(), str(path))
    loaded = M.create_backbone("resnet18_cifar", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    assert torch.equal(_forward(src, 32), _forward(loaded, 32))
    # a broken weight file: timm's error comes through, wrapped with the offline rule
    with pytest.raises(M.OfflineWeightsError, match="never downloads"):
        M.create_backbone("resnet18_cifar", pretrained=True,
                          pretrained_cfg_overlay=dict(file=str(tmp_path / "missing.safetensors")))


def _save_timm_folder(model, folder):
    """A timm-style folder written by hand: config.json (architecture, num_classes, num_features,
    pretrained_cfg, model_args) + model.safetensors."""
    exported = M.timm_config_for(model)
    pretrained_cfg = filter_pretrained_cfg(dict(model.pretrained_cfg), remove_source=True, remove_null=True)
    for key in ("architecture", "tag"):
        pretrained_cfg.pop(key, None)
    config = dict(architecture=exported["architecture"], num_classes=0, num_features=model.num_features,
                  pretrained_cfg=pretrained_cfg, model_args=exported["model_args"])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    return config


_CLEAN_LOADER = textwrap.dedent("""
    import json, sys, torch, timm
    vit, resnet = sys.argv[1], sys.argv[2]
    x = torch.load(vit + "/x.pt")
    out = {}
    m = timm.create_model("local-dir:" + vit, pretrained=True).eval()
    with torch.no_grad():
        out["timm"] = m(x).tolist()
    from transformers import AutoModel
    hf = AutoModel.from_pretrained(vit).eval()
    out["hf_class"] = type(hf).__name__
    with torch.no_grad():
        out["hf"] = hf(pixel_values=x).pooler_output.tolist()
    for loader in ("timm", "hf"):
        try:
            timm.create_model("local-dir:" + resnet) if loader == "timm" else AutoModel.from_pretrained(resnet)
            out["resnet_" + loader] = "loaded"
        except Exception as e:
            out["resnet_" + loader] = type(e).__name__ + ": " + str(e)
    out["mimcl_hub_imported"] = any(k.split(".")[0] == "mimcl_hub" for k in sys.modules)
    print("RESULT" + json.dumps(out))
""")


def test_local_dir_and_automodel_round_trip(tmp_path):
    vit = M.create_backbone("vit_tiny_patch4_32").eval()
    config = _save_timm_folder(vit, tmp_path / "vit")
    assert config["architecture"] == "vit_tiny_patch16_224" and "num_classes" not in config["model_args"]
    torch.manual_seed(1)
    x = torch.randn(2, 3, 32, 32)
    torch.save(x, tmp_path / "vit" / "x.pt")
    with torch.no_grad():
        expected = vit(x)

    # in this process: timm local-dir
    again = timm.create_model("local-dir:" + str(tmp_path / "vit"), pretrained=True).eval()
    with torch.no_grad():
        assert torch.equal(again(x), expected)
    assert again.num_classes == 0 and M.backbone_data_config(again)["input_size"] == (3, 32, 32)

    # CIFAR ResNet folder: loads here (mimcl_hub imported), not in a clean process
    resnet = M.create_backbone("resnet18_cifar").eval()
    assert _save_timm_folder(resnet, tmp_path / "resnet")["architecture"] == "resnet18_cifar"
    from transformers import AutoModel

    hf_resnet = AutoModel.from_pretrained(str(tmp_path / "resnet")).eval()
    with torch.no_grad():
        assert torch.allclose(hf_resnet(pixel_values=x).pooler_output, resnet(x), atol=1e-6)

    # a fresh interpreter that never imports mimcl_hub, offline
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-c", _CLEAN_LOADER, str(tmp_path / "vit"), str(tmp_path / "resnet")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert result["mimcl_hub_imported"] is False
    assert torch.equal(torch.tensor(result["timm"]), expected)
    assert result["hf_class"] == "TimmWrapperModel"
    assert torch.allclose(torch.tensor(result["hf"]), expected, atol=1e-6)
    assert "Unknown model (resnet18_cifar)" in result["resnet_timm"]
    assert "resnet18_cifar" in result["resnet_hf"]
