"""Objectives, registry, momentum state round-trips and the InfoAug dual branch, on a tiny CNN."""

import math

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from mimcl_hub.objectives import (OBJECTIVES, TWIN_MODES, InfoAug, MomentumObjective, Objective, ObjectiveOutput,
                                  build_infoaug, build_objective, cosine_schedule, register_objective)

FEAT = 32
REQUIRED = ["simclr", "moco", "byol", "simsiam", "barlow_twins", "vicreg", "dino"]

# small heads so that every objective trains in well under a second on one CPU thread
SMALL = {
    "simclr": dict(hidden_dim=64, out_dim=32),
    "moco": dict(hidden_dim=64, out_dim=32, queue_size=32),
    "byol": dict(hidden_dim=64, out_dim=32, pred_hidden_dim=64),
    "simsiam": dict(hidden_dim=64, out_dim=32, pred_hidden_dim=16),
    "barlow_twins": dict(hidden_dim=64, out_dim=32),
    "vicreg": dict(hidden_dim=64, out_dim=32),
    # BN in the head (the ResNet-style DINO head): on 8 fixed images the BN-free ViT-style head
    # drifts towards the uniform (centred) solution, so its loss need not go down in 40 steps.
    "dino": dict(out_dim=64, hidden_dim=64, bottleneck_dim=16, batch_norm=True),
    "nnclr": dict(hidden_dim=64, out_dim=32, pred_hidden_dim=64, support_size=64),
}


@pytest.fixture(autouse=True)
def one_thread():
    """2 shared cores: one intra-op thread avoids oversubscription stalls (and is faster here)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_backbone(seed=0):
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU(),
                      nn.Conv2d(16, 32, 3, 2, 1), nn.BatchNorm2d(32), nn.ReLU(),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
    m.num_features = FEAT
    return m


def images(g, b, size=16):
    """Distinct structured images (colour + oriented stripes + noise); pure noise images all look
    alike to an average-pooled CNN."""
    colour = torch.rand(b, 3, 1, 1, generator=g) * 2 - 1
    fx, fy = torch.rand(2, b, 1, 1, 1, generator=g) * 3
    phase = torch.rand(b, 1, 1, 1, generator=g) * 2 * math.pi
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    amp = torch.rand(b, 3, 1, 1, generator=g)
    return colour + amp * torch.sin(2 * math.pi * (fx * xx + fy * yy) + phase) + 0.1 * torch.randn(b, 3, size, size, generator=g)


def views(g, b=8, noise=0.1):
    x = images(g, b)
    return x, x + noise * torch.randn(x.shape, generator=g)


def make(name, seed=0, **extra):
    torch.manual_seed(seed + 100)
    return build_objective(name, FEAT, **{**SMALL[name], **extra})


def train(obj, bb, batches, steps, lr=1e-3):
    opt = torch.optim.Adam(list(bb.parameters()) + [p for p in obj.parameters() if p.requires_grad], lr=lr)
    out = []
    for s in range(steps):
        x1, x2 = batches(s)
        res = obj(bb, x1, x2)
        opt.zero_grad()
        res.loss.backward()
        opt.step()
        obj.on_step_end(s + 1, steps, bb)
        out.append(res.loss.item())
    return out


# --------------------------------------------------------------------------- registry

def test_registry_has_the_contract_names():
    assert set(REQUIRED) <= set(OBJECTIVES)
    for name, cls in OBJECTIVES.items():
        assert issubclass(cls, Objective) and cls.name == name


def test_unknown_objective_lists_valid_names():
    with pytest.raises(ValueError, match="unknown objective 'simclrr'.*barlow_twins.*vicreg"):
        build_objective("simclrr", FEAT)


def test_bad_kwargs_and_values():
    with pytest.raises(TypeError, match="unexpected keyword.*temprature.*valid: .*temperature"):
        build_objective("simclr", FEAT, temprature=0.1)
    with pytest.raises(TypeError, match="queue_size"):
        build_objective("byol", FEAT, queue_size=10)
    with pytest.raises(ValueError, match="temperature"):
        build_objective("simclr", FEAT, temperature=0.0)
    with pytest.raises(ValueError, match="queue_size"):
        build_objective("moco", FEAT, queue_size=0)
    with pytest.raises(ValueError, match="momentum"):
        build_objective("byol", FEAT, momentum_base=1.2)
    with pytest.raises(ValueError, match="feature_dim"):
        build_objective("vicreg", 0)
    with pytest.raises(ValueError, match="teacher_temp"):
        build_objective("dino", FEAT, teacher_temp=-0.1)


def test_register_objective_decorator_and_config_rebuild():
    @register_objective("_test_dummy")
    class Dummy(Objective):
        def __init__(self, feature_dim, scale: float = 2.0):
            super().__init__(feature_dim)
            self.scale = scale

        def forward(self, backbone, x1, x2):
            f1, f2 = self.encode(backbone, x1, x2)
            return ObjectiveOutput(self.scale * (f1 - f2).pow(2).mean(), {})

    try:
        obj = build_objective("_test_dummy", FEAT, scale=3.0)
        assert obj.name == "_test_dummy" and obj.config == {"feature_dim": FEAT, "scale": 3.0}
        with pytest.raises(ValueError, match="already registered"):
            register_objective("simclr")(Dummy)
    finally:
        OBJECTIVES.pop("_test_dummy")
    moco = make("moco", temperature=0.3)
    again = build_objective(moco.name, **moco.config)
    assert again.config == moco.config and again.temperature == 0.3 and again.queue.shape == moco.queue.shape


# --------------------------------------------------------------------------- input errors

def test_bad_view_shapes_and_batches_raise_clear_errors():
    bb, obj = tiny_backbone(), make("simclr")
    x = torch.randn(4, 3, 16, 16)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        obj(bb, x[0], x[0])
    with pytest.raises(ValueError, match="same batch size"):
        obj(bb, x, x[:3])
    with pytest.raises(ValueError, match="same channels"):
        obj(bb, x, torch.randn(4, 1, 16, 16))
    with pytest.raises(ValueError, match="at least 2"):
        obj(bb, x[:1], x[:1])
    wrong = build_objective("byol", 64, hidden_dim=16, out_dim=8, pred_hidden_dim=8)
    with pytest.raises(ValueError, match=r"backbone returned \(8, 32\).*\(B, 64\).*num_classes=0"):
        wrong(bb, x, x)


def test_views_of_different_sizes_are_encoded_separately():
    bb, obj = tiny_backbone(), make("vicreg")
    out = obj(bb, torch.randn(4, 3, 16, 16), torch.randn(4, 3, 24, 24))
    assert out.loss.ndim == 0 and math.isfinite(out.loss.item())


# --------------------------------------------------------------------------- training decreases the loss

@pytest.mark.parametrize("name", sorted(SMALL))
def test_loss_goes_down(name):
    g = torch.Generator().manual_seed(0)
    bb, obj = tiny_backbone(), make(name)
    if name == "moco":
        # On a fixed batch MoCo's queue fills with keys of the same images (false negatives), so
        # its loss cannot fall: use fresh images each step and a queue of real keys to start.
        with torch.no_grad():
            for _ in range(2):
                obj(bb, *views(g, 16))
        batches = lambda s: views(g, 16)  # noqa: E731
    else:
        fixed = views(g, 8)
        batches = lambda s: fixed  # noqa: E731
    hist = train(obj, bb, batches, steps=40)
    first, last = sum(hist[:3]) / 3, sum(hist[-3:]) / 3
    assert all(math.isfinite(v) for v in hist)
    assert last < first - 0.15 * max(abs(first), 1.0), f"{name}: {first:.4f} -> {last:.4f}: {hist}"


def test_logs_are_detached_scalar_tensors():
    """Issue 13: logs stay 0-d tensors (no host read inside forward); the loop reads them at logging steps."""
    g = torch.Generator().manual_seed(0)
    bb = tiny_backbone()
    for name in SMALL:
        out = make(name)(bb, *views(g, 4))
        assert out.logs["loss"] == pytest.approx(out.loss.item())
        for key, value in out.logs.items():
            assert isinstance(value, torch.Tensor) and value.ndim == 0 and not value.requires_grad, (name, key)


# --------------------------------------------------------------------------- momentum machinery

def test_cosine_schedule_endpoints():
    assert cosine_schedule(0, 100, 0.99, 1.0) == pytest.approx(0.99)
    assert cosine_schedule(50, 100, 0.99, 1.0) == pytest.approx(0.995)
    assert cosine_schedule(100, 100, 0.99, 1.0) == pytest.approx(1.0)
    assert cosine_schedule(500, 100, 0.99, 1.0) == pytest.approx(1.0)


def test_targets_are_frozen_copies_and_ema_moves_them():
    g = torch.Generator().manual_seed(0)
    bb, obj = tiny_backbone(), make("byol", momentum_base=0.5, momentum_final=0.5)
    assert obj.target_backbone is None
    obj.build_targets(nn.DataParallel(bb))              # wrappers are unwrapped before the copy
    assert isinstance(obj.target_backbone, nn.Sequential)
    assert all(not p.requires_grad for p in obj.target_backbone.parameters())
    assert all(not p.requires_grad for p in obj.target_projector.parameters())
    before = [p.clone() for p in obj.target_backbone.parameters()]
    train(obj, bb, lambda s: views(g, 8), steps=1)
    for t0, t1, o in zip(before, obj.target_backbone.parameters(), bb.parameters()):
        torch.testing.assert_close(t1, 0.5 * t0 + 0.5 * o.detach())
    assert float(obj.momentum) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="online backbone"):
        obj.on_step_end(1, 10, None)
    other = nn.Sequential(nn.Conv2d(3, 32, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with pytest.raises(ValueError, match="does not match its target"):
        obj.on_step_end(1, 10, other)


def test_dino_teacher_temperature_warmup():
    obj = make("dino", warmup_teacher_temp=0.04, teacher_temp=0.07, warmup_teacher_temp_fraction=0.5)
    assert float(obj.teacher_temp) == pytest.approx(0.04)
    assert obj.teacher_temp_at(0, 10) == pytest.approx(0.04)
    assert obj.teacher_temp_at(2, 10) == pytest.approx(0.052)
    assert obj.teacher_temp_at(5, 10) == pytest.approx(0.07)
    assert obj.teacher_temp_at(9, 10) == pytest.approx(0.07)


def _assert_state_equal(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize("name", ["moco", "byol", "dino", "nnclr"])
@pytest.mark.parametrize("build_first", [False, True])
def test_momentum_state_round_trips_through_safetensors(tmp_path, name, build_first):
    g = torch.Generator().manual_seed(0)
    bb, obj = tiny_backbone(0), make(name, seed=0)
    train(obj, bb, lambda s: views(g, 8), steps=3)
    state = obj.state_dict()
    expected_keys = {"moco": ["queue", "queue_ptr", "target_projector.net.0.weight", "momentum"],
                     "byol": ["target_projector.net.0.weight", "momentum"],
                     "dino": ["center", "teacher_temp", "target_head.last_layer.parametrizations.weight.original1"],
                     "nnclr": ["support", "support_ptr", "support_count"]}[name]
    assert set(expected_keys) <= set(state)
    if isinstance(obj, MomentumObjective):
        assert any(k.startswith("target_backbone.") for k in state)
    if name == "moco":
        assert int(obj.queue_ptr) == (3 * 16) % 32
    if name == "dino":
        assert obj.center.abs().sum() > 0
    save_file(state, str(tmp_path / "objective.safetensors"))
    save_file(bb.state_dict(), str(tmp_path / "backbone.safetensors"))

    bb2, obj2 = tiny_backbone(7), make(name, seed=7)          # different random init
    bb2.load_state_dict(load_file(str(tmp_path / "backbone.safetensors")))
    if build_first and isinstance(obj2, MomentumObjective):
        obj2.build_targets(bb2)
    obj2.load_state_dict(load_file(str(tmp_path / "objective.safetensors")))   # strict
    if isinstance(obj2, MomentumObjective) and not build_first:
        assert obj2.target_backbone is None                  # pending until first use …
        assert obj2.state_dict().keys() == state.keys()      # … and still saved
    _assert_state_equal(obj, obj2)

    x1, x2 = views(g, 8)
    l1, l2 = obj(bb, x1, x2).loss, obj2(bb2, x1, x2).loss
    assert torch.equal(l1, l2)
    obj.on_step_end(4, 10, bb)
    obj2.on_step_end(4, 10, bb2)
    _assert_state_equal(obj, obj2)
    assert torch.equal(obj(bb, x1, x2).loss, obj2(bb2, x1, x2).loss)


# --------------------------------------------------------------------------- InfoAug

def _twins(g, b=6):
    t = images(g, b, size=8)                    # smaller crops, another batch size
    return t, t + 0.1 * torch.randn(t.shape, generator=g)


def test_infoaug_loss_is_view_plus_weighted_mi():
    g = torch.Generator().manual_seed(0)
    bb = tiny_backbone()
    v, m = make("simclr"), make("barlow_twins")
    aug = InfoAug(v, m, mi_weight=0.3, twin_mode="mi")
    vw, tw = views(g, 8), _twins(g)
    out = aug(bb, vw, tw)
    l_view, l_mi = v(bb, *vw).loss, m(bb, *tw).loss
    torch.testing.assert_close(out.loss, l_view + 0.3 * l_mi)
    assert out.logs["loss_view"] == pytest.approx(l_view.item())
    assert out.logs["loss_mi"] == pytest.approx(l_mi.item())
    assert float(out.logs["loss"]) == pytest.approx(float(out.logs["loss_view"] + 0.3 * out.logs["loss_mi"]), rel=1e-6)
    assert "view/loss" in out.logs and "mi/on_diag" in out.logs and out.logs["mi_skipped"] == 0.0
    out.loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters() if p.requires_grad)


@pytest.mark.parametrize("twin_mode, mi_weight", [("none", 1.0), ("mi", 0.0), ("random", 0.0)])
def test_infoaug_baseline_skips_mi_branch(twin_mode, mi_weight):
    g = torch.Generator().manual_seed(0)
    bb = tiny_backbone()
    v, m = make("simclr"), make("simclr", seed=1)
    aug = InfoAug(v, m, mi_weight=mi_weight, twin_mode=twin_mode)
    assert not aug.uses_mi_branch
    vw = views(g, 8)
    out = aug(bb, vw, _twins(g))
    torch.testing.assert_close(out.loss, v(bb, *vw).loss)
    assert out.logs["loss_mi"] == 0.0
    out.loss.backward()
    assert all(p.grad is None for p in m.parameters())
    assert build_infoaug("simclr", "simclr", feature_dim=FEAT, twin_mode=twin_mode, mi_weight=mi_weight,
                         **SMALL["simclr"]).mi_objective is None


def test_infoaug_random_mode_runs_the_mi_branch_and_records_mode():
    aug = build_infoaug("simclr", "vicreg", feature_dim=FEAT, twin_mode="random", mi_weight=0.5,
                        view_kwargs=SMALL["simclr"], mi_kwargs=SMALL["vicreg"])
    assert aug.twin_mode == "random" and aug.uses_mi_branch and aug.mi_objective.name == "vicreg"
    assert aug.config["mi"] == "vicreg" and aug.config["twin_mode"] == "random"
    g = torch.Generator().manual_seed(0)
    out = aug(tiny_backbone(), views(g, 4), _twins(g, 4))
    assert out.logs["loss_mi"] != 0.0


def test_infoaug_without_twins_keeps_mi_heads_in_graph_with_zero_grad():
    g = torch.Generator().manual_seed(0)
    bb = tiny_backbone()
    aug = InfoAug(make("simclr"), make("simclr", seed=1), mi_weight=1.0)
    for twins in (None, _twins(g, 1)):                 # missing, or too few twins for the MI objective
        for p in aug.parameters():
            p.grad = None
        out = aug(bb, views(g, 8), twins)
        assert out.logs["mi_skipped"] == 1.0 and out.logs["loss_mi"] == 0.0
        out.loss.backward()
        assert all(p.grad is not None and not p.grad.any() for p in aug.mi_objective.parameters())


def test_infoaug_on_step_end_reaches_both_branches():
    g = torch.Generator().manual_seed(0)
    bb = tiny_backbone()
    aug = build_infoaug("byol", "dino", feature_dim=FEAT, view_kwargs=SMALL["byol"], mi_kwargs=SMALL["dino"])
    aug.build_targets(bb)
    assert aug.view_objective.target_backbone is not None and aug.mi_objective.target_backbone is not None
    aug(bb, views(g, 4), _twins(g, 4)).loss.backward()
    aug.on_step_end(5, 10, bb)
    assert float(aug.view_objective.momentum) == pytest.approx(cosine_schedule(5, 10, 0.99, 1.0))
    assert float(aug.mi_objective.momentum) == pytest.approx(cosine_schedule(5, 10, 0.996, 1.0))
    assert aug.mi_objective.center.abs().sum() > 0


def test_infoaug_validation():
    v, m = make("simclr"), make("simclr", seed=1)
    assert TWIN_MODES == ("mi", "random", "none")
    with pytest.raises(ValueError, match="twin_mode must be one of"):
        InfoAug(v, m, twin_mode="best")
    with pytest.raises(ValueError, match="twin_mode must be one of"):
        build_infoaug(feature_dim=FEAT, twin_mode="MI")
    with pytest.raises(ValueError, match="mi_weight"):
        InfoAug(v, m, mi_weight=-1.0)
    with pytest.raises(ValueError, match="needs an mi_objective"):
        InfoAug(v, None, twin_mode="mi")
    with pytest.raises(ValueError, match="separate instance"):
        InfoAug(v, v)
    with pytest.raises(ValueError, match="view_objective must be an Objective"):
        InfoAug(nn.Linear(2, 2), m)
    with pytest.raises(ValueError, match="unknown objective"):
        build_infoaug("simclr", "nope", feature_dim=FEAT)
    aug = InfoAug(v, m)
    x = torch.randn(4, 3, 16, 16)
    with pytest.raises(ValueError, match="views must be a pair"):
        aug(tiny_backbone(), x, None)
    with pytest.raises(ValueError, match="twins must be a pair"):
        aug(tiny_backbone(), (x, x), (x,))
    with pytest.raises(ValueError, match="same batch size"):
        aug(tiny_backbone(), (x, x), (x, x[:3]))


def test_queues_and_support_set_update_on_the_device_without_host_reads():
    """Issue 13: MoCo's queue pointer and NNCLR's support set are updated with tensor arithmetic (no host
    read); the values equal the slot arithmetic done by hand, including wrap-around and the fill level."""
    from mimcl_hub.objectives import build_objective

    torch.manual_seed(0)
    moco = build_objective("moco", 8, hidden_dim=16, out_dim=4, queue_size=5)
    first, second = torch.randn(4, 4), torch.randn(4, 4)
    moco._enqueue(first)
    moco._enqueue(second)                                   # slots 4, 0, 1, 2 (wraps around)
    expected = torch.nn.functional.normalize(torch.cat([first, second]), dim=1)
    assert int(moco.queue_ptr) == 3
    torch.testing.assert_close(moco.queue[[0, 1, 2, 3, 4]], expected[[5, 6, 7, 3, 4]])

    nnclr = build_objective("nnclr", 8, hidden_dim=16, out_dim=4, pred_hidden_dim=8, support_size=6)
    z = torch.randn(3, 4)
    torch.testing.assert_close(nnclr.nearest_neighbours(z), torch.nn.functional.normalize(z, dim=1))  # empty set
    bank = torch.randn(4, 4)
    nnclr._enqueue(bank)
    assert int(nnclr.support_count) == 4 and int(nnclr.support_ptr) == 4
    normed = torch.nn.functional.normalize(bank, dim=1)
    query = torch.nn.functional.normalize(torch.randn(5, 4), dim=1)
    torch.testing.assert_close(nnclr.nearest_neighbours(query), normed[(query @ normed.T).argmax(1)])  # filled slots only
    nnclr._enqueue(torch.randn(4, 4))
    assert int(nnclr.support_count) == 6 and int(nnclr.support_ptr) == 2
