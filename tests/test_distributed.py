"""Two-process (gloo, CPU) checks of the gathered losses against the single-process loss.

Scaling convention (see ``mimcl_hub.objectives.distributed``): ``gather_with_grad`` back-propagates
by summing every rank's gradient for a chunk, so rank r's inputs receive ``W · dL/dx_r`` where L is
the single-process loss on the concatenated batch — for Barlow Twins / VICReg (the same L on every
rank) and for NT-Xent (rank losses over local anchors whose mean over ranks is L). DDP averages
parameter gradients over the W ranks, which turns this back into exactly ``dL/dθ``.
"""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from mimcl_hub.objectives import distributed, losses

WORLD = 2
N_LOCAL, DIM = 4, 5

WORKER = textwrap.dedent(r"""
    import sys, torch, torch.distributed as dist
    torch.set_num_threads(1)
    out_dir, rank, world, n, dim = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    dist.init_process_group("gloo", init_method=f"file://{out_dir}/rendezvous", rank=rank, world_size=world)
    from mimcl_hub.objectives import distributed as D, losses as L
    from mimcl_hub.objectives import MoCo, DINO
    from mimcl_hub.objectives.infoaug import InfoAug

    g = torch.Generator().manual_seed(0)
    g1 = torch.randn(world * n, dim, generator=g, dtype=torch.float64)
    g2 = torch.randn(world * n, dim, generator=g, dtype=torch.float64)
    sl = slice(rank * n, rank * n + n)
    res = {"rank": D.rank(), "world": D.world_size(), "is_distributed": D.is_distributed()}

    def run(name, fn):
        z1 = g1[sl].clone().requires_grad_(True)
        z2 = g2[sl].clone().requires_grad_(True)
        loss = fn(z1, z2)
        loss.backward()
        res[name] = (loss.detach(), z1.grad, z2.grad)

    run("info_nce", lambda a, b: L.info_nce(a, b, 0.3, z1_all=D.gather_with_grad(a), z2_all=D.gather_with_grad(b), rank=rank))
    run("barlow_twins", lambda a, b: L.barlow_twins(D.gather_with_grad(a), D.gather_with_grad(b), lambd=0.1))
    run("vicreg", lambda a, b: L.vicreg(D.gather_with_grad(a), D.gather_with_grad(b)))

    # MoCo: keys of all ranks enter the queue, so the queue stays identical everywhere (its random
    # initial content is made identical by seeding here, by DDP's initial broadcast in training)
    torch.manual_seed(0)
    moco = MoCo(8, hidden_dim=8, out_dim=3, queue_size=16)
    keys = torch.full((2, 3), float(rank + 1))
    moco._enqueue(keys)
    res["queue"] = moco.queue.clone()
    res["queue_ptr"] = int(moco.queue_ptr)

    # DINO: the centre uses the teacher-logit mean over all ranks
    dino = DINO(8, out_dim=3, hidden_dim=8, bottleneck_dim=4, center_momentum=0.5)
    dino._center_sum = torch.full((1, 3), 2.0 * (rank + 1))   # 2 samples per rank with value rank+1
    dino._center_count = 2
    dino.update_center()
    res["center"] = dino.center.clone()
    torch.save(res, f"{out_dir}/rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()
""")


@pytest.fixture(scope="module")
def two_rank_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    script = out / "worker.py"
    script.write_text(WORKER)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    procs = [subprocess.Popen([sys.executable, str(script), str(out), str(r), str(WORLD), str(N_LOCAL), str(DIM)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for r in range(WORLD)]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=120)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, log in zip(procs, logs):
        assert p.returncode == 0, f"worker failed:\n{log}"
    return [torch.load(out / f"rank{r}.pt") for r in range(WORLD)]


def _global_inputs():
    g = torch.Generator().manual_seed(0)
    g1 = torch.randn(WORLD * N_LOCAL, DIM, generator=g, dtype=torch.float64)
    g2 = torch.randn(WORLD * N_LOCAL, DIM, generator=g, dtype=torch.float64)
    return g1, g2


def _single_process(fn):
    g1, g2 = _global_inputs()
    z1, z2 = g1.clone().requires_grad_(True), g2.clone().requires_grad_(True)
    loss = fn(z1, z2)
    loss.backward()
    return loss.detach(), z1.grad, z2.grad


SINGLE = {
    "info_nce": lambda a, b: losses.info_nce(a, b, 0.3),
    "barlow_twins": lambda a, b: losses.barlow_twins(a, b, lambd=0.1),
    "vicreg": lambda a, b: losses.vicreg(a, b),
}


def test_helpers_report_the_process_group(two_rank_results):
    for r, res in enumerate(two_rank_results):
        assert res["rank"] == r and res["world"] == WORLD and res["is_distributed"]


def test_helpers_are_identity_without_process_group():
    x = torch.randn(3, 2, requires_grad=True)
    assert distributed.world_size() == 1 and distributed.rank() == 0 and not distributed.is_distributed()
    assert distributed.gather_with_grad(x) is x
    assert torch.equal(distributed.gather(x), x)
    y = torch.ones(2)
    assert torch.equal(distributed.all_reduce_sum(y), torch.ones(2))


@pytest.mark.parametrize("name", ["info_nce", "barlow_twins", "vicreg"])
def test_gathered_loss_equals_single_process_loss(two_rank_results, name):
    loss, g1, g2 = _single_process(SINGLE[name])
    rank_losses = torch.stack([res[name][0] for res in two_rank_results])
    if name == "info_nce":      # local anchors: the mean over ranks is the global loss
        torch.testing.assert_close(rank_losses.mean(), loss)
    else:                       # global statistics: the same loss on every rank
        for rl in rank_losses:
            torch.testing.assert_close(rl, loss)
    for r, res in enumerate(two_rank_results):
        sl = slice(r * N_LOCAL, (r + 1) * N_LOCAL)
        _, gr1, gr2 = res[name]
        # rank r's inputs get W * dL/dx_r; DDP's average over ranks makes it dL/dθ exactly
        torch.testing.assert_close(gr1, WORLD * g1[sl])
        torch.testing.assert_close(gr2, WORLD * g2[sl])


def test_moco_queue_is_filled_with_all_ranks_keys(two_rank_results):
    q0, q1 = two_rank_results[0]["queue"], two_rank_results[1]["queue"]
    torch.testing.assert_close(q0, q1)
    unit = torch.full((3,), 1 / 3 ** 0.5)
    for row in range(4):   # 2 keys from rank 0 then 2 from rank 1, all normalised to the same unit vector
        torch.testing.assert_close(q0[row], unit)
    assert two_rank_results[0]["queue_ptr"] == 4


def test_dino_center_uses_all_ranks(two_rank_results):
    # mean teacher logit over the 4 samples = (1 + 1 + 2 + 2) / 4 = 1.5; m = 0.5 from a zero centre
    for res in two_rank_results:
        torch.testing.assert_close(res["center"], torch.full((1, 3), 0.75))
