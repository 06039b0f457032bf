"""Untrusted encoder folders (issue 19, items 9 and 10): every corruption of a real saved folder gets a
ValueError / FileNotFoundError naming the file and what is wrong, and a config asking for a model larger than
its weights is refused before anything is allocated.

Each folder starts as a real one written by ``mimcl_hub.hub.save_encoder`` (a tiny timm ``test_vit``), copied and
then corrupted; one parametrized case per corruption, so ``pytest -v`` lists what was tried.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

import mimcl_hub  # noqa: F401  (registers the small-image timm variants)
from mimcl_hub.hub import save_encoder
from mimcl_hub.hub.encoder import MAX_CONFIG_BYTES, MAX_HEADER_BYTES, MIMCLEncoder
from mimcl_hub.models import SMALL_IMAGE_MODELS, create_backbone


@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    return create_backbone("test_vit", img_size=16).eval()


@pytest.fixture(scope="module")
def good_folder(backbone, tmp_path_factory):
    folder = tmp_path_factory.mktemp("untrusted") / "enc"
    save_encoder(backbone, folder, {"objective": "simclr", "model_id": "tester/enc"})
    return folder


def _copy(good_folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(good_folder, tmp_path / "enc"))


def _edit_config(folder: Path, **top) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.update(top)
    (folder / "config.json").write_text(json.dumps(config))


def _edit_model_args(folder: Path, **args) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.setdefault("model_args", {}).update(args)
    (folder / "config.json").write_text(json.dumps(config))


def _header(folder: Path) -> tuple[dict, bytes]:
    """The safetensors header (dict) and the data section of the folder's weights."""
    raw = (folder / "model.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def _write_header(folder: Path, header_text: str, data: bytes) -> None:
    body = header_text.encode("utf-8")
    body += b" " * (-len(body) % 8)
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(body)) + body + data)


def _edit_state(folder: Path, edit) -> None:
    state = {k: v.clone() for k, v in load_file(str(folder / "model.safetensors")).items()}
    edit(state)
    save_file(state, str(folder / "model.safetensors"))


def _first(state: dict) -> torch.Tensor:
    return state[sorted(state)[0]]


def _weights(folder):
    return folder / "model.safetensors"


def _config(folder):
    return folder / "config.json"


# --------------------------------------------------------------------------------------------------------- weights

def _truncated(f):
    raw = _weights(f).read_bytes()
    _weights(f).write_bytes(raw[:len(raw) // 2])


def _truncated_in_header(f):
    _weights(f).write_bytes(_weights(f).read_bytes()[:20])


def _absurd_header_length(f):
    raw = _weights(f).read_bytes()
    _weights(f).write_bytes(struct.pack("<Q", 1 << 60) + raw[8:])


def _header_over_the_library_limit(f):
    """A (sparse) file long enough to hold the header it announces, which is over safetensors' 100 MB limit."""
    with open(_weights(f), "wb") as out:
        out.write(struct.pack("<Q", MAX_HEADER_BYTES + 8))
        out.truncate(MAX_HEADER_BYTES + 4096)


def _duplicate_key(f):
    header, data = _header(f)
    name = sorted(k for k in header if k != "__metadata__")[0]
    text = json.dumps(header)
    _write_header(f, text[:-1] + f", {json.dumps(name)}: {json.dumps(header[name])}}}", data)


def _overlapping_offsets(f):
    """Two tensors of the same size pointing at the same bytes (a gap left where the second one was)."""
    header, data = _header(f)
    by_size = {}
    for name, info in sorted(header.items()):
        if name == "__metadata__":
            continue
        size = info["data_offsets"][1] - info["data_offsets"][0]
        if size in by_size:
            info["data_offsets"] = list(header[by_size[size]]["data_offsets"])
            break
        by_size[size] = name
    _write_header(f, json.dumps(header), data)


def _offsets_not_matching_shape(f):
    header, data = _header(f)
    name = sorted(k for k in header if k != "__metadata__")[0]
    header[name]["shape"] = [int(math.prod(header[name]["shape"])) * 2]
    _write_header(f, json.dumps(header), data)


def _field(key, value):
    def corrupt(f):
        header, data = _header(f)
        header[sorted(k for k in header if k != "__metadata__")[0]][key] = value
        _write_header(f, json.dumps(header), data)
    return corrupt


def _weights_are_a_directory(f):
    _weights(f).unlink()
    _weights(f).mkdir()


def _config_is_a_directory(f):
    _config(f).unlink()
    _config(f).mkdir()


def _sparse_config(f):
    with open(_config(f), "wb") as out:
        out.write(b'{"architecture": "test_vit", "x": "')
        out.truncate(MAX_CONFIG_BYTES + 1)


def _config_text(text: str | bytes):
    def corrupt(f):
        (_config(f).write_bytes if isinstance(text, bytes) else _config(f).write_text)(text)
    return corrupt


def _config_raw_edit(old: str, new: str):
    def corrupt(f):
        _config(f).write_text(_config(f).read_text().replace(old, new, 1))
    return corrupt


#: case -> (corrupt(folder), file it must name, exception type, regex the message must match)
HOSTILE = {
    # the weight file itself
    "weights_truncated": (_truncated,
                          "model.safetensors", ValueError,
                          r"header describes .* bytes of tensor data but the file holds .*truncated"),
    "weights_truncated_in_header": (_truncated_in_header,
                                    "model.safetensors", ValueError,
                                    r"header length .* bytes: the file has only 12 bytes after it: truncated"),
    "weights_absurd_header_length": (_absurd_header_length,
                                     "model.safetensors", ValueError,
                                     r"header length 1,152,921,504,606,846,976 bytes"),
    "weights_header_over_100MB": (_header_over_the_library_limit,
                                  "model.safetensors", ValueError,
                                  r"more than the 100,000,000 bytes safetensors allows"),
    "weights_empty": (lambda f: _weights(f).write_bytes(b""),
                      "model.safetensors", ValueError,
                      r"0 bytes, too short for a safetensors file"),
    "weights_seven_bytes": (lambda f: _weights(f).write_bytes(b"\x01" * 7),
                            "model.safetensors", ValueError,
                            r"7 bytes, too short"),
    "weights_header_not_json": (lambda f: _write_header(f, "not json", b""),
                                "model.safetensors", ValueError,
                                r"header is not valid JSON"),
    "weights_header_a_list": (lambda f: _write_header(f, "[1, 2]", b""),
                              "model.safetensors", ValueError,
                              r"header must be a JSON object, got a JSON list"),
    "weights_header_not_utf8": (lambda f: _weights(f).write_bytes(struct.pack("<Q", 8) + b'{"\xff\xfe": 1}'[:8]),
                                "model.safetensors", ValueError,
                                r"header is not UTF-8"),
    "weights_duplicate_key": (_duplicate_key, "model.safetensors", ValueError, r"duplicate keys \['blocks"),
    "weights_overlapping_offsets": (_overlapping_offsets,
                                    "model.safetensors", ValueError,
                                    r"must tile the data section without gaps or overlaps"),
    "weights_offsets_not_matching_shape": (_offsets_not_matching_shape,
                                           "model.safetensors", ValueError,
                                           r"needs .* bytes but its data_offsets"),
    "weights_unknown_dtype": (_field("dtype", "F128"),
                              "model.safetensors", ValueError,
                              r"dtype 'F128' is not one of"),
    "weights_negative_shape": (_field("shape", [-1]),
                               "model.safetensors", ValueError,
                               r"shape \[-1\] is not a list of non-negative ints"),
    "weights_offsets_strings": (_field("data_offsets", ["0", "4"]),
                                "model.safetensors", ValueError,
                                r"data_offsets .* are not two ints"),
    "weights_trailing_bytes": (lambda f: _weights(f).write_bytes(_weights(f).read_bytes() + b"\0" * 64),
                               "model.safetensors", ValueError,
                               r"trailing bytes"),
    "weights_a_directory": (_weights_are_a_directory,
                            "model.safetensors", FileNotFoundError,
                            r"is a directory, not the weights"),
    # tensors that do not fit the architecture
    "weights_int_dtype": (lambda f: _edit_state(f, lambda s: s.update({k: v.to(torch.int32) for k, v in s.items()})),
                          "model.safetensors", ValueError,
                          r"config\.json .*wrong dtype: .*file torch\.int32, architecture torch\.float32"),
    "weights_wrong_shape": (lambda f: _edit_state(f, lambda s: s.update({sorted(s)[0]: torch.zeros(3, 3)})),
                            "model.safetensors", ValueError,
                            r"wrong shape: blocks\.0\.attn\.proj\.bias \(file \[3, 3\], architecture \[64\]\)"),
    "weights_unknown_key": (lambda f: _edit_state(f, lambda s: s.update({"extra.weight": torch.zeros(1)})),
                            "model.safetensors", ValueError,
                            r"unexpected: extra\.weight"),
    "weights_missing_key": (lambda f: _edit_state(f, lambda s: s.pop(sorted(s)[0])),
                            "model.safetensors", ValueError,
                            r"missing: blocks\.0\.attn\.proj\.bias"),
    "weights_nan": (lambda f: _edit_state(f, lambda s: _first(s).view(-1).__setitem__(0, float("nan"))),
                    "model.safetensors", ValueError,
                    r"non-finite values \(NaN / inf\) in 1 tensor\(s\): blocks\.0\.attn\.proj\.bias \(1 of 64\)"),
    "weights_inf": (lambda f: _edit_state(f, lambda s: _first(s).view(-1)[:3].fill_(float("-inf"))),
                    "model.safetensors", ValueError,
                    r"non-finite values .* \(3 of 64\)"),
    # config.json
    "config_architecture_list": (lambda f: _edit_config(f, architecture=["test_vit"]),
                                 "config.json", ValueError,
                                 r"'architecture' must be a timm model name \(a string\), got list"),
    "config_architecture_int": (lambda f: _edit_config(f, architecture=5),
                                "config.json", ValueError,
                                r"'architecture' must be a timm model name \(a string\), got int"),
    "config_a_list": (_config_text("[1, 2]"),
                      "config.json", ValueError,
                      r"config must be a JSON object, got a JSON list"),
    "config_a_string": (_config_text('"test_vit"'),
                        "config.json", ValueError,
                        r"config must be a JSON object, got a JSON str"),
    "config_not_utf8": (_config_text(b'{"architecture": "\xff\xfe"}'),
                        "config.json", ValueError,
                        r"config is not UTF-8 text \(byte 18: b.\\xff"),
    "config_not_json": (_config_text("{architecture: test_vit}"),
                        "config.json", ValueError,
                        r"config is not valid JSON"),
    "config_nan": (_config_raw_edit('"model_args": {', '"model_args": {"mlp_ratio": NaN, '),
                   "config.json", ValueError,
                   r"holds NaN, which is not JSON"),
    "config_duplicate_key": (_config_raw_edit('{', '{"architecture": "resnet18_cifar", '),
                             "config.json", ValueError,
                             r"duplicate keys \['architecture'\]"),
    "config_nested_too_deeply": (_config_text("[" * 100_000 + "]" * 100_000),
                                 "config.json", ValueError,
                                 r"nested too deeply"),
    "config_too_large": (_sparse_config, "config.json", ValueError, r"more than any timm config\.json"),
    "config_a_directory": (_config_is_a_directory,
                           "config.json", FileNotFoundError,
                           r"is a directory, not the timm config"),
    "config_pretrained_cfg_list": (lambda f: _edit_config(f, pretrained_cfg=[1]),
                                   "config.json", ValueError,
                                   r"'pretrained_cfg' must be a JSON object, got list"),
    "config_input_size_negative": (lambda f: _edit_config(f, pretrained_cfg={"input_size": [3, -16, 16]}),
                                   "config.json", ValueError,
                                   r"pretrained_cfg\.input_size must be an int in \[1, 8192\], got -16"),
    "config_std_zero": (lambda f: _edit_config(f, pretrained_cfg={"std": [0, 0, 0]}),
                        "config.json", ValueError,
                        r"pretrained_cfg\.std must be a number in"),
    "config_num_classes_string": (lambda f: _edit_config(f, num_classes="ten"),
                                  "config.json", ValueError,
                                  r"config\.num_classes must be an int"),
    "model_args_string_for_int": (lambda f: _edit_model_args(f, embed_dim="64"),
                                  "config.json", ValueError,
                                  r"model_args\.embed_dim must be an int in \[1, 65536\], got '64'"),
    "model_args_nested_dict": (lambda f: _edit_model_args(f, depth={"value": 2}),
                               "config.json", ValueError,
                               r"model_args\.depth must be an int in \[1, 1024\], got \{'value': 2\}"),
    "model_args_list_for_int": (lambda f: _edit_model_args(f, num_heads=[2, 2]),
                                "config.json", ValueError,
                                r"model_args\.num_heads must be an int"),
    "model_args_unknown_key": (lambda f: _edit_model_args(f, colour="blue"),
                               "config.json", ValueError,
                               r"do not fit 'test_vit': TypeError: .*unexpected keyword argument 'colour'"),
    "model_args_unknown_layer_name": (lambda f: _edit_model_args(f, act_layer="os.system"),
                                      "config.json", ValueError,
                                      r"do not fit 'test_vit': KeyError: 'os\.system'"),
    "model_args_heads_do_not_divide": (lambda f: _edit_model_args(f, num_heads=7),
                                       "config.json", ValueError,
                                       r"do not fit 'test_vit': AssertionError"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_issue_19_item_9_each_hostile_folder_gets_a_clear_error(good_folder, tmp_path, case):
    """issue 19 item 9: a corrupted copy of a real folder -> ValueError / FileNotFoundError naming the file and
    what is wrong; never a library's exception (SafetensorError, AttributeError, KeyError, UnicodeDecodeError, ...)."""
    corrupt, file_name, error, pattern = HOSTILE[case]
    folder = _copy(good_folder, tmp_path)
    corrupt(folder)
    with pytest.raises(Exception) as info:
        MIMCLEncoder.from_pretrained(folder)
    assert type(info.value) is error, f"{type(info.value).__module__}.{type(info.value).__name__}: {info.value}"
    message = str(info.value)
    assert str(folder / file_name) in message, message
    assert re.search(pattern, message, flags=re.S), message


@pytest.mark.parametrize("case", ["truncated", "not_a_state_dict", "int_values"])
def test_issue_19_item_9_hostile_pickles_with_allow_pickle(good_folder, backbone, tmp_path, case):
    """issue 19 item 9, the allow_pickle path: damaged pickles and non-tensor entries are refused by name."""
    folder = tmp_path / "pickled"
    folder.mkdir()
    shutil.copy(good_folder / "config.json", folder / "config.json")
    path = folder / "pytorch_model.bin"
    torch.save(backbone.state_dict(), path)
    if case == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
        pattern = r"refused by torch\.load\(weights_only=True\): it is damaged"
    elif case == "not_a_state_dict":
        torch.save([torch.zeros(1)], path)
        pattern = r"not a state dict \(list\)"
    else:
        torch.save({"blocks.0.attn.proj.bias": 3}, path)
        pattern = r"not a state dict: entries \['blocks\.0\.attn\.proj\.bias'\] are not named tensors"
    with pytest.raises(ValueError) as info:
        MIMCLEncoder.from_pretrained(folder, allow_pickle=True)
    assert type(info.value) is ValueError and str(path) in str(info.value), str(info.value)
    assert re.search(pattern, str(info.value)), str(info.value)


def test_issue_19_item_9_half_precision_weights_are_accepted(good_folder, backbone, tmp_path):
    """The dtype check is by kind: float16 weights for float32 parameters load (cast by torch, values kept to
    float16 precision); only integer / bool tensors for floating parameters are refused."""
    folder = _copy(good_folder, tmp_path)
    _edit_state(folder, lambda s: s.update({k: v.half() for k, v in s.items()}))
    enc = MIMCLEncoder.from_pretrained(folder)
    for name, value in backbone.state_dict().items():
        torch.testing.assert_close(enc.model.state_dict()[name], value.half().float(), atol=0, rtol=0)


# ------------------------------------------------------------------------------------------------------ item 10

@pytest.mark.parametrize("name", [*SMALL_IMAGE_MODELS, "test_vit", "vit_tiny_patch16_224", "resnet18"])
def test_issue_19_item_10_our_architectures_build_on_meta(name):
    """The size check builds the architecture on the meta device: for every architecture we save, that build has
    exactly the state dict (names, shapes, dtypes) of the real one, so the check is exact, not the fallback."""
    import timm

    torch.manual_seed(0)
    real = timm.create_model(name, num_classes=0).state_dict()
    with torch.device("meta"):
        meta = timm.create_model(name, num_classes=0).state_dict()
    assert {k: (v.dtype, v.shape) for k, v in meta.items()} == {k: (v.dtype, v.shape) for k, v in real.items()}
    assert all(v.device.type == "meta" for v in meta.values())


def _test_vit_numel(embed_dim=64, depth=6, img_size=16, patch_size=16, in_chans=3, mlp_ratio=3):
    """Parameters of timm's ``test_vit`` (class token, learned positions, pre-norm blocks, final norm), by formula:
    per block 2 LayerNorms (4D), qkv (3D^2 + 3D), proj (D^2 + D), fc1 (rD^2 + rD), fc2 (rD^2 + D)."""
    d, tokens = embed_dim, (img_size // patch_size) ** 2 + 1
    block = 4 * d + 3 * d * d + 3 * d + d * d + d + 2 * mlp_ratio * d * d + mlp_ratio * d + d
    return d + tokens * d + (d * in_chans * patch_size ** 2 + d) + depth * block + 2 * d


def _cifar_resnet_numel(layers):
    """Parameters and buffers of a BasicBlock CIFAR ResNet (``resnet18_cifar`` with other ``layers``), by formula:
    3x3 stem conv + BN, then per stage s (width w_s = 64 * 2**s) blocks of two 3x3 convs + two BNs, the first
    block of stages 2-4 with a 1x1 stride-2 down-sampling conv + BN. A BN holds 4 * w values + 1 counter."""
    def bn(w):
        return 4 * w + 1

    total, w_in = 27 * 64 + bn(64), 64
    for s, n in enumerate(layers):
        w = 64 * 2 ** s
        for b in range(n):
            c_in = w_in if b == 0 else w
            total += 9 * c_in * w + bn(w) + 9 * w * w + bn(w)
            if b == 0 and c_in != w:
                total += c_in * w + bn(w)
        w_in = w
    return total


#: config edits that ask for far more parameters than the (real, 299,904-parameter) weight file holds
OVERSIZED = {
    "vit_embed_16384_depth_64": ({"embed_dim": 16384, "depth": 64}, None, _test_vit_numel(16384, 64)),
    "vit_depth_256": ({"depth": 256}, None, _test_vit_numel(depth=256)),
    "vit_img_8192_patch_1": ({"img_size": 8192, "patch_size": 1}, None, _test_vit_numel(img_size=8192, patch_size=1)),
    "cifar_resnet_100_blocks_per_stage": ({"layers": [100, 100, 100, 100]}, "resnet18_cifar",
                                          _cifar_resnet_numel([100, 100, 100, 100])),
}


def test_size_formulas_match_real_timm_models():
    """The formulas the item 10 test checks the reported sizes against, on real (small) timm builds."""
    import timm

    for model, numel in ((timm.create_model("test_vit", num_classes=0, img_size=16), _test_vit_numel()),
                         (timm.create_model("test_vit", num_classes=0, img_size=32, patch_size=4, depth=2),
                          _test_vit_numel(img_size=32, patch_size=4, depth=2)),
                         (timm.create_model("resnet18_cifar", num_classes=0), _cifar_resnet_numel([2, 2, 2, 2])),
                         (timm.create_model("resnet18_cifar", num_classes=0, layers=[1, 3, 1, 2]),
                          _cifar_resnet_numel([1, 3, 1, 2]))):
        assert sum(v.numel() for v in model.state_dict().values()) == numel


@pytest.mark.parametrize("case", list(OVERSIZED))
def test_issue_19_item_10_oversized_config_refused_before_allocating(good_folder, tmp_path, case):
    """issue 19 item 10: each size argument is within its range, but their product is far beyond the weight file:
    refused on the meta device (ValueError naming config.json, model.safetensors and both sizes), at once."""
    import resource

    model_args, architecture, model_numel = OVERSIZED[case]
    folder = _copy(good_folder, tmp_path)
    if architecture:
        _edit_config(folder, architecture=architecture, model_args=model_args)
    else:
        _edit_model_args(folder, **model_args)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.raises(ValueError) as info:
        MIMCLEncoder.from_pretrained(folder)
    seconds = time.perf_counter() - start
    message = str(info.value)
    assert str(folder / "config.json") in message and str(folder / "model.safetensors") in message, message
    assert f"the architecture has {model_numel:,} parameters" in message, message
    assert "the file holds 299,904" in message, message
    assert "Nothing was allocated" in message
    assert seconds < 20, seconds
    grew_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert grew_mib < 256, grew_mib


def test_issue_19_item_10_the_reported_folder_in_a_memory_capped_process(good_folder, tmp_path):
    """issue 19 item 10, the reported case (embed_dim 16384, depth 64: ~640 GiB as built, with the real 1.2 MB
    weight file) in a child process capped at 5 GiB of address space, so a regression fails this test (the allocator
    gives up) instead of exhausting the machine. After the fix: a ValueError, peak RSS no higher than the imports."""
    folder = _copy(good_folder, tmp_path)
    _edit_model_args(folder, embed_dim=16384, depth=64)
    script = textwrap.dedent(f"""
        import json, resource, time
        resource.setrlimit(resource.RLIMIT_AS, (5 << 30, 5 << 30))
        from mimcl_hub.hub.encoder import MIMCLEncoder
        start = time.perf_counter()
        try:
            MIMCLEncoder.from_pretrained({str(folder)!r})
            out = {{"type": None}}
        except Exception as e:
            out = {{"type": type(e).__module__ + "." + type(e).__name__, "message": str(e)}}
        out["seconds"] = time.perf_counter() - start
        # VmHWM: this process's own peak (ru_maxrss would carry the forking test runner's peak across exec)
        hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
        out["peak_rss_mib"] = int(hwm.split()[1]) / 1024
        print(json.dumps(out))
    """)
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["type"] == "builtins.ValueError", out
    assert "171,823,955,968" in out["message"] and "299,904" in out["message"] and "config.json" in out["message"]
    assert out["seconds"] < 20 and out["peak_rss_mib"] < 2048, out


# --- the fallback: an architecture that cannot be built on the meta device --------------------------------------

class _ValueSizedNet(nn.Module):
    """A conv net whose constructor reads a tensor's value (``.item()``), which the meta device cannot give: the
    kind of architecture the size check's fallback (a real build under a byte budget) exists for."""

    def __init__(self, width: int = 8, in_chans: int = 3, num_classes: int = 0, **kwargs):
        super().__init__()
        width = int(torch.tensor(width).item())
        self.conv = nn.Conv2d(in_chans, width, 3)
        self.num_features = width

    def forward(self, x):
        return self.conv(x).mean((2, 3))


def _register_value_sized_net() -> str:
    import timm
    from timm.models import register_model

    name = "mimcl_test_value_sized_net"
    if not timm.is_model(name):
        def mimcl_test_value_sized_net(pretrained=False, pretrained_cfg=None, pretrained_cfg_overlay=None, **kwargs):
            return _ValueSizedNet(**kwargs)

        register_model(mimcl_test_value_sized_net)
    return name


@pytest.fixture
def value_sized_folder(tmp_path):
    name = _register_value_sized_net()
    torch.manual_seed(0)
    model = _ValueSizedNet().eval()
    folder = tmp_path / "value_sized"
    folder.mkdir()
    save_file(model.state_dict(), str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({
        "architecture": name, "num_classes": 0, "num_features": 8, "model_args": {"width": 8},
        "pretrained_cfg": {"input_size": [3, 16, 16], "mean": [0.5] * 3, "std": [0.5] * 3}}))
    return folder, model


def test_issue_19_item_10_fallback_loads_a_good_folder_that_cannot_build_on_meta(value_sized_folder):
    folder, model = value_sized_folder
    with pytest.raises(RuntimeError, match="meta"):           # really cannot be built on meta
        with torch.device("meta"):
            _ValueSizedNet()
    enc = MIMCLEncoder.from_pretrained(folder)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(enc(x), model(x), atol=1e-6, rtol=0)


def test_issue_19_item_10_fallback_refuses_an_oversized_config_before_allocating(value_sized_folder):
    """issue 19 item 10, fallback: width 2**24 (a 1.8 GB conv) for a 1 KB weight file is refused by the byte budget
    (2 x the file's tensor bytes + 64 MiB) before the conv's weight is allocated."""
    import resource

    folder, _ = value_sized_folder
    _edit_model_args(folder, width=1 << 24)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ValueError, match=r"config\.json: mimcl_test_value_sized_net .*more than 67,110,\d+ bytes of "
                                         r"tensors .*refused before allocating them"):
        MIMCLEncoder.from_pretrained(folder)
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024 < 256
