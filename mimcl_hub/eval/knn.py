"""Weighted k-nearest-neighbour evaluation of frozen features (the DINO protocol).

Caron et al. 2021, "Emerging Properties in Self-Supervised Vision Transformers" (arXiv 2104.14294),
``eval_knn.py``; first used for self-supervised features by Wu et al. 2018 (arXiv 1805.01978):

* features are L2-normalised, similarity is the cosine ``s = f_test · f_train``;
* the ``k`` most similar training samples vote for their label with weight ``exp(s / T)``;
* the class with the largest summed weight is the prediction (top-5: the five largest).

Defaults ``k = 20``, ``T = 0.07`` are DINO's (and InstDisc's).

Pieces:

* :func:`knn_predict` — pure tensor function: class scores (N_test, C).
* :func:`knn_accuracy` — top-1 / top-5 accuracy from features.
* :func:`extract_features` — pooled backbone features of a labelled loader (eval mode, no grad).
* :func:`load_knn_datasets` — labelled train / test images for the training monitor and ``mimcl eval``
  (:mod:`mimcl_hub.eval.labelled`: the datasets it reads, and what it refuses).
* :class:`KNNMonitor` — the online monitor the training loop calls every ``knn_every`` steps.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .._progress import progress

__all__ = [
    "KNNMonitor", "LabelledImages", "extract_features", "knn_accuracy", "knn_predict", "load_knn_datasets",
]

from .labelled import LabelledImages, load_knn_datasets  # noqa: E402  (re-exported)


# --------------------------------------------------------------------------------------------------
# the classifier
# --------------------------------------------------------------------------------------------------


def _check_feats(name: str, x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 2:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a 2-D tensor (N, D), got {shape}")


@torch.no_grad()
def knn_predict(train_feats: torch.Tensor, train_labels: torch.Tensor, test_feats: torch.Tensor, k: int = 20,
                T: float = 0.07, num_classes: int | None = None, chunk_size: int = 1024,
                normalize: bool = True) -> torch.Tensor:
    """Weighted kNN class scores.

    Args:
        train_feats: (N_train, D) features of the labelled "memory bank".
        train_labels: (N_train,) int labels in ``[0, num_classes)``.
        test_feats: (N_test, D) features to classify.
        k: neighbours (clamped to N_train).
        T: temperature of the vote weights ``exp(cos / T)``.
        num_classes: number of classes (default ``train_labels.max() + 1``).
        chunk_size: test rows per similarity block (memory: chunk_size × N_train floats).
        normalize: L2-normalise both feature sets first (cosine similarity).

    Returns:
        (N_test, num_classes) float32 scores: the summed weights of each class among the k nearest
        neighbours; ``scores.argmax(1)`` is the prediction.
    """
    _check_feats("train_feats", train_feats)
    _check_feats("test_feats", test_feats)
    if train_feats.shape[1] != test_feats.shape[1]:
        raise ValueError(f"train_feats and test_feats differ in dimension: {train_feats.shape[1]} vs {test_feats.shape[1]}")
    train_labels = torch.as_tensor(train_labels).long().reshape(-1)
    if train_labels.numel() != train_feats.shape[0]:
        raise ValueError(f"train_labels has {train_labels.numel()} entries for {train_feats.shape[0]} train features")
    if train_feats.shape[0] == 0:
        raise ValueError("knn_predict needs at least one training sample")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if not T > 0:
        raise ValueError(f"temperature T must be > 0, got {T}")
    if train_labels.min() < 0:
        raise ValueError(f"train_labels must be >= 0, got min {int(train_labels.min())}")
    if num_classes is None:
        num_classes = int(train_labels.max()) + 1
    elif int(train_labels.max()) >= num_classes:
        raise ValueError(f"train_labels has label {int(train_labels.max())} >= num_classes={num_classes}")

    train = train_feats.float()
    test = test_feats.float().to(train.device)
    labels = train_labels.to(train.device)
    if normalize:
        train, test = F.normalize(train, dim=1), F.normalize(test, dim=1)
    k = min(k, train.shape[0])
    out = []
    for start in range(0, test.shape[0], chunk_size):
        sim = test[start:start + chunk_size] @ train.T                      # (n, N_train)
        top_sim, top_idx = sim.topk(k, dim=1)                                # (n, k)
        weights = (top_sim / T).exp()
        scores = torch.zeros(sim.shape[0], num_classes, device=train.device)
        scores.scatter_add_(1, labels[top_idx], weights)
        out.append(scores)
    if not out:
        return torch.zeros(0, num_classes)
    return torch.cat(out).cpu()


def knn_accuracy(train_feats: torch.Tensor, train_labels: torch.Tensor, test_feats: torch.Tensor,
                 test_labels: torch.Tensor, k: int = 20, T: float = 0.07, num_classes: int | None = None) -> dict[str, float]:
    """Top-1 / top-5 accuracy (fractions in [0, 1]) of :func:`knn_predict`; top-5 only when the train rows hold
    more than 5 classes."""
    test_labels = torch.as_tensor(test_labels).long().reshape(-1).cpu()
    if test_labels.numel() != test_feats.shape[0]:
        raise ValueError(f"test_labels has {test_labels.numel()} entries for {test_feats.shape[0]} test features")
    if test_labels.numel() == 0:
        raise ValueError("knn_accuracy needs at least one test sample")
    if num_classes is None:
        num_classes = int(max(int(torch.as_tensor(train_labels).max()), int(test_labels.max()))) + 1
    if int(test_labels.min()) < 0 or int(test_labels.max()) >= num_classes:
        bad = int(test_labels.min()) if int(test_labels.min()) < 0 else int(test_labels.max())
        raise ValueError(f"test_labels has label {bad} outside [0, {num_classes}) (a -1 marks an unlabelled row)")
    scores = knn_predict(train_feats, train_labels, test_feats, k=k, T=T, num_classes=num_classes)
    order = scores.argsort(dim=1, descending=True)
    result = {"top1": float((order[:, 0] == test_labels).float().mean())}
    # only classes with train rows get votes: with 5 or fewer of them top-5 is 1.0 whatever the features
    # (a ClassLabel naming 1000 classes of which 2 are used would otherwise report it)
    if torch.unique(torch.as_tensor(train_labels)).numel() > 5:
        result["top5"] = float((order[:, :5] == test_labels[:, None]).any(1).float().mean())
    return result


# --------------------------------------------------------------------------------------------------
# features
# --------------------------------------------------------------------------------------------------


def _split_batch(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(batch, dict):
        for key in ("pixel_values", "image", "images", "img"):
            if key in batch:
                images = batch[key]
                break
        else:
            raise ValueError(f"feature loader batch has no image key (pixel_values/image/images); keys: {sorted(batch)}")
        labels = batch.get("labels", batch.get("label"))
        if labels is None:
            raise ValueError(f"feature loader batch has no 'labels'/'label' key; keys: {sorted(batch)}")
        return images, labels
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    raise ValueError(f"feature loader must yield (images, labels) or a dict, got {type(batch).__name__}")


@torch.no_grad()
def extract_features(backbone: nn.Module, dataloader: Iterable, device: torch.device | str | None = None,
                     autocast_dtype: torch.dtype | None = None, channels_last: bool = False,
                     desc: str | None = "extracting features") -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled features (N, D) float32 and labels (N,) of every batch of ``dataloader``.

    The backbone runs in eval mode (BN running statistics, no dropout) and is put back in the mode it
    was in. ``device`` defaults to the backbone's; ``autocast_dtype`` (e.g. ``torch.bfloat16``) runs
    the forward under ``torch.autocast``. Pass a plain (unwrapped) module: a DDP wrapper would start
    collectives that other processes never join. ``desc``: label of the progress bar (or of the periodic log line
    where there are no bars, see :mod:`mimcl_hub._progress`); None: no progress shown.
    """
    was_training = backbone.training
    if device is None:
        try:
            device = next(backbone.parameters()).device
        except StopIteration:
            device = torch.device("cpu")
    device = torch.device(device)
    backbone.eval()
    feats, labels = [], []
    try:
        for batch in progress(dataloader, desc=desc or "", unit="batch", leave=False, quiet=desc is None):
            images, y = _split_batch(batch)
            images = images.to(device, non_blocking=True)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            if autocast_dtype is not None:
                with torch.autocast(device_type=device.type, dtype=autocast_dtype):
                    f = backbone(images)
            else:
                f = backbone(images)
            if not isinstance(f, torch.Tensor) or f.ndim != 2:
                raise ValueError(f"backbone returned {getattr(f, 'shape', type(f).__name__)}, expected pooled (B, D) "
                                 "features (create it with num_classes=0)")
            feats.append(f.float().cpu())
            labels.append(torch.as_tensor(y).long().reshape(-1).cpu())
    finally:
        backbone.train(was_training)
    if not feats:
        raise ValueError("extract_features: the dataloader yielded no batch")
    return torch.cat(feats), torch.cat(labels)


# --------------------------------------------------------------------------------------------------
# the online monitor
# --------------------------------------------------------------------------------------------------


class KNNMonitor:
    """kNN accuracy of a backbone on a fixed labelled set: ``monitor(backbone) -> {"knn_top1": ..., ...}``.

    Args:
        train_set, test_set: :class:`LabelledImages` (see :func:`load_knn_datasets`).
        k, T: DINO's kNN parameters.
        batch_size: feature-extraction batch size.
        autocast_dtype: run the forward under autocast (bf16 on CPU is ~2x faster).
    """

    def __init__(self, train_set: Dataset, test_set: Dataset, k: int = 20, T: float = 0.07, batch_size: int = 256,
                 autocast_dtype: torch.dtype | None = None, channels_last: bool = False, name: str = "digits"):
        self.train_set, self.test_set = train_set, test_set
        self.k, self.T = min(int(k), len(train_set)), float(T)   # knn_predict's clamp, so results record the k used
        self.batch_size = int(batch_size)
        self.autocast_dtype = autocast_dtype
        self.channels_last = channels_last
        self.name = name
        self.num_classes = int(getattr(train_set, "num_classes", 0)) or None

    def _loader(self, ds: Dataset) -> DataLoader:
        return DataLoader(ds, batch_size=self.batch_size, shuffle=False, num_workers=0)

    def __call__(self, backbone: nn.Module, device: torch.device | str | None = None) -> dict[str, float]:
        kw = dict(device=device, autocast_dtype=self.autocast_dtype, channels_last=self.channels_last)
        tr_f, tr_y = extract_features(backbone, self._loader(self.train_set), desc=f"kNN features ({self.name}, "
                                      "train)", **kw)
        te_f, te_y = extract_features(backbone, self._loader(self.test_set), desc=f"kNN features ({self.name}, "
                                      "test)", **kw)
        if not (torch.isfinite(tr_f).all() and torch.isfinite(te_f).all()):
            return {"knn_top1": math.nan}
        acc = knn_accuracy(tr_f, tr_y, te_f, te_y, k=self.k, T=self.T, num_classes=self.num_classes)
        return {f"knn_{key}": value for key, value in acc.items()}
