"""One saved encoder folder, four loaders, one embedding: timm ``local-dir:``, transformers ``AutoModel`` (in a
process that never imports mimcl_hub), the ``image-feature-extraction`` pipeline and ``MIMCLEncoder``.
Plus: CIFAR ResNet folders, pickle refusal, clear errors for missing files, save_pretrained round trip."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import mimcl_hub
from mimcl_hub.hub import EvalEntry, RunCard, save_encoder
from mimcl_hub.hub.encoder import MIMCLEncoder
from mimcl_hub.models import create_backbone


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    model = create_backbone("vit_tiny_patch4_32")
    with torch.no_grad():                    # not the init: the weights must really travel
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model.eval()


@pytest.fixture(scope="module")
def vit_folder(vit, tmp_path_factory):
    folder = tmp_path_factory.mktemp("enc") / "vit"
    save_encoder(vit, folder, RunCard(objective="simclr", model_id="tester/vit",
                                      results=[EvalEntry("digits", "knn_top1", 0.5)]))
    return folder


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, size=(s, s + 3, 3), dtype=np.uint8) for s in (32, 40, 24)]


def test_mimcl_encoder_matches_backbone(vit_folder, vit):
    enc = mimcl_hub.MIMCLEncoder.from_pretrained(vit_folder)
    assert isinstance(enc, MIMCLEncoder) and not enc.training
    assert enc.config["architecture"] == "vit_tiny_patch16_224" and enc.num_features == 192
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        out = enc(x)
        assert out.shape == (3, 192)
        torch.testing.assert_close(out, vit(x), atol=1e-5, rtol=0)
    assert enc.card is not None and enc.card.data.library_name == "timm"


def test_four_loaders_same_embeddings(vit_folder, vit, images, tmp_path):
    """timm local-dir, MIMCLEncoder.embed, AutoModel pooler_output and the pipeline agree to 1e-5."""
    import timm
    from PIL import Image

    enc = MIMCLEncoder.from_pretrained(vit_folder)
    pils = [Image.fromarray(a) for a in images]
    x = enc.preprocess(pils)                                       # the model's own eval preprocessing
    assert x.shape == (3, 3, 32, 32)
    emb = enc.embed(pils)
    torch.testing.assert_close(enc.embed(np.stack([np.asarray(p.resize((32, 32))) for p in pils])).shape, emb.shape)

    t = timm.create_model(f"local-dir:{vit_folder}", pretrained=True).eval()
    cfg = timm.data.resolve_data_config({}, model=t)
    tf = timm.data.create_transform(**cfg)
    x_timm = torch.stack([tf(p) for p in pils])
    torch.testing.assert_close(x_timm, x, atol=0, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(t(x), emb, atol=1e-5, rtol=0)
        torch.testing.assert_close(vit(x), emb, atol=1e-5, rtol=0)

    # transformers, in a process that never imports mimcl_hub
    paths = []
    for i, p in enumerate(pils):
        paths.append(str(tmp_path / f"im{i}.png"))
        p.save(paths[-1])
    np.save(tmp_path / "x.npy", x.numpy())
    script = textwrap.dedent(f"""
        import json, sys
        import numpy as np, torch
        from PIL import Image
        from transformers import AutoModel, pipeline
        model = AutoModel.from_pretrained({str(vit_folder)!r}).eval()
        x = torch.from_numpy(np.load({str(tmp_path / 'x.npy')!r}))
        with torch.no_grad():
            pooled = model(pixel_values=x).pooler_output
        pipe = pipeline("image-feature-extraction", model={str(vit_folder)!r}, device="cpu")
        outs = pipe([Image.open(p) for p in {paths!r}], pool=True, return_tensors=True)
        piped = torch.cat([o.reshape(1, -1) for o in outs])
        np.save({str(tmp_path / 'auto.npy')!r}, pooled.numpy())
        np.save({str(tmp_path / 'pipe.npy')!r}, piped.numpy())
        print(json.dumps({{"mimcl_hub_imported": "mimcl_hub" in sys.modules}}))
    """)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"mimcl_hub_imported": False}
    auto = torch.from_numpy(np.load(tmp_path / "auto.npy"))
    piped = torch.from_numpy(np.load(tmp_path / "pipe.npy"))
    torch.testing.assert_close(auto, emb, atol=1e-5, rtol=0)
    torch.testing.assert_close(piped, emb, atol=1e-5, rtol=0)


def test_cifar_resnet_folder(tmp_path):
    import timm

    torch.manual_seed(1)
    model = create_backbone("resnet18_cifar").eval()
    folder = tmp_path / "resnet"
    save_encoder(model, folder, {"objective": "byol"})
    enc = MIMCLEncoder.from_pretrained(folder)
    t = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()   # mimcl_hub imported: registered
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(enc(x), model(x), atol=1e-5, rtol=0)
        torch.testing.assert_close(t(x), model(x), atol=1e-5, rtol=0)
    assert enc(x).shape == (2, 512)


def test_save_pretrained_round_trip(vit_folder, vit, tmp_path):
    enc = MIMCLEncoder.from_pretrained(vit_folder)
    out = enc.save_pretrained(tmp_path / "copy")
    assert sorted(os.listdir(out)) == ["README.md", "config.json", "model.safetensors", "training_metrics.json"]
    assert (tmp_path / "copy" / "README.md").read_text() == (vit_folder / "README.md").read_text()
    assert json.loads((tmp_path / "copy" / "config.json").read_text()) == json.loads((vit_folder / "config.json").read_text())
    again = MIMCLEncoder.from_pretrained(out)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(again(x), vit(x), atol=1e-5, rtol=0)


def test_pickle_weights_refused(vit_folder, vit, tmp_path):
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text((vit_folder / "config.json").read_text())
    torch.save(vit.state_dict(), folder / "pytorch_model.bin")
    with pytest.raises(ValueError, match=r"pytorch_model\.bin.*refused"):
        MIMCLEncoder.from_pretrained(folder)
    enc = MIMCLEncoder.from_pretrained(folder, allow_pickle=True)           # weights_only=True
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(enc(x), vit(x), atol=1e-5, rtol=0)


def test_missing_files_named(vit_folder, tmp_path):
    no_config = tmp_path / "no_config"
    no_config.mkdir()
    (no_config / "model.safetensors").write_bytes((vit_folder / "model.safetensors").read_bytes())
    with pytest.raises(FileNotFoundError, match="config.json"):
        MIMCLEncoder.from_pretrained(no_config)
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text((vit_folder / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        MIMCLEncoder.from_pretrained(no_weights)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        MIMCLEncoder.from_pretrained(tmp_path / "does_not_exist")


def test_mismatched_weights_named(vit_folder, tmp_path):
    from safetensors.torch import save_file

    bad = tmp_path / "bad"
    bad.mkdir()
    config = json.loads((vit_folder / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps(config))
    save_file({"nonsense": torch.zeros(1)}, str(bad / "model.safetensors"))
    with pytest.raises(ValueError, match="model.safetensors.*do not match"):
        MIMCLEncoder.from_pretrained(bad)
    config["architecture"] = "no_such_arch_xyz"
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="config.json.*no_such_arch_xyz"):
        MIMCLEncoder.from_pretrained(bad)


def test_from_pretrained_hub_repo_id(vit_folder, vit, tmp_path):
    """A Hub repo id through the real huggingface_hub client against tests/hub_server.py (127.0.0.1);
    in a subprocess because HF_ENDPOINT / HF_HUB_OFFLINE are read when huggingface_hub is imported."""
    sys.path.insert(0, os.path.dirname(__file__))
    from hub_server import HubServer

    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    np.save(tmp_path / "x.npy", x.numpy())
    script = textwrap.dedent(f"""
        import json, numpy as np, torch
        from huggingface_hub import HfApi
        api = HfApi()
        api.create_repo("tester/vit")
        api.upload_folder(repo_id="tester/vit", folder_path={str(vit_folder)!r})
        from mimcl_hub import MIMCLEncoder
        enc = MIMCLEncoder.from_pretrained("tester/vit")
        with torch.no_grad():
            out = enc(torch.from_numpy(np.load({str(tmp_path / 'x.npy')!r})))
        np.save({str(tmp_path / 'hub.npy')!r}, out.numpy())
        print(json.dumps({{"card": enc.card.data.library_name, "files": sorted(p.name for p in enc.folder.iterdir())}}))
    """)
    with HubServer(token="hf_test_token", user="tester") as hub:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
        env.update(HF_ENDPOINT=hub.url, HF_TOKEN="hf_test_token", HF_HUB_DISABLE_XET="1", HF_HUB_OFFLINE="0",
                   HF_HOME=str(tmp_path / "hf_home"), HF_HUB_DISABLE_TELEMETRY="1",
                   NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
        for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
            env.pop(k, None)
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["card"] == "timm" and {"config.json", "model.safetensors", "README.md"} <= set(info["files"])
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(np.load(tmp_path / "hub.npy")), vit(x), atol=1e-5, rtol=0)
