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
* :func:`load_knn_datasets` — labelled train / test images for a monitor: ``"digits"`` (scikit-learn's
  bundled 8x8 handwritten digits, offline), a dataset saved with ``save_to_disk`` or an HF Hub
  dataset id (e.g. ``uoft-cs/cifar10``; needs the network or the local cache).
* :class:`KNNMonitor` — the online monitor the training loop calls every ``knn_every`` steps.
"""

from __future__ import annotations

import math
import os
from typing import Any, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

__all__ = [
    "KNNMonitor", "LabelledImages", "extract_features", "knn_accuracy", "knn_predict", "load_knn_datasets",
]


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
    """Top-1 / top-5 accuracy (fractions in [0, 1]) of :func:`knn_predict`; top-5 only when C > 5."""
    test_labels = torch.as_tensor(test_labels).long().reshape(-1).cpu()
    if test_labels.numel() != test_feats.shape[0]:
        raise ValueError(f"test_labels has {test_labels.numel()} entries for {test_feats.shape[0]} test features")
    if test_labels.numel() == 0:
        raise ValueError("knn_accuracy needs at least one test sample")
    if num_classes is None:
        num_classes = int(max(int(torch.as_tensor(train_labels).max()), int(test_labels.max()))) + 1
    scores = knn_predict(train_feats, train_labels, test_feats, k=k, T=T, num_classes=num_classes)
    order = scores.argsort(dim=1, descending=True)
    result = {"top1": float((order[:, 0] == test_labels).float().mean())}
    if num_classes > 5:
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
                     autocast_dtype: torch.dtype | None = None, channels_last: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled features (N, D) float32 and labels (N,) of every batch of ``dataloader``.

    The backbone runs in eval mode (BN running statistics, no dropout) and is put back in the mode it
    was in. ``device`` defaults to the backbone's; ``autocast_dtype`` (e.g. ``torch.bfloat16``) runs
    the forward under ``torch.autocast``. Pass a plain (unwrapped) module: a DDP wrapper would start
    collectives that other processes never join.
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
        for batch in dataloader:
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
# labelled image sets for the monitor
# --------------------------------------------------------------------------------------------------


class LabelledImages(Dataset):
    """(images uint8 (N, H, W, 3), labels (N,)) → normalised float (3, S, S) tensors resized to ``img_size``
    (images already at ``img_size``, as :func:`load_knn_datasets` keeps those of HF datasets, are not resized)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, img_size: int, mean: Sequence[float],
                 std: Sequence[float], num_classes: int, name: str = ""):
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"{name}: images must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)
        self.img_size = int(img_size)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        self.num_classes = int(num_classes)
        self.name = name

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = torch.from_numpy(self.images[i]).permute(2, 0, 1).float().div_(255.0)
        if x.shape[-2:] != (self.img_size, self.img_size):
            x = F.interpolate(x[None], size=(self.img_size, self.img_size), mode="bilinear", align_corners=False,
                              antialias=x.shape[-1] > self.img_size)[0]
        return (x - self.mean) / self.std, int(self.labels[i])


def _subsample(n: int, limit: int | None, seed: int) -> np.ndarray:
    if limit is None or limit <= 0 or limit >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).permutation(n)[:limit])


def _digits(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover - scikit-learn is a dependency
        raise ImportError("the 'digits' kNN set needs scikit-learn (pip install scikit-learn)") from e
    d = load_digits()
    images = np.repeat((d.images / 16.0 * 255.0).round().astype(np.uint8)[..., None], 3, axis=-1)   # (1797, 8, 8, 3)
    labels = d.target.astype(np.int64)
    perm = np.random.default_rng(seed).permutation(len(labels))
    cut = int(round(len(labels) * 0.6))
    tr, te = np.sort(perm[:cut]), np.sort(perm[cut:])
    return images[tr], labels[tr], images[te], labels[te], 10


def _columns(ds, source: str, image_column: str | None, label_column: str | None) -> tuple[str, str]:
    import datasets

    feats = ds.features
    if image_column is None:
        image_column = next((c for c, f in feats.items() if isinstance(f, datasets.Image)), None)
        image_column = image_column or next((c for c in ("image", "img", "pixel_values") if c in feats), None)
    if label_column is None:
        label_column = next((c for c, f in feats.items() if isinstance(f, datasets.ClassLabel)), None)
        label_column = label_column or next((c for c in ("label", "labels", "fine_label") if c in feats), None)
    if image_column not in feats or label_column not in feats:
        raise ValueError(f"kNN dataset {source}: cannot find the image / label columns (got {image_column!r} / "
                         f"{label_column!r}; columns are {sorted(feats)}); pass --eval_image_column / --eval_label_column")
    return image_column, label_column


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 (H, W, 3) -> (size, size, 3): area averaging when shrinking, bilinear when enlarging."""
    import cv2

    if image.shape[:2] == (size, size):
        return image
    shrink = image.shape[0] > size or image.shape[1] > size
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _images_at_size(split, column: str, rows: np.ndarray, img_size: int, what: str) -> np.ndarray:
    """uint8 (N, S, S, 3) from the image column of ``split`` (already cut to ``rows`` of the original split).

    Each image goes through the one conversion (:func:`mimcl_hub.data.images.to_uint8_rgb`), with the rule
    decided once for the dataset by the column's feature type (never by one image's values), and is resized
    on its own straight to the evaluation size as it is converted: images are decoded 64 at a time, so memory
    holds a batch of decoded images and N small ones, never N copies of the largest (issue 19, item 7)."""
    from ..data.images import image_dtype, to_uint8_rgb

    dtype = image_dtype(split.features[column])
    out = np.empty((len(split), img_size, img_size, 3), np.uint8)
    i = 0
    for batch in split.select_columns([column]).iter(batch_size=64):
        for value in batch[column]:
            image = to_uint8_rgb(value, f"kNN dataset {what}: row {int(rows[i])} of column {column!r}", dtype=dtype)
            out[i] = _resize(image, img_size)
            i += 1
    return out


def _load_splits(source: str):
    import datasets

    if os.path.isdir(source):
        ds = datasets.load_from_disk(source)
    elif os.path.exists(source) or source.startswith((".", "/", "~")):
        raise FileNotFoundError(f"kNN dataset {source!r} is not a folder saved with save_to_disk")
    else:
        ds = datasets.load_dataset(source)
    if isinstance(ds, datasets.Dataset):
        ds = datasets.DatasetDict({"train": ds})
    return ds


def load_knn_datasets(source: str = "digits", img_size: int = 32, mean: Sequence[float] = (0.5, 0.5, 0.5),
                      std: Sequence[float] = (0.5, 0.5, 0.5), max_train: int | None = None,
                      max_test: int | None = None, seed: int = 0, image_column: str | None = None,
                      label_column: str | None = None) -> tuple[LabelledImages, LabelledImages]:
    """Labelled (train, test) image sets for kNN evaluation, normalised with ``mean`` / ``std``.

    ``source``:
      * ``"digits"`` — scikit-learn's 1,797 handwritten digits (8x8, 10 classes), shipped in the
        scikit-learn wheel (no download), upsampled to ``img_size``; a fixed 60/40 split by ``seed``;
      * a folder saved with ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``;
      * an HF Hub dataset id (``uoft-cs/cifar10``, ``uoft-cs/cifar100``, ``tanganke/stl10``): splits
        ``train`` and ``test`` (or ``validation``); image / label columns are detected
        (``datasets.Image`` / ``ClassLabel`` features) or named.

    ``max_train`` / ``max_test`` draw a random subset of that size (seeded).
    """
    name = str(source)
    if source == "digits":
        tr_x, tr_y, te_x, te_y, num_classes = _digits(seed)
    else:
        ds = _load_splits(source)
        if "train" not in ds:
            raise ValueError(f"kNN dataset {source!r} has no 'train' split (splits: {sorted(ds)})")
        test_split = "test" if "test" in ds else ("validation" if "validation" in ds else None)
        train = ds["train"]
        if test_split is None:       # split the train set 80/20 (rows named by their place in 'train')
            parts = train.add_column("__row__", np.arange(len(train))).train_test_split(test_size=0.2, seed=seed)
            tr_rows, te_rows = np.asarray(parts["train"]["__row__"]), np.asarray(parts["test"]["__row__"])
            train, test = parts["train"].remove_columns("__row__"), parts["test"].remove_columns("__row__")
        else:
            test = ds[test_split]
            tr_rows, te_rows = np.arange(len(train)), np.arange(len(test))
        img_col, lab_col = _columns(train, name, image_column, label_column)
        feat = train.features[lab_col]
        tr_i = _subsample(len(train), max_train, seed)
        te_i = _subsample(len(test), max_test, seed + 1)
        train, test = train.select(tr_i), test.select(te_i)
        tr_x = _images_at_size(train, img_col, tr_rows[tr_i], img_size, f"{name} (split 'train')")
        te_x = _images_at_size(test, img_col, te_rows[te_i], img_size, f"{name} (split {test_split or 'train'!r})")
        tr_y = np.asarray(train[lab_col], dtype=np.int64)
        te_y = np.asarray(test[lab_col], dtype=np.int64)
        num_classes = int(getattr(feat, "num_classes", 0) or (max(tr_y.max(), te_y.max()) + 1))
    if source == "digits":
        tr_i, te_i = _subsample(len(tr_y), max_train, seed), _subsample(len(te_y), max_test, seed + 1)
        tr_x, tr_y, te_x, te_y = tr_x[tr_i], tr_y[tr_i], te_x[te_i], te_y[te_i]
    return (LabelledImages(tr_x, tr_y, img_size, mean, std, num_classes, f"{name}:train"),
            LabelledImages(te_x, te_y, img_size, mean, std, num_classes, f"{name}:test"))


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
        self.k, self.T = int(k), float(T)
        self.batch_size = int(batch_size)
        self.autocast_dtype = autocast_dtype
        self.channels_last = channels_last
        self.name = name
        self.num_classes = int(getattr(train_set, "num_classes", 0)) or None

    def _loader(self, ds: Dataset) -> DataLoader:
        return DataLoader(ds, batch_size=self.batch_size, shuffle=False, num_workers=0)

    def __call__(self, backbone: nn.Module, device: torch.device | str | None = None) -> dict[str, float]:
        kw = dict(device=device, autocast_dtype=self.autocast_dtype, channels_last=self.channels_last)
        tr_f, tr_y = extract_features(backbone, self._loader(self.train_set), **kw)
        te_f, te_y = extract_features(backbone, self._loader(self.test_set), **kw)
        if not (torch.isfinite(tr_f).all() and torch.isfinite(te_f).all()):
            return {"knn_top1": math.nan}
        acc = knn_accuracy(tr_f, tr_y, te_f, te_y, k=self.k, T=self.T, num_classes=self.num_classes)
        return {f"knn_{key}": value for key, value in acc.items()}
