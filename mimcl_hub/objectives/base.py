"""Objective base classes, the momentum (EMA target) machinery and the objective registry.

An :class:`Objective` is an ``nn.Module`` that owns everything a self-supervised objective needs
*besides* the backbone: projection / prediction heads, momentum targets, queues, centres. So
``objective.state_dict()`` is the full objective state for checkpoints (safetensors-safe: no
shared tensors), and an optimizer over ``backbone.parameters()`` plus
``[p for p in objective.parameters() if p.requires_grad]`` trains everything.

Call protocol (one optimizer step)::

    out = objective(backbone, x1, x2)          # ObjectiveOutput(loss, logs)
    accelerator.backward(out.loss); optimizer.step(); optimizer.zero_grad()
    objective.on_step_end(step, max_steps, backbone)   # EMA / schedules / centre; step = steps done

Distributed training (Accelerate / DDP):

* heads use plain ``BatchNorm1d``; convert with ``nn.SyncBatchNorm.convert_sync_batchnorm`` (or
  Accelerate's ``sync_bn``) in the training loop if global BN statistics are wanted;
* losses that need the global batch gather it themselves (``gather_distributed=True``, default);
  per-rank batches must have equal size;
* momentum objectives keep an EMA copy of the backbone (``target_backbone``). Create it *before*
  ``accelerator.prepare`` with ``objective.build_targets(backbone)`` so that the wrapped module is
  complete; otherwise it is created lazily (``copy.deepcopy``) on the first forward. Both
  ``build_targets`` and ``on_step_end`` unwrap DDP / ``torch.compile`` wrappers of ``backbone``
  (``accelerate.utils.extract_model_from_parallel``) so the copy and the EMA see the plain model.
  FSDP-sharded backbones are not supported by the EMA (use DDP).
* Loading a checkpoint into a fresh objective whose target has not been built yet keeps the
  target weights pending and applies them when the target is built, so ``load_state_dict``
  (strict) works before the first forward.
"""

from __future__ import annotations

import copy
import functools
import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import torch
from torch import nn

__all__ = [
    "ObjectiveOutput", "Objective", "MomentumObjective", "OBJECTIVES", "register_objective",
    "build_objective", "unwrap_model", "cosine_schedule", "MAX_OBJECTIVE_ELEMENTS", "RELEASED_WEIGHTS",
]

#: Which network's backbone a trained encoder releases (``Objective.released``), and why: the network each
#: objective's paper evaluates (linear probe / kNN on frozen features).
RELEASED_WEIGHTS: dict[str, str] = {
    "teacher": "the momentum teacher's backbone (the EMA of the student), the network DINO evaluates",
    "online": "the online network's backbone (not its EMA target), the network BYOL evaluates",
    "query": "the query encoder's backbone (not the momentum key encoder), the network MoCo evaluates",
    "shared": "the one backbone both views go through (the objective keeps no other copy of it)",
}


@dataclass
class ObjectiveOutput:
    """What an objective returns: a scalar ``loss`` tensor (with graph) and ``logs``, detached 0-d tensors.

    Logs stay tensors (on the loss's device) so a step never waits for the device: the training loop
    sums them on the device and reads them on the host only at logging steps."""

    loss: torch.Tensor
    logs: dict[str, torch.Tensor] = field(default_factory=dict)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module inside DDP / DataParallel / ``torch.compile`` / DeepSpeed wrappers."""
    if hasattr(model, "module") or hasattr(model, "_orig_mod"):
        from accelerate.utils import extract_model_from_parallel

        try:
            return extract_model_from_parallel(model, keep_torch_compile=False)
        except TypeError:           # accelerate < 1.3 has no keep_torch_compile (and always unwraps it)
            return extract_model_from_parallel(model)
    return model


def cosine_schedule(step: int, max_steps: int, start: float, end: float) -> float:
    """``end − (end − start)·(cos(π·step/max_steps) + 1)/2``: ``start`` at 0, ``end`` at max_steps
    (BYOL's momentum schedule, arXiv 2006.07733 §3.2); clamped outside [0, max_steps]."""
    if max_steps <= 0:
        return float(end)
    t = min(max(step / max_steps, 0.0), 1.0)
    return float(end - (end - start) * (math.cos(math.pi * t) + 1) / 2)


class Objective(nn.Module):
    """Base class. Subclasses implement :meth:`forward` and optionally :meth:`on_step_end`.

    Args:
        feature_dim: the backbone's ``num_features`` (size of its pooled output).
        gather_distributed: gather embeddings over processes for negatives / batch statistics
            when ``torch.distributed`` runs with more than one process (no-op otherwise). Used by
            SimCLR, NNCLR, Barlow Twins and VICReg; accepted (for uniform configs) but without
            effect in BYOL / SimSiam (no cross-sample terms); MoCo always gathers the keys it
            enqueues and DINO always all-reduces its centre, as that state must stay identical on
            every rank.

    Attributes:
        name: registry name (set by :func:`register_objective`).
        min_batch: smallest per-view batch the objective accepts (BN heads / batch statistics).
        released: which network a trained encoder releases, a key of :data:`RELEASED_WEIGHTS` (``"shared"`` here;
            ``"online"`` for BYOL, ``"query"`` for MoCo, ``"teacher"`` for DINO); :meth:`released_backbone` gives it.
        config: the constructor arguments, so ``build_objective(obj.name, **obj.config)`` rebuilds it.
    """

    name: ClassVar[str] = ""
    min_batch: ClassVar[int] = 2
    released: ClassVar[str] = "shared"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            init = cls.__dict__["__init__"]
            sig = inspect.signature(init)

            @functools.wraps(init)
            def wrapped(self, *args, **kw):
                init(self, *args, **kw)
                if type(self).__init__ is wrapped:     # record the most-derived constructor's args
                    bound = sig.bind(self, *args, **kw)
                    bound.apply_defaults()
                    self.config = {k: v for k, v in bound.arguments.items() if k != "self"}

            cls.__init__ = wrapped

    def __init__(self, feature_dim: int, gather_distributed: bool = True):
        super().__init__()
        if isinstance(feature_dim, bool) or not isinstance(feature_dim, int) or feature_dim < 1:
            raise ValueError(f"feature_dim must be a positive int (the backbone's num_features), got {feature_dim!r}")
        self.feature_dim = feature_dim
        self.gather_distributed = bool(gather_distributed)
        self.config: dict[str, Any] = {"feature_dim": feature_dim}

    # ------------------------------------------------------------------ interface
    def forward(self, backbone: nn.Module, x1: torch.Tensor, x2: torch.Tensor) -> ObjectiveOutput:  # pragma: no cover
        raise NotImplementedError

    def on_step_end(self, step: int, max_steps: int, backbone: nn.Module | None = None) -> None:
        """Called once after each optimizer step; ``step`` = optimizer steps done (1..max_steps)."""

    def released_backbone(self, backbone: nn.Module) -> nn.Module:
        """The backbone whose weights a trained encoder releases (:attr:`released`): the trained (online / query /
        only) ``backbone`` itself, unwrapped; DINO overrides it with its teacher."""
        return unwrap_model(backbone)

    # ------------------------------------------------------------------ helpers
    def check_views(self, x1: torch.Tensor, x2: torch.Tensor) -> None:
        """Two image batches (B, C, H, W) with the same B ≥ ``min_batch`` and C (H, W may differ)."""
        for name, x in (("x1", x1), ("x2", x2)):
            if not isinstance(x, torch.Tensor):
                raise ValueError(f"{type(self).__name__}: {name} must be a torch.Tensor, got {type(x).__name__}")
            if x.ndim != 4:
                raise ValueError(f"{type(self).__name__}: {name} must be an image batch (B, C, H, W), "
                                 f"got shape {tuple(x.shape)}")
        if x1.shape[0] != x2.shape[0]:
            raise ValueError(f"{type(self).__name__}: the two views must have the same batch size, "
                             f"got {x1.shape[0]} and {x2.shape[0]}")
        if x1.shape[1] != x2.shape[1]:
            raise ValueError(f"{type(self).__name__}: the two views must have the same channels, "
                             f"got {x1.shape[1]} and {x2.shape[1]}")
        if x1.shape[0] < self.min_batch:
            raise ValueError(f"{type(self).__name__} needs a batch of at least {self.min_batch} images per view, "
                             f"got {x1.shape[0]}")

    def _features(self, backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
        f = backbone(x)
        if not isinstance(f, torch.Tensor) or f.ndim != 2 or f.shape[1] != self.feature_dim:
            shape = tuple(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__
            raise ValueError(f"{type(self).__name__}: backbone returned {shape}, expected pooled features "
                             f"(B, {self.feature_dim}); create it with num_classes=0 and pass "
                             f"feature_dim=backbone.num_features")
        return f

    def encode(self, backbone: nn.Module, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Backbone features of both views; one forward over the concatenated batch when the
        shapes match (shared BN statistics, one DDP forward), two otherwise."""
        self.check_views(x1, x2)
        if x1.shape == x2.shape:
            f = self._features(backbone, torch.cat([x1, x2], dim=0))
            return f.chunk(2, dim=0)
        return self._features(backbone, x1), self._features(backbone, x2)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.config.items())


def _ema_(target: nn.Module, online: nn.Module, tau: float) -> None:
    """target ← τ·target + (1 − τ)·online for parameters; buffers (BN statistics) are copied."""
    t_params, o_params = list(target.parameters()), list(online.parameters())
    t_bufs, o_bufs = list(target.buffers()), list(online.buffers())
    if len(t_params) != len(o_params) or len(t_bufs) != len(o_bufs) or any(
            a.shape != b.shape for a, b in zip(t_params + t_bufs, o_params + o_bufs)):
        raise ValueError("momentum update: the online module does not match its target copy "
                         f"({type(online).__name__} vs {type(target).__name__}); was another backbone passed?")
    for t, o in zip(t_params, o_params):
        t.lerp_(o.detach().to(t.dtype), 1.0 - tau)
    for t, o in zip(t_bufs, o_bufs):
        t.copy_(o)


class MomentumObjective(Objective):
    """Objective with an EMA target network: backbone copy + copies of selected heads.

    Subclasses create their online heads, then call :meth:`_make_target_head` for each head that
    has a target, and use :meth:`target_encode` for the target features.

    Args:
        momentum_base, momentum_final: EMA coefficient τ follows :func:`cosine_schedule` from
            ``momentum_base`` (step 0) to ``momentum_final`` (last step); 0 ≤ base ≤ final ≤ 1.
    """

    def __init__(self, feature_dim: int, momentum_base: float, momentum_final: float,
                 gather_distributed: bool = True):
        super().__init__(feature_dim, gather_distributed)
        if not (0.0 <= momentum_base <= momentum_final <= 1.0):
            raise ValueError(f"need 0 <= momentum_base <= momentum_final <= 1, got {momentum_base}, {momentum_final}")
        self.momentum_base, self.momentum_final = float(momentum_base), float(momentum_final)
        self.register_module("target_backbone", None)
        self.register_buffer("momentum", torch.tensor(float(momentum_base)))   # last τ used (logged, checkpointed)
        self._target_pairs: list[tuple[str, str]] = []                       # (online head, target head) names
        self._pending_target_state: dict[str, torch.Tensor] | None = None

    def _make_target_head(self, online_name: str, target_name: str) -> None:
        target = copy.deepcopy(getattr(self, online_name))
        target.requires_grad_(False)
        self.add_module(target_name, target)
        self._target_pairs.append((online_name, target_name))

    @property
    def has_targets(self) -> bool:
        return self.target_backbone is not None

    @torch.no_grad()
    def build_targets(self, backbone: nn.Module) -> None:
        """Create ``target_backbone`` as a frozen deep copy of the (unwrapped) online backbone;
        no-op when it exists. Applies target weights pending from ``load_state_dict``."""
        if self.target_backbone is not None:
            return
        target = copy.deepcopy(unwrap_model(backbone))
        target.requires_grad_(False)
        for p in target.parameters():
            p.grad = None
        target.train(self.training)
        if self._pending_target_state is not None:
            target.load_state_dict(self._pending_target_state)
            self._pending_target_state = None
        self.target_backbone = target

    @torch.no_grad()
    def target_encode(self, backbone: nn.Module, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Target-backbone features of both views (no grad); builds the target if needed."""
        self.build_targets(backbone)
        return self.encode(self.target_backbone, x1, x2)

    def momentum_at(self, step: int, max_steps: int) -> float:
        return cosine_schedule(step, max_steps, self.momentum_base, self.momentum_final)

    @torch.no_grad()
    def on_step_end(self, step: int, max_steps: int, backbone: nn.Module | None = None) -> None:
        """EMA update of the target backbone and heads with τ = ``momentum_at(step, max_steps)``."""
        if backbone is None:
            raise ValueError(f"{type(self).__name__}.on_step_end needs the online backbone for the EMA update")
        self.build_targets(backbone)
        tau = self.momentum_at(step, max_steps)
        self.momentum.fill_(tau)
        _ema_(self.target_backbone, unwrap_model(backbone), tau)
        for online_name, target_name in self._target_pairs:
            _ema_(getattr(self, target_name), getattr(self, online_name), tau)

    # -- checkpoints before the target exists -------------------------------------------
    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        if self.target_backbone is None:
            tp = prefix + "target_backbone."
            pending = {k[len(tp):]: state_dict.pop(k) for k in list(state_dict) if k.startswith(tp)}
            if pending:
                self._pending_target_state = pending
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        if self.target_backbone is None and self._pending_target_state:
            for k, v in self._pending_target_state.items():
                destination[prefix + "target_backbone." + k] = v


# ---------------------------------------------------------------------------- registry

OBJECTIVES: dict[str, type[Objective]] = {}


def register_objective(name: str) -> Callable[[type[Objective]], type[Objective]]:
    """Class decorator: ``OBJECTIVES[name] = cls`` and ``cls.name = name``."""

    def deco(cls: type[Objective]) -> type[Objective]:
        if not (isinstance(cls, type) and issubclass(cls, Objective)):
            raise TypeError(f"register_objective({name!r}) expects an Objective subclass, got {cls!r}")
        if name in OBJECTIVES and OBJECTIVES[name] is not cls:
            raise ValueError(f"objective {name!r} is already registered to {OBJECTIVES[name].__name__}")
        cls.name = name
        OBJECTIVES[name] = cls
        return cls

    return deco


#: Largest objective state (parameters + buffers of heads, queues, centres; the EMA copy of the backbone is not
#: counted) :func:`build_objective` builds: 2**31 elements, 8 GiB in float32 — about 100x the largest paper setting
#: (DINO's 65 536 prototypes). Wider heads or longer queues are refused before anything is allocated.
MAX_OBJECTIVE_ELEMENTS = 2**31


def _check_arguments(name: str, params: dict[str, inspect.Parameter], kwargs: dict[str, Any]) -> None:
    """Each keyword of ``kwargs`` against its constructor annotation: ``int`` sizes >= 1, finite ``float`` values,
    real ``bool`` flags (JSON ``"no"`` is not False). ValueError naming the objective and the argument."""
    from .._safety import check_number

    for key, value in kwargs.items():
        kind = params[key].annotation
        what = f"objective {name!r}: {key}"
        if kind is bool and not isinstance(value, bool):
            raise ValueError(f"{what} must be true or false, got {value!r}")
        if kind is int:
            check_number(what, value, 1, None, integer=True)
        elif kind is float:
            check_number(what, value)


def build_objective(name: str, feature_dim: int, **kwargs: Any) -> Objective:
    """Build a registered objective: ``build_objective("simclr", feature_dim=512, temperature=0.2)``.

    Every keyword is checked against the constructor's annotation first (int sizes >= 1, finite floats, real
    bools), then the objective is built on the ``meta`` device and refused when its state would exceed
    :data:`MAX_OBJECTIVE_ELEMENTS`; only then is it built for real.

    Raises:
        ValueError: unknown ``name`` (the message lists the valid names), a bad value (named), or a state too large.
        TypeError: a keyword the objective does not take (the message lists the valid ones).
    """
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; valid names: {', '.join(sorted(OBJECTIVES))}")
    cls = OBJECTIVES[name]
    params = inspect.signature(cls.__init__, eval_str=True).parameters
    valid = [p for p in params if p not in ("self", "feature_dim")
             and params[p].kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)]
    bad = sorted(set(kwargs) - set(valid))
    if bad:
        raise TypeError(f"objective {name!r} got unexpected keyword argument(s) {bad}; "
                        f"valid: {', '.join(valid)}")
    _check_arguments(name, params, kwargs)
    try:
        with torch.device("meta"):
            probe = cls(feature_dim, **kwargs)
    except ValueError as e:          # the constructor's own range checks (temperature > 0, momenta, ...)
        raise ValueError(f"objective {name!r}: {e}") from e
    elements = sum(t.numel() for t in (*probe.parameters(), *probe.buffers()))
    if elements > MAX_OBJECTIVE_ELEMENTS:
        raise ValueError(f"objective {name!r} with {kwargs} and feature_dim={feature_dim} would hold {elements:,} "
                         f"parameters and buffers, more than {MAX_OBJECTIVE_ELEMENTS:,} "
                         f"({MAX_OBJECTIVE_ELEMENTS * 4 / 2**30:.0f} GiB in float32); refused before allocating it")
    return cls(feature_dim, **kwargs)
