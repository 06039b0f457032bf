"""Thin helpers over ``torch.distributed`` for losses that need the whole (global) batch.

Every helper is the identity / a no-op when ``torch.distributed`` is not initialised or the world
has one process, so the same objective code runs in a plain script, under ``accelerate launch``
(DDP) and in tests.

Gradient convention of :func:`gather_with_grad`
-----------------------------------------------
``torch.distributed.nn.functional.all_gather`` back-propagates by *summing* the gradients every
rank computed for a chunk and handing rank r the sum for its own chunk. Two cases follow:

* a loss computed *identically on every rank* from the gathered batch (Barlow Twins, VICReg):
  rank r's local inputs receive ``W · dL/dx_r`` (W = world size);
* a loss that averages over *local anchors* with global negatives (SimCLR's NT-Xent): with
  ``L = mean_r loss_r`` rank r's inputs receive ``sum_r' d loss_r'/dx_r = W · dL/dx_r``.

DDP then *averages* parameter gradients over the W ranks, so in both cases the parameters get
exactly ``dL/dθ`` of the single-process loss on the concatenated batch. The per-rank batches must
have the same size (``all_gather`` requirement; use ``drop_last`` / Accelerate's ``even_batches``).
"""

from __future__ import annotations

import warnings

import torch
import torch.distributed as dist

__all__ = ["is_distributed", "world_size", "rank", "gather_with_grad", "gather", "all_reduce_sum"]


def is_distributed() -> bool:
    """True when ``torch.distributed`` is initialised with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of processes (1 when ``torch.distributed`` is not initialised)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process' rank (0 when ``torch.distributed`` is not initialised)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Differentiable all-gather along dim 0: (n, ...) on each rank → (W·n, ...) in rank order.

    Identity when not distributed. See the module docstring for the gradient scaling convention.
    """
    if not is_distributed():
        return x
    from torch.distributed.nn.functional import all_gather

    # recent torch releases flag this public op as deprecated in favour of private functional
    # collectives; it still works (and is what DDP recipes use), so keep the log quiet.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*all_gather is deprecated.*", category=FutureWarning)
        return torch.cat(all_gather(x.contiguous()), dim=0)


@torch.no_grad()
def gather(x: torch.Tensor) -> torch.Tensor:
    """Non-differentiable all-gather along dim 0 (e.g. MoCo keys before they enter the queue)."""
    if not is_distributed():
        return x
    x = x.contiguous()
    out = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(out, x)
    return torch.cat(out, dim=0)


@torch.no_grad()
def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """In-place sum over ranks (no-op when not distributed); returns ``x``."""
    if is_distributed():
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x
