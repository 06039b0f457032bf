"""Linear probe on frozen features: multinomial logistic regression on standardized features.

The standard self-supervised protocol (e.g. SimCLR, arXiv 2002.05709, §B.6; DINO's ``eval_linear.py``)
trains a linear classifier on frozen pooled features and reports top-1 accuracy. Here the features are
standardized with the *training* mean / std, the classifier starts at zero and is fitted full-batch with
L-BFGS (default; convex problem, deterministic) or with mini-batch Adam under a fixed seed.

:func:`linear_probe` -> top-1 accuracy (fraction in [0, 1]) on the test features.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["fit_linear_probe", "linear_probe"]


def _labels(name: str, y, n: int) -> torch.Tensor:
    y = torch.as_tensor(y).long().reshape(-1).cpu()
    if y.numel() != n:
        raise ValueError(f"{name} has {y.numel()} entries for {n} features")
    return y


def fit_linear_probe(train_feats: torch.Tensor, train_labels: torch.Tensor, num_classes: int | None = None,
                     epochs: int = 100, lr: float | None = None, weight_decay: float = 1e-4,
                     batch_size: int | None = None, optimizer: str = "lbfgs", seed: int = 0):
    """Fit ``W, b`` of ``logits = standardize(x) @ W.T + b``; returns ``(W, b, mean, std)``.

    Args:
        train_feats: (N, D) frozen features.
        train_labels: (N,) int labels in ``[0, num_classes)``.
        num_classes: classes (default ``max label + 1``).
        epochs: L-BFGS iterations (full batch), or Adam passes over the data.
        lr: step size (default 1.0 for L-BFGS with strong-Wolfe line search, 1e-2 for Adam).
        weight_decay: L2 penalty ``weight_decay / 2 * ||W||^2`` added to the mean cross-entropy.
        batch_size: Adam mini-batch size (default: full batch); ignored by L-BFGS.
        optimizer: ``"lbfgs"`` or ``"adam"``.
        seed: shuffling seed (Adam).
    """
    if not isinstance(train_feats, torch.Tensor) or train_feats.ndim != 2:
        raise ValueError(f"train_feats must be a 2-D tensor (N, D), got {getattr(train_feats, 'shape', type(train_feats).__name__)}")
    if train_feats.shape[0] == 0:
        raise ValueError("linear_probe needs at least one training sample")
    if optimizer not in ("lbfgs", "adam"):
        raise ValueError(f"optimizer must be 'lbfgs' or 'adam', got {optimizer!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    x = train_feats.detach().double().cpu()
    if not torch.isfinite(x).all():
        raise ValueError("train_feats contains NaN or inf")
    y = _labels("train_labels", train_labels, x.shape[0])
    if y.min() < 0:
        raise ValueError(f"train_labels must be >= 0, got {int(y.min())}")
    if num_classes is None:
        num_classes = int(y.max()) + 1
    elif int(y.max()) >= num_classes:
        raise ValueError(f"train_labels has label {int(y.max())} >= num_classes={num_classes}")

    mean = x.mean(0)
    std = x.std(0, unbiased=False).clamp_min(1e-6)
    x = (x - mean) / std
    W = torch.zeros(num_classes, x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)

    def loss_fn(xb, yb):
        return F.cross_entropy(xb @ W.T + b, yb) + 0.5 * weight_decay * W.pow(2).sum()

    if optimizer == "lbfgs":
        opt = torch.optim.LBFGS([W, b], lr=1.0 if lr is None else lr, max_iter=epochs, history_size=20,
                                tolerance_grad=1e-9, tolerance_change=1e-12, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = loss_fn(x, y)
            loss.backward()
            return loss

        opt.step(closure)
    else:
        opt = torch.optim.Adam([W, b], lr=1e-2 if lr is None else lr)
        g = torch.Generator().manual_seed(seed)
        bs = x.shape[0] if not batch_size else int(batch_size)
        for _ in range(epochs):
            order = torch.randperm(x.shape[0], generator=g)
            for start in range(0, x.shape[0], bs):
                idx = order[start:start + bs]
                opt.zero_grad()
                loss_fn(x[idx], y[idx]).backward()
                opt.step()
    return W.detach(), b.detach(), mean, std


def linear_probe(train_feats: torch.Tensor, train_labels: torch.Tensor, test_feats: torch.Tensor,
                 test_labels: torch.Tensor, num_classes: int | None = None, epochs: int = 100,
                 lr: float | None = None, weight_decay: float = 1e-4, batch_size: int | None = None,
                 optimizer: str = "lbfgs", seed: int = 0) -> float:
    """Top-1 accuracy (fraction in [0, 1]) of a linear classifier fitted on frozen train features.

    See :func:`fit_linear_probe` for the arguments. Deterministic: zero init, full-batch L-BFGS in float64
    (or seeded mini-batch Adam).
    """
    if not isinstance(test_feats, torch.Tensor) or test_feats.ndim != 2:
        raise ValueError(f"test_feats must be a 2-D tensor (N, D), got {getattr(test_feats, 'shape', type(test_feats).__name__)}")
    if test_feats.shape[1] != train_feats.shape[1]:
        raise ValueError(f"train_feats and test_feats differ in dimension: {train_feats.shape[1]} vs {test_feats.shape[1]}")
    y_test = _labels("test_labels", test_labels, test_feats.shape[0])
    if y_test.numel() == 0:
        raise ValueError("linear_probe needs at least one test sample")
    if num_classes is None:
        num_classes = int(max(int(torch.as_tensor(train_labels).max()), int(y_test.max()))) + 1
    if int(y_test.min()) < 0 or int(y_test.max()) >= num_classes:
        bad = int(y_test.min()) if int(y_test.min()) < 0 else int(y_test.max())
        raise ValueError(f"test_labels has label {bad} outside [0, {num_classes}) (a -1 marks an unlabelled row)")
    W, b, mean, std = fit_linear_probe(train_feats, train_labels, num_classes=num_classes, epochs=epochs, lr=lr,
                                       weight_decay=weight_decay, batch_size=batch_size, optimizer=optimizer, seed=seed)
    x = (test_feats.detach().double().cpu() - mean) / std
    pred = (x @ W.T + b).argmax(1)
    return float((pred == y_test).double().mean())
