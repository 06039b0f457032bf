"""The InfoAug dual-branch objective (Chen & Yang, "Mutual Information guided Visual Contrastive
Learning", arXiv 2511.00028; DESIGN.md, method item 7).

* **View branch** — two augmented views of an image, any registered objective with its own heads h.
* **MI branch** — the crops of a patch and its *twin* (the partner whose motion / colour trajectory
  shares the most mutual information with it; possibly from another frame), any registered
  objective with its own, separate heads g, on the *same* backbone.

    loss = L_view + λ · L_mi

``twin_mode`` records which twins the data pipeline feeds — the module does not pick pairs:

* ``"mi"``     — MI-best partners (the method);
* ``"random"`` — a random *valid* partner instead of the MI-best (the paper's ablation); the
  branch is computed exactly like ``"mi"``, only the pairs differ;
* ``"none"``   — the plain baseline: no MI branch (as is λ = 0).

Twin crops are (B_t, C, h, w) batches of any size the backbone accepts (resizing is the data
pipeline's job); B_t need not equal the view batch size. When a batch has no usable twins
(``twins=None`` or B_t below the MI objective's ``min_batch``) the MI term is 0 for that step and
the MI heads are kept in the graph with a zero-weighted term, so DDP sees the same parameters on
every rank (no "unused parameter" hang).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..mi.twins import TWIN_MODES
from .base import Objective, ObjectiveOutput, build_objective

__all__ = ["InfoAug", "TWIN_MODES", "build_infoaug"]


def _check_pair_arg(name: str, pair) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(pair, (tuple, list)) or len(pair) != 2 or not all(isinstance(t, torch.Tensor) for t in pair):
        raise ValueError(f"{name} must be a pair (tuple of two tensors (B, C, H, W)), got {type(pair).__name__}"
                         + (f" of length {len(pair)}" if isinstance(pair, (tuple, list)) else ""))
    return pair[0], pair[1]


class InfoAug(nn.Module):
    """Dual-branch objective ``L_view + mi_weight · L_mi``.

    Args:
        view_objective: objective of the view branch (its heads = h).
        mi_objective: objective of the MI branch (a separate instance: heads g); ``None`` when
            the branch is off.
        mi_weight: λ ≥ 0; 0 disables the MI branch.
        twin_mode: ``"mi"``, ``"random"`` or ``"none"`` (see module docstring).

    Raises:
        ValueError: bad ``twin_mode`` / ``mi_weight``, or an active MI branch without an objective.
    """

    def __init__(self, view_objective: Objective, mi_objective: Objective | None = None, mi_weight: float = 1.0,
                 twin_mode: str = "mi"):
        super().__init__()
        if twin_mode not in TWIN_MODES:
            raise ValueError(f"twin_mode must be one of {TWIN_MODES}, got {twin_mode!r}")
        if not isinstance(view_objective, Objective):
            raise ValueError(f"view_objective must be an Objective, got {type(view_objective).__name__}")
        if mi_objective is not None and not isinstance(mi_objective, Objective):
            raise ValueError(f"mi_objective must be an Objective or None, got {type(mi_objective).__name__}")
        if mi_objective is not None and mi_objective is view_objective:
            raise ValueError("mi_objective must be a separate instance (its own heads), not view_objective")
        mi_weight = float(mi_weight)
        if not math.isfinite(mi_weight) or mi_weight < 0:
            raise ValueError(f"mi_weight must be a finite number >= 0, got {mi_weight}")
        if twin_mode != "none" and mi_weight > 0 and mi_objective is None:
            raise ValueError(f"twin_mode={twin_mode!r} with mi_weight={mi_weight} needs an mi_objective "
                             "(or use twin_mode='none' / mi_weight=0 for the baseline)")
        self.view_objective = view_objective
        self.mi_objective = mi_objective
        self.mi_weight = mi_weight
        self.twin_mode = twin_mode

    @property
    def uses_mi_branch(self) -> bool:
        """True when the MI branch contributes (twin_mode ≠ "none", λ > 0, an MI objective)."""
        return self.twin_mode != "none" and self.mi_weight > 0 and self.mi_objective is not None

    def forward(self, backbone: nn.Module, views: tuple[torch.Tensor, torch.Tensor],
                twins: tuple[torch.Tensor, torch.Tensor] | None = None) -> ObjectiveOutput:
        """Loss of one batch. Logs (detached 0-d tensors, never read to the host here) ``loss``,
        ``loss_view``, ``loss_mi``, ``mi_skipped`` and each branch's own logs prefixed ``view/`` and ``mi/``."""
        x1, x2 = _check_pair_arg("views", views)
        out_v = self.view_objective(backbone, x1, x2)
        loss = out_v.loss
        logs: dict[str, torch.Tensor] = {f"view/{k}": v for k, v in out_v.logs.items()}
        loss_mi = torch.zeros((), device=loss.device)
        if self.uses_mi_branch:
            usable = False
            if twins is not None:
                t1, t2 = _check_pair_arg("twins", twins)
                too_few = (t1.ndim == 4 and t2.ndim == 4 and t1.shape[0] == t2.shape[0]
                           and t1.shape[0] < self.mi_objective.min_batch)
                usable = not too_few        # malformed twins go on and raise the objective's clear error
            if usable:
                out_m = self.mi_objective(backbone, t1, t2)
                loss = loss + self.mi_weight * out_m.loss
                loss_mi = out_m.loss.detach()
                logs.update({f"mi/{k}": v for k, v in out_m.logs.items()})
            else:   # keep the MI heads in the graph (zero gradient) so DDP stays in step
                params = [p for p in self.mi_objective.parameters() if p.requires_grad]
                if params:
                    loss = loss + 0.0 * sum(p.sum() for p in params)
            logs["mi_skipped"] = torch.tensor(0.0 if usable else 1.0)
        logs.update({"loss": loss.detach(), "loss_view": out_v.loss.detach(), "loss_mi": loss_mi})
        return ObjectiveOutput(loss, logs)

    def on_step_end(self, step: int, max_steps: int, backbone: nn.Module | None = None) -> None:
        """Forward to both branches (EMA targets, schedules, centres)."""
        self.view_objective.on_step_end(step, max_steps, backbone)
        if self.mi_objective is not None:
            self.mi_objective.on_step_end(step, max_steps, backbone)

    @property
    def released(self) -> str:
        """Which network the trained encoder releases: the view objective's (``Objective.released``)."""
        return self.view_objective.released

    def released_backbone(self, backbone: nn.Module) -> nn.Module:
        """The backbone to release (and to monitor): the view objective's choice (DINO: its teacher; the others:
        ``backbone``). With DINO in both branches both teachers are EMAs of the same student; the view branch's is
        released."""
        return self.view_objective.released_backbone(backbone)

    def build_targets(self, backbone: nn.Module) -> None:
        """Create the momentum targets of both branches now (call before ``accelerator.prepare``)."""
        for obj in (self.view_objective, self.mi_objective):
            if obj is not None and hasattr(obj, "build_targets"):
                obj.build_targets(backbone)

    @property
    def config(self) -> dict[str, Any]:
        return {"view": self.view_objective.name, "view_kwargs": dict(self.view_objective.config),
                "mi": self.mi_objective.name if self.mi_objective is not None else None,
                "mi_kwargs": dict(self.mi_objective.config) if self.mi_objective is not None else None,
                "mi_weight": self.mi_weight, "twin_mode": self.twin_mode}

    def extra_repr(self) -> str:
        return f"twin_mode={self.twin_mode!r}, mi_weight={self.mi_weight}"


def build_infoaug(view: str = "simclr", mi: str | None = "simclr", *, feature_dim: int, mi_weight: float = 1.0,
                  twin_mode: str = "mi", view_kwargs: dict[str, Any] | None = None,
                  mi_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> InfoAug:
    """Build an :class:`InfoAug` from registry names.

    ``kwargs`` go to both objectives, ``view_kwargs`` / ``mi_kwargs`` to one (and override).
    With ``twin_mode="none"``, ``mi_weight == 0`` or ``mi=None`` no MI objective is created (the
    baseline carries no unused MI heads). Note: two momentum objectives (e.g. BYOL + BYOL) keep
    two EMA copies of the backbone.
    """
    if twin_mode not in TWIN_MODES:
        raise ValueError(f"twin_mode must be one of {TWIN_MODES}, got {twin_mode!r}")
    view_obj = build_objective(view, feature_dim, **{**kwargs, **(view_kwargs or {})})
    mi_obj = None
    if twin_mode != "none" and float(mi_weight) > 0 and mi is not None:
        mi_obj = build_objective(mi, feature_dim, **{**kwargs, **(mi_kwargs or {})})
    return InfoAug(view_obj, mi_obj, mi_weight=mi_weight, twin_mode=twin_mode)
