"""CUDA checks (``pytest -m gpu``; every test here is skipped without a CUDA device).

1. The torch KSG (``ksg_mi``, ``pairwise_mi``'s torch backend) on CUDA float64 tensors equals the CPU kernel
   (``pairwise_mi(..., backend="numba")``) on random and coupled trajectories to 1e-12 nats: both compute the
   same max-norm distances and strict counts in float64; only the order of the final digamma sum differs.
2. A few bf16 training steps on CUDA through ``mimcl_hub.train.train`` (ViT-Ti/4 at 16 px, batch 8, as in
   tests/test_train.py): the loss stays finite, the weights change, the run used the GPU.
3. ``find_twins(..., device="cuda")`` on mined clips equals the CPU result: the same valid patches and twins
   (a twin may differ only where two candidates tie to 1e-9 nats), MI to 1e-9 nats.
"""

import json
import math

import numpy as np
import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device (torch.cuda.is_available() is False)"),
]

#: |CUDA float64 - CPU kernel| bound for KSG values (nats): float64 rounding of a mean of <= 100 digamma terms
KSG_ATOL = 1e-12
#: bound for find_twins' MI and threshold (sums of KSG and histogram MI, quantiles of them)
TWIN_ATOL = 1e-9


def _trajectories(p: int, n: int, d: int, seed: int) -> np.ndarray:
    """(p, n, d) displacements: groups of four share a motion with noise 0.1 / 0.5 / 1.5, the fourth is independent,
    so the matrix has near-zero and large MI."""
    rng = np.random.default_rng(seed)
    shared = rng.standard_normal(((p + 3) // 4, n, d))
    noise = (0.1, 0.5, 1.5)
    own = rng.standard_normal((p, n, d))
    return np.stack([own[i] if i % 4 == 3 else shared[i // 4] + noise[i % 4] * own[i] for i in range(p)])


@pytest.mark.parametrize("p, n, d, k", [(64, 63, 2, 5), (200, 23, 2, 5), (37, 40, 3, 3)])
def test_torch_ksg_on_cuda_equals_the_cpu_kernel(p, n, d, k):
    from mimcl_hub.mi import ksg_mi, pairwise_mi

    traj = _trajectories(p, n, d, seed=p + n)
    ref = pairwise_mi(traj, k=k, backend="numba")                   # the CPU kernel, float64
    t = torch.from_numpy(traj).cuda()
    out = pairwise_mi(t, k=k)                                       # "auto" picks the torch backend for CUDA tensors
    assert out.device.type == "cuda" and out.dtype == torch.float64 and tuple(out.shape) == (p, p)
    got = out.cpu().numpy()
    np.testing.assert_allclose(got, ref, rtol=0, atol=KSG_ATOL)
    np.testing.assert_array_equal(got, got.T)
    np.testing.assert_array_equal(np.diag(got), 0.0)
    coupled, independent = ref[0, 1], ref[0, 3]                     # noise 0.1 vs 0.5 partners; the lone mover
    assert coupled > 0.35 and abs(independent) < 0.15               # the data really has both kinds of pairs
    np.testing.assert_array_equal(pairwise_mi(t, k=k, chunk_size=97).cpu().numpy(), got)   # chunking changes nothing

    i, j = np.triu_indices(p, 1)
    batched = ksg_mi(t[torch.from_numpy(i).cuda()], t[torch.from_numpy(j).cuda()], k=k)    # (pairs,) on CUDA
    assert batched.device.type == "cuda"
    np.testing.assert_allclose(batched.cpu().numpy(), ref[i, j], rtol=0, atol=KSG_ATOL)


def test_bf16_training_steps_on_cuda(tmp_path):
    from accelerate.state import AcceleratorState, GradientState
    from safetensors.torch import load_file

    from mimcl_hub.data import make_scenes, mine_dataset
    from mimcl_hub.train import RECIPES, TrainConfig, train

    data = tmp_path / "scenes"
    mine_dataset(make_scenes(2, seed=0, num_frames=16, height=128, width=128, cache_dir=str(tmp_path / "cache")),
                 max_side=128).save_to_disk(str(data))
    out = tmp_path / "run"
    values = dict(RECIPES["vit_simclr"].defaults(), output_dir=str(out), video_dataset=str(data),
                  model_name="vit_tiny_patch4_32", img_size=16, per_device_train_batch_size=8, twin_batch_size=8,
                  mixed_precision="bf16", eval_dataset="none", disable_tqdm=True, warmup_steps=1, logging_steps=1,
                  max_steps=3, save_steps=1, save_total_limit=None, report_to="none")
    torch.cuda.reset_peak_memory_stats()
    try:
        result = train(TrainConfig(**values))
    finally:
        AcceleratorState._reset_state(True)
        GradientState._reset_state()
    assert torch.cuda.max_memory_allocated() > 1 << 20                  # the run used the GPU
    assert result.global_step == 3 and math.isfinite(result.train_loss)
    logs = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in logs if "loss" in r]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
    assert any(r.get("twin_batch", 0) >= 2 for r in logs)                # the MI branch ran
    first = load_file(out / "checkpoints" / "checkpoint-1" / "model.safetensors")    # the backbone after steps 1, 3
    last = load_file(out / "checkpoints" / "checkpoint-3" / "model.safetensors")
    assert first.keys() == last.keys()
    assert all(torch.isfinite(v).all() for v in last.values())
    changed = sum(not torch.equal(first[name], last[name]) for name in first)
    assert changed > len(first) // 2, f"only {changed} of {len(first)} tensors changed in steps 2..3"


def _same_twins(cpu, gpu) -> None:
    """Same valid patches and twins; MI to TWIN_ATOL. A twin may differ only on a tie: the CPU MI of both
    candidates equal to TWIN_ATOL, or the best MI within TWIN_ATOL of the threshold."""
    np.testing.assert_array_equal(gpu.valid, cpu.valid)
    np.testing.assert_array_equal(gpu.status, cpu.status)
    np.testing.assert_allclose(gpu.mi_matrix, cpu.mi_matrix, rtol=0, atol=TWIN_ATOL, equal_nan=True)
    np.testing.assert_allclose(gpu.mi, cpu.mi, rtol=0, atol=TWIN_ATOL, equal_nan=True)
    assert abs(gpu.threshold - cpu.threshold) < TWIN_ATOL
    for i in np.flatnonzero(gpu.twin != cpu.twin):
        a, b = cpu.twin[i], gpu.twin[i]
        tie = a >= 0 and b >= 0 and abs(cpu.mi_matrix[i, a] - cpu.mi_matrix[i, b]) < TWIN_ATOL
        at_threshold = abs(cpu.mi[i] - cpu.threshold) < TWIN_ATOL
        assert tie or at_threshold, f"patch {i}: CPU twin {a}, CUDA twin {b} (not a tie)"


def test_find_twins_on_cuda_equals_cpu(tmp_path, bikes_cyclist_clip):
    from mimcl_hub.data import make_scenes
    from mimcl_hub.mi import find_twins

    scenes = make_scenes(1, seed=3, pan=True, illumination=True, cache_dir=str(tmp_path / "cache"))
    scene = np.asarray(scenes.with_format("numpy")[0]["frames"], np.uint8)
    for frames, options in ((scene, {}), (scene, {"colour_weight": 0.5}), (bikes_cyclist_clip, {})):
        cpu = find_twins(frames, **options)
        gpu = find_twins(frames, device="cuda", **options)
        assert cpu.valid.sum() >= 2 and cpu.pairs, "the clip must have twins for the comparison to mean something"
        _same_twins(cpu, gpu)
        assert gpu.options == cpu.options and isinstance(gpu.mi_matrix, np.ndarray)
