"""Labelled image sets for kNN / linear evaluation: ``load_knn_datasets`` and :class:`LabelledImages`.

The training monitor and ``mimcl eval`` read a labelled dataset here: ``"digits"`` (scikit-learn's bundled 8x8
handwritten digits, offline), or a source the package's one resolver (:mod:`mimcl_hub.data.resolve`) reads — a
``save_to_disk`` folder, an imagefolder / Parquet folder, an HF Hub dataset id such as ``uoft-cs/cifar10``. Every
split is validated before any image is decoded (labels, classes, columns): a dataset that cannot give an honest
accuracy is refused with a ``ValueError`` naming the dataset, the split and the column, never evaluated to a wrong
number. Images go through the package's one conversion (:func:`mimcl_hub.data.images.to_uint8_rgb`, decided by the
column's feature type) and are resized one by one to the evaluation size.
"""

from __future__ import annotations

import json
import os
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

__all__ = ["LabelledImages", "SOURCES_HINT", "TEST_SPLITS", "load_knn_datasets"]




class LabelledImages(Dataset):
    """(images uint8 (N, H, W, 3), labels (N,) class ids) → normalised float (3, S, S) tensors resized to
    ``img_size`` (images already at ``img_size``, as :func:`load_knn_datasets` keeps those of HF datasets, are not
    resized). ``class_names[i]`` names class id ``i`` (default ``"0" .. "C-1"``)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, img_size: int, mean: Sequence[float],
                 std: Sequence[float], num_classes: int, name: str = "", class_names: Sequence[str] | None = None):
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
        self.class_names = list(class_names) if class_names is not None else [str(c) for c in range(self.num_classes)]

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


#: What a kNN dataset may be, said in every error about the source.
SOURCES_HINT = ("use 'digits' (offline), a folder (saved with save_to_disk, an imagefolder or a Parquet folder) or an "
                "HF dataset id such as uoft-cs/cifar10")
#: Splits taken as the test split, in this order; without one, a stratified 20% of 'train' is held out.
TEST_SPLITS = ("test", "validation")
_COLUMN_FLAGS = ("image_column / label_column (mimcl eval --image_column / --label_column; training "
                 "--eval_image_column / --eval_label_column)")


def _read_saved(path: str, label: str):
    """``datasets.load_from_disk(path)``; when that fails, a ``ValueError`` naming the split that cannot be read
    (datasets writes no data file for a split saved with no rows, and then cannot load it back)."""
    import datasets

    try:
        return datasets.load_from_disk(path)
    except Exception as exc:
        try:
            with open(os.path.join(path, "dataset_dict.json"), encoding="utf-8") as f:
                splits = [(str(name), os.path.join(path, str(name))) for name in json.load(f)["splits"]]
        except (OSError, ValueError, KeyError, TypeError):
            splits = [(None, path)]
        for split, folder in splits:
            try:
                with open(os.path.join(folder, "state.json"), encoding="utf-8") as f:
                    empty = json.load(f).get("_data_files") == []
            except (OSError, ValueError, AttributeError):
                empty = False
            where = f"{label}, split {split!r}" if split is not None else label
            if empty:
                raise ValueError(f"{where}: the split has no rows (saved with save_to_disk from an empty dataset, it "
                                 "has no data file and datasets cannot load it back); drop it or give it rows") from exc
        raise ValueError(f"{label}: datasets.load_from_disk cannot read it ({type(exc).__name__}: {exc})") from exc


def _saved_split_names(path: str, label: str) -> list[str]:
    """The split names of a saved ``DatasetDict`` ([] for a saved ``Dataset``: a lone 'train' split)."""
    import datasets

    ds = _read_saved(path, label)
    return list(ds) if isinstance(ds, datasets.DatasetDict) else []


def _open_splits(source: str):
    """``(train, test, test_name)`` of a labelled image dataset; ``test`` is None (and ``test_name`` None) when
    it has no ``test`` / ``validation`` split. Read by the package's one resolver
    (:func:`mimcl_hub.data.resolve.open_source`): a ``save_to_disk`` folder (a ``Dataset`` is a lone 'train'
    split), a folder ``datasets.load_dataset`` reads (imagefolder, Parquet, ...), a Hub id. Refused with a
    ``ValueError`` naming the source: a missing path (the resolver's message), the clip sources ``bundled`` /
    ``scenes:N``, a file, an encoder folder, a dataset without a 'train' split."""
    import datasets

    from ..data.resolve import is_saved_dataset, source_problem

    label = f"kNN dataset {source!r}"
    problem = source_problem(source)
    if problem is not None:
        raise ValueError(f"kNN dataset {problem}; {SOURCES_HINT}")
    if source == "bundled" or source == "scenes" or source.startswith("scenes:"):
        raise ValueError(f"{label} is a clip source of mimcl mine / --video_dataset (videos without labels), not a "
                         f"labelled image dataset; {SOURCES_HINT}")
    path = os.path.expanduser(source)
    if os.path.isfile(path):
        raise ValueError(f"{label} is a file; a kNN dataset is a folder or a dataset id ({SOURCES_HINT})")
    if os.path.isfile(os.path.join(path, "config.json")) and any(
            os.path.isfile(os.path.join(path, name)) for name in ("model.safetensors", "pytorch_model.bin")):
        raise ValueError(f"{label} is an encoder folder (config.json + model weights), not a dataset: the encoder "
                         "comes first, the datasets after --dataset (mimcl eval MODEL --dataset DATASET)")
    names, names_error = None, None
    if is_saved_dataset(path):
        names = _saved_split_names(path, label)
    else:
        try:
            names = list(datasets.get_dataset_split_names(path if os.path.exists(path) else source))
        except Exception as exc:  # an unreadable folder, an offline Hub id ...: open_source says what is wrong
            names_error = exc
    if names and "train" not in names:
        raise ValueError(f"{label} has no 'train' split (splits: {names}); kNN needs a 'train' split (the labelled "
                         f"neighbours) and a {' or '.join(map(repr, TEST_SPLITS))} split to evaluate on (a 'train' "
                         "split alone gives both: 20% of it is held out)")
    train = _open_split(source, "train", label)
    if names is None:
        raise ValueError(f"{label}: its split names could not be read ({type(names_error).__name__}: {names_error})")
    test_name = next((name for name in TEST_SPLITS if name in names), None)
    test = _open_split(source, test_name, label) if test_name else None
    return train, test, test_name


def _open_split(source: str, split: str, label: str):
    """:func:`mimcl_hub.data.resolve.open_source` of one split; datasets' own errors become a ``ValueError``
    naming the dataset and the split."""
    from ..data.resolve import open_source

    try:
        return open_source(source, split=split, what="kNN dataset")
    except ValueError:
        raise
    except Exception as exc:  # datasets' own errors (unreadable files, ...)
        raise ValueError(f"{label}, split {split!r} could not be loaded ({type(exc).__name__}: {exc}); "
                         f"{SOURCES_HINT}") from exc


def _columns(train, test, test_name: str | None, label: str, image_column: str | None,
             label_column: str | None) -> tuple[str, str]:
    """The image and label columns: named, or detected in 'train' (image:
    :func:`mimcl_hub.data.contrastive.find_image_column`; label: the first ``ClassLabel``, else ``label`` /
    ``labels`` / ``fine_label``); both must exist in the test split too, the image column must hold images."""
    import datasets

    from ..data.contrastive import find_image_column

    feats = train.features
    for flag, name in (("image_column", image_column), ("label_column", label_column)):
        if name is not None and name not in feats:
            raise ValueError(f"{label}, split 'train': no column {name!r} ({flag}); columns are {sorted(feats)}")
    image_column = find_image_column(train, image_column, f"{label}, split 'train'")
    if label_column is None:
        label_column = next((c for c, f in feats.items() if isinstance(f, datasets.ClassLabel)), None)
        label_column = label_column or next((c for c in ("label", "labels", "fine_label") if c in feats), None)
    if image_column is None or label_column is None:
        raise ValueError(f"{label}: cannot find the image / label columns (got {image_column!r} / {label_column!r}; "
                         f"columns are {sorted(feats)}); pass {_COLUMN_FLAGS}")
    if image_column == label_column:
        raise ValueError(f"{label}: the image and the label column are both {image_column!r}; pass {_COLUMN_FLAGS}")
    if test is not None:
        missing = [c for c in (image_column, label_column) if c not in test.features]
        if missing:
            raise ValueError(f"{label}, split {test_name!r}: no column {missing[0]!r} (it is in 'train'); columns "
                             f"are {sorted(test.features)}")
    for split_name, split in (("train", train), (test_name, test)):
        feature = split.features[image_column] if split is not None else None
        if isinstance(feature, (datasets.Value, datasets.ClassLabel)):
            raise ValueError(f"{label}, split {split_name!r}, column {image_column!r}: holds {feature} values, not "
                             "images (a datasets.Image column or uint8 / float arrays (H, W, 3)); a column of image "
                             f"file paths is read with ds.cast_column({image_column!r}, datasets.Image()); or pass "
                             f"{_COLUMN_FLAGS}")
    return image_column, label_column


# --------------------------------------------------------------------------------------------------
# labels -> class ids: one validation of a labelled split (the training monitor and `mimcl eval`)
# --------------------------------------------------------------------------------------------------


def _label_kind(feature, what: str) -> str:
    """``classlabel``, ``number`` (integers, floats), ``bool`` or ``string``; anything else is refused."""
    import datasets

    if isinstance(feature, datasets.ClassLabel):
        return "classlabel"
    if isinstance(feature, datasets.Value):
        if feature.dtype in ("string", "large_string"):
            return "string"
        try:
            kind = np.dtype(feature.dtype).kind
        except TypeError:
            kind = ""
        if kind and kind in "iuf":
            return "number"
        if kind == "b":
            return "bool"
    raise ValueError(f"{what}: holds {feature} values, not one class label per row (a ClassLabel, integers, "
                     "integral floats, booleans or strings)")


def _label_values(split, column: str, kind: str, what: str) -> np.ndarray:
    """The raw labels of a whole split (1-D numpy); a missing label (null, NaN, empty string) is refused naming
    its row, and so are non-integral, infinite and negative numbers."""
    import pyarrow.compute as pc

    if len(split) == 0:
        raise ValueError(f"{what}: the split has no rows")
    column_values = split.with_format("arrow")[column]
    missing = np.flatnonzero(pc.is_null(column_values, nan_is_null=True).to_numpy(zero_copy_only=False))
    values = column_values.to_numpy(zero_copy_only=False)
    if kind == "string":
        missing = np.union1d(missing, np.flatnonzero([v is not None and not v.strip() for v in values]))
    if missing.size:
        raise ValueError(f"{what}: {missing.size} of {len(values)} rows have no label (null, NaN or empty; first at "
                         f"row {int(missing[0])}); drop or label them")
    if kind == "number":
        bad = np.flatnonzero(~np.isfinite(values) | (values != np.floor(values))) if values.dtype.kind == "f" else []
        if len(bad):
            raise ValueError(f"{what}: label {float(values[bad[0]]):g} at row {int(bad[0])} is not a class id "
                             f"({len(bad)} rows are not whole numbers; a regression target is no classification label)")
        negative = np.flatnonzero(values < 0)
        if negative.size:
            raise ValueError(f"{what}: label {values[negative[0]]:g} at row {int(negative[0])} is negative "
                             f"({negative.size} rows); -1 marks an unlabelled row on the Hub, so these rows have "
                             "no class: evaluate on a labelled split")
    return values


def _class_ids(train, test, column: str, label: str, test_name: str | None):
    """``(train_ids, test_ids, num_classes, class_names)`` of the label column, read the same way in both splits.

    * ``ClassLabel``: the stored ids; ``num_classes`` is the feature's; a label outside ``[0, num_classes)`` (e.g.
      -1, the Hub's mark of an unlabelled row) is refused naming the split and the row. Both splits must carry the
      same ``ClassLabel`` names.
    * integers / integral floats / booleans / strings: the distinct values of 'train', sorted, are the classes
      ``0 .. C-1`` (``num_classes = C``) and the same mapping is applied to the test split; a test value 'train'
      never has gets an id ``>= C`` here and is refused by :func:`_check_classes` when it is evaluated.

    ``test`` may be None (the ids of 'train' only; ``test_ids`` is None)."""
    feature = train.features[column]
    what = f"{label}, split 'train', column {column!r}"
    kind = _label_kind(feature, what)
    test_what = f"{label}, split {test_name!r}, column {column!r}"
    if test is not None:
        test_kind = _label_kind(test.features[column], test_what)
        same = (test_kind == kind if kind != "classlabel"
                else test_kind == kind and list(test.features[column].names) == list(feature.names))
        if not same:
            raise ValueError(f"{test_what}: holds {test.features[column]} labels but split 'train' holds {feature}: "
                             "the same id would not name the same class; cast both splits to one ClassLabel")
    tr_raw = _label_values(train, column, kind, what)
    te_raw = _label_values(test, column, kind, test_what) if test is not None else None
    if kind == "classlabel":
        num_classes = int(feature.num_classes)
        for raw, split_what in ((tr_raw, what), (te_raw, test_what)):
            if raw is None:
                continue
            bad = np.flatnonzero((raw < 0) | (raw >= num_classes))
            if bad.size == len(raw) and (raw == -1).all():
                raise ValueError(f"{split_what}: every label is -1, the Hub's mark of an unlabelled row: this split "
                                 "has no labels to evaluate against (use a labelled split)")
            if bad.size:
                raise ValueError(f"{split_what}: label {int(raw[bad[0]])} at row {int(bad[0])} is outside [0, "
                                 f"{num_classes}) of its ClassLabel ({bad.size} rows; -1 marks an unlabelled row)")
        return (tr_raw.astype(np.int64), None if te_raw is None else te_raw.astype(np.int64), num_classes,
                [str(n) for n in feature.names])
    classes = np.unique(tr_raw)
    unseen = np.setdiff1d(te_raw, classes) if te_raw is not None else classes[:0]
    table = np.concatenate([classes, unseen])           # ids >= len(classes): test values 'train' never has
    order = np.argsort(table, kind="stable")

    def ids(raw):
        return order[np.searchsorted(table, raw, sorter=order)].astype(np.int64)

    names = [str(int(v)) if kind == "number" else str(v) for v in table]
    return ids(tr_raw), None if te_raw is None else ids(te_raw), len(classes), names


def _check_classes(tr_y: np.ndarray, te_y: np.ndarray, names: Sequence[str], label: str, test_name: str | None,
                   te_rows: np.ndarray, column: str | None) -> None:
    """An evaluation needs two classes or more among the evaluated rows of 'train' and of the test split, and
    every evaluated test class among the evaluated train rows: a class no neighbour and no probe ever saw cannot
    be predicted, so its rows would only count as errors, not evaluate that class. ``te_rows``: the test rows'
    numbers in their split (for the message); ``test_name`` None: the held-out 20% of 'train'."""
    col = f", column {column!r}" if column else ""
    test_where = f"split {test_name!r}" if test_name is not None else "split 'train' (its held-out 20%)"
    for where, y, flag in (("split 'train'", tr_y, "--max_train / --knn_max_train"),
                           (test_where, te_y, "--max_test / --knn_max_test")):
        classes = np.unique(y)
        if classes.size < 2:
            held = f"one class ({names[classes[0]]!r})" if classes.size else "no class"
            raise ValueError(f"{label}, {where}{col}: its {len(y)} evaluated rows hold {held}: kNN and linear "
                             f"top-1 would be 1.0 whatever the features; an evaluation needs two classes or more (a "
                             f"larger {flag}, or a dataset with more classes)")
    unseen = np.setdiff1d(np.unique(te_y), np.unique(tr_y))
    if unseen.size:
        rows = te_rows[np.isin(te_y, unseen)]
        shown = ", ".join(repr(names[c]) for c in unseen[:5]) + (", ..." if unseen.size > 5 else "")
        raise ValueError(f"{label}, {test_where}{col}: {rows.size} evaluated rows (first: row {int(rows[0])}) are of "
                         f"{unseen.size} class(es) that no evaluated train row has ({shown}); they cannot be "
                         "predicted, so they are no evaluation of those classes (a larger --max_train / "
                         "--knn_max_train, or a test split whose classes are all in 'train')")


def _check_distinct(train, test, columns: list[str], label: str, test_name: str) -> None:
    """Refuse a test split that *is* the train split (same fingerprint, or the same rows in the same order):
    every test image would find itself among its neighbours (kNN ~1.0)."""
    fingerprint = getattr(train, "_fingerprint", None)
    same = fingerprint is not None and fingerprint == getattr(test, "_fingerprint", None)
    if not same and len(train) == len(test):
        a, b = train.select_columns(columns).with_format("arrow"), test.select_columns(columns).with_format("arrow")
        same = all(a[i:i + 1024].equals(b[i:i + 1024]) for i in range(0, len(a), 1024))
    if same:
        raise ValueError(f"{label}: split {test_name!r} is the same data as split 'train' (columns {columns}): every "
                         "test image would be its own nearest neighbour; evaluate on a held-out split")


def _held_out(ids: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A stratified 80/20 split of the rows of one split: ``ceil(n / 5)`` test rows shared out over the classes
    by largest remainder (never a class's last row), so the test classes are classes of the train part; sorted
    row numbers ``(train_rows, test_rows)``."""
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(ids, return_counts=True)
    quota = counts / 5
    take = np.floor(quota).astype(np.int64)
    rest = -(-len(ids) // 5) - int(take.sum())
    for c in np.argsort(-(quota - take), kind="stable"):
        if rest <= 0:
            break
        if take[c] < counts[c] - 1:
            take[c] += 1
            rest -= 1
    test = np.concatenate([rng.permutation(np.flatnonzero(ids == c))[:t] for c, t in zip(classes, take)])
    is_test = np.zeros(len(ids), bool)
    is_test[test.astype(np.int64)] = True
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 (H, W, 3) -> (size, size, 3): area averaging when shrinking, bilinear when enlarging."""
    import cv2

    if image.shape[:2] == (size, size):
        return image
    shrink = image.shape[0] > size or image.shape[1] > size
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _images_at_size(split, column: str, rows: np.ndarray, img_size: int, what: str) -> np.ndarray:
    """uint8 (N, S, S, 3) from the image column of ``split`` (already cut to ``rows`` of the original split);
    ``what`` names the dataset and the split in errors.

    Each image goes through the one conversion (:func:`mimcl_hub.data.images.to_uint8_rgb`), with the rule
    decided once for the dataset by the column's feature type (never by one image's values), and is resized
    on its own straight to the evaluation size as it is converted: images are decoded 64 at a time, so memory
    holds a batch of decoded images and N small ones, never N copies of the largest (issue 19, item 7).

    A ``datasets.Image`` column is decoded row by row with the feature's own ``decode_example``, so a missing
    (null) or undecodable image is a ``ValueError`` naming the split, the row and the column."""
    import datasets

    from ..data.images import image_dtype, to_uint8_rgb

    feature = split.features[column]
    dtype = image_dtype(feature)
    decode = None
    if isinstance(feature, datasets.Image) and feature.decode:
        split, decode = split.cast_column(column, datasets.Image(decode=False)), feature.decode_example
    out = np.empty((len(split), img_size, img_size, 3), np.uint8)
    i = 0
    for batch in split.select_columns([column]).iter(batch_size=64):
        for value in batch[column]:
            where = f"{what}: row {int(rows[i])} of column {column!r}"
            if value is None:
                raise ValueError(f"{where}: no image (null)")
            if decode is not None:
                try:
                    value = decode(value)
                except Exception as exc:  # PIL's UnidentifiedImageError, a missing file, truncated bytes ...
                    raise ValueError(f"{where}: the image cannot be decoded ({type(exc).__name__}: {exc})") from exc
            out[i] = _resize(to_uint8_rgb(value, where, dtype=dtype), img_size)
            i += 1
    return out


def load_knn_datasets(source: str = "digits", img_size: int = 32, mean: Sequence[float] = (0.5, 0.5, 0.5),
                      std: Sequence[float] = (0.5, 0.5, 0.5), max_train: int | None = None,
                      max_test: int | None = None, seed: int = 0, image_column: str | None = None,
                      label_column: str | None = None) -> tuple[LabelledImages, LabelledImages]:
    """Labelled (train, test) image sets for kNN evaluation, normalised with ``mean`` / ``std``; used by the
    training monitor (``--eval_dataset``) and by ``mimcl eval`` alike.

    ``source``:
      * ``"digits"`` — scikit-learn's 1,797 handwritten digits (8x8, 10 classes), shipped in the
        scikit-learn wheel (no download), upsampled to ``img_size``; a fixed 60/40 split by ``seed``;
      * anything the package's one resolver (:func:`mimcl_hub.data.resolve.open_source`) reads as a labelled
        image dataset: a ``save_to_disk`` folder (``Dataset`` or ``DatasetDict``), a folder ``datasets.load_dataset``
        reads (``imagefolder``-style class folders, Parquet files), an HF Hub dataset id (``uoft-cs/cifar10``).
        Splits: ``train`` and ``test`` (else ``validation``); with ``train`` alone (or a saved ``Dataset``) a
        stratified 20% of it is held out. Image / label columns are detected (``image`` / ``img`` or a
        ``datasets.Image`` column; a ``ClassLabel`` or ``label`` / ``labels`` / ``fine_label``) or named.

    Labels (one validation for both splits, see :func:`_class_ids`): a ``ClassLabel`` keeps its ids and its
    ``num_classes``; integer, integral-float, boolean and string labels are mapped to ids ``0 .. C-1`` in the
    sorted order of the distinct values of 'train' (``C`` of them), the same mapping for the test split
    (``LabelledImages.class_names[i]`` is the value of id ``i``).

    ``max_train`` / ``max_test`` draw a random subset of at most that size (seeded; a limit above the split's
    size takes the whole split).

    Raises ``ValueError`` naming the dataset, the split and the column (nothing is evaluated) for: a source that
    is missing or no labelled image dataset (a clip source, a file, an encoder folder), no 'train' split, an
    empty split, missing columns, an image column of scalars, a label that is missing (null, NaN, empty string),
    not a whole number, negative (-1 marks an unlabelled row on the Hub) or outside ``[0, num_classes)`` of its
    ``ClassLabel``, label types or ``ClassLabel`` names that differ between the splits, fewer than two classes
    among the evaluated rows of either split, evaluated test rows of a class no evaluated train row has, and a
    test split that is the train split. Unreadable pixels are refused naming the row and the column
    (:func:`mimcl_hub.data.images.to_uint8_rgb`).
    """
    name = os.fspath(source) if isinstance(source, os.PathLike) else str(source)
    label = f"kNN dataset {name!r}"
    if name == "digits":
        tr_x, tr_y, te_x, te_y, num_classes = _digits(seed)
        tr_i, te_i = _subsample(len(tr_y), max_train, seed), _subsample(len(te_y), max_test, seed + 1)
        tr_x, tr_y, te_x, te_y = tr_x[tr_i], tr_y[tr_i], te_x[te_i], te_y[te_i]
        names = [str(c) for c in range(num_classes)]
        _check_classes(tr_y, te_y, names, label, "test", te_i, None)
    else:
        train, test, test_name = _open_splits(name)
        img_col, lab_col = _columns(train, test, test_name, label, image_column, label_column)
        tr_all, te_all, num_classes, names = _class_ids(train, test, lab_col, label, test_name)
        if test is None:        # hold out 20% of 'train' (rows named by their place in 'train')
            tr_rows, te_rows = _held_out(tr_all, seed)
            test, te_all = train.select(te_rows), tr_all[te_rows]
            train, tr_all = train.select(tr_rows), tr_all[tr_rows]
        else:
            _check_distinct(train, test, [img_col, lab_col], label, test_name)
            tr_rows, te_rows = np.arange(len(train)), np.arange(len(test))
        tr_i = _subsample(len(train), max_train, seed)
        te_i = _subsample(len(test), max_test, seed + 1)
        tr_y, te_y = tr_all[tr_i], te_all[te_i]
        _check_classes(tr_y, te_y, names, label, test_name, te_rows[te_i], lab_col)       # before any image is decoded
        train, test = train.select(tr_i), test.select(te_i)
        tr_x = _images_at_size(train, img_col, tr_rows[tr_i], img_size, f"{label}, split 'train'")
        te_x = _images_at_size(test, img_col, te_rows[te_i], img_size,
                               f"{label}, split {test_name!r}" if test_name else f"{label}, split 'train' (held out)")
    return (LabelledImages(tr_x, tr_y, img_size, mean, std, num_classes, f"{name}:train", class_names=names),
            LabelledImages(te_x, te_y, img_size, mean, std, num_classes, f"{name}:test", class_names=names))
