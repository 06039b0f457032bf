"""The contrastive training sets of the InfoAug dual branch (DESIGN.md, method item 7) and their collation.

Both are ``torch.utils.data.Dataset`` of dicts of tensors:

- :class:`TwinContrastiveDataset` over a :class:`~mimcl_hub.data.clipbank.ClipBank` (mined clips decoded
  once into memory). Item ``i`` holds the *view branch* (``view1``, ``view2``: two SimCLR-style
  augmentations of one frame) and the *MI branch* (``twin_a``, ``twin_b``: crops of an anchor patch and its
  partner around their tracked centres, possibly in different frames, plus ``twin_valid``). The partner is
  the mined twin (``twin_mode="mi"``), a uniformly random other valid patch of the same clip (``"random"``,
  the paper's ablation, :func:`mimcl_hub.mi.twins.random_twins` semantics) or absent (``"none"``: view
  branch only).
- :class:`ImageContrastiveDataset` over an image-only HF dataset (``view1``, ``view2`` only); its pixels go
  through the one conversion of :mod:`mimcl_hub.data.images`, decided by the column's feature type.

:func:`collate_contrastive` stacks items.

Determinism: every random choice of item ``i`` in epoch ``e`` (crop boxes, flips, colour jitter, frames,
random partners) is drawn from a ``torch.Generator`` seeded from ``(seed, e, i)``, and the per-epoch orders
of frames and pairs from ``(seed, e)``. The global RNGs are never used, so a batch is the same whatever
``num_workers``, the worker seeds or the number of processes; only the sampler decides which indices a
batch holds. ``set_epoch(e)`` (called by Accelerate's prepared DataLoader, or by hand before iterating)
selects the epoch; the epoch lives in a shared-memory tensor, so persistent DataLoader workers see it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Optional, Sequence

import datasets
import numpy as np
import torch

from .._safety import check_number, check_seed, is_int
from ..mi.twins import TWIN_MODES
from .augment import AugmentConfig, Augmenter, Draws, OneThread, check_augment, mix
from .clipbank import ClipBank
from .images import image_dtype, to_uint8_rgb

__all__ = ["TWIN_MODES", "TwinChoice", "ItemPlan", "TwinContrastiveDataset", "ImageContrastiveDataset",
           "collate_contrastive", "find_image_column", "check_twin_mode", "IMAGE_COLUMNS"]

_VIEW_KEYS = ("view1", "view2")
_TWIN_KEYS = ("twin_a", "twin_b", "twin_valid")
#: Column names taken as the image column when none is named (before any ``datasets.Image`` column).
IMAGE_COLUMNS = ("image", "img")


def check_twin_mode(twin_mode: str) -> str:
    if twin_mode not in TWIN_MODES:
        raise ValueError(f"unknown twin_mode {twin_mode!r}; choose one of {list(TWIN_MODES)}")
    return twin_mode


# --------------------------------------------------------------------------------------------
# epoch plumbing
# --------------------------------------------------------------------------------------------


def _epoch_tensor(epoch: int = 0) -> torch.Tensor:
    """The epoch in shared memory, so DataLoader workers (also persistent ones) see ``set_epoch``."""
    tensor = torch.tensor([epoch], dtype=torch.int64)
    try:
        tensor.share_memory_()
    except (RuntimeError, OSError):  # no shared memory: workers re-created per epoch still see it
        pass
    return tensor


class _EpochMixin:
    seed: int
    _epoch: torch.Tensor

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random draws ``__getitem__`` makes (call before iterating)."""
        self._epoch[0] = int(check_number("epoch", epoch, 0, None, integer=True))

    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    def _check_index(self, index: int, length: int) -> int:
        if not is_int(index):
            raise TypeError(f"index must be an int, got {type(index).__name__}")
        if not -length <= index < length:
            raise IndexError(f"index {index} out of range for a dataset of {length} items")
        return int(index) % length


# --------------------------------------------------------------------------------------------
# the dual-branch dataset
# --------------------------------------------------------------------------------------------


class TwinChoice(NamedTuple):
    """One MI-branch pair of an item: anchor patch in frame ``t_a``, partner patch in ``t_b``."""

    clip: int
    anchor: int
    partner: int
    t_a: int
    t_b: int


@dataclass(frozen=True)
class ItemPlan:
    """Every content choice of one item (what :meth:`TwinContrastiveDataset.describe` returns).

    ``twins`` has ``twins_per_item`` entries (None where the item has no pair; empty for
    twin_mode "none")."""

    index: int
    epoch: int
    clip: int
    frame: int
    twins: tuple[Optional[TwinChoice], ...]


class TwinContrastiveDataset(_EpochMixin, torch.utils.data.Dataset):
    """Dual-branch items over a :class:`ClipBank`.

    Item ``i`` of epoch ``e``:

    - ``view1``, ``view2``: float32 (3, S, S), two SimCLR augmentations of one frame. Frames are
      visited in a per-epoch random order (``i % num_frames`` indexes it), so an epoch of the
      default length sees every frame once whatever the sampler.
    - ``twin_a``, ``twin_b``: float32 (3, S, S) crops of an anchor patch in frame ``t_a`` and its
      partner in frame ``t_b`` (both uniform over the clip's frames where the patch is tracked),
      around their tracked centres (see :class:`AugmentConfig`); ``twin_valid``: bool tensor, False
      when the item has no pair (then both crops are zeros). Anchors are the mined twins' anchors
      in a per-epoch random order (``(i * twins_per_item + k) % num_pairs``). The partner is the
      mined twin (``"mi"``) or a uniformly random *other* valid patch of the clip drawn per item
      (``"random"``: the same anchors, only the MI choice is removed). ``"none"``: no twin keys.
      With ``twins_per_item`` K > 1 the twin tensors get a leading K dimension.

    ``length`` (items per epoch) defaults to ``max(num_frames, ceil(num_pairs / K))``: every frame
    and every twin pair once per epoch. Random choices: see the module docstring.

    Speed (S = 32, offline default bank, 2-core CPU, measured): ~1000 items/s in one process for
    "mi" (~800 "random", ~2000 "none"); ~1550 items/s through a DataLoader with 2 workers.
    """

    def __init__(self, bank: ClipBank, augment: AugmentConfig, twin_mode: str = "mi", seed: int = 0,
                 length: Optional[int] = None, twins_per_item: int = 1):
        if not isinstance(bank, ClipBank):
            raise ValueError(f"TwinContrastiveDataset: bank must be a ClipBank (see load_twin_clips), got {type(bank).__name__}")
        self.augment = check_augment(augment, "TwinContrastiveDataset")
        self.twin_mode = check_twin_mode(twin_mode)
        self.seed = check_seed(seed)
        self.twins_per_item = int(check_number("twins_per_item", twins_per_item, 1, None, integer=True))
        check_number("length", length, 1, None, integer=True, allow_none=True)
        if bank.num_clips == 0 or bank.num_frames == 0:
            raise ValueError("TwinContrastiveDataset: the clip bank is empty")
        self.bank = bank
        self._aug = Augmenter(augment)
        starts = np.cumsum([0] + [f.shape[0] for f in bank.frames])
        self._frame_clip = np.repeat(np.arange(bank.num_clips), np.diff(starts))
        self._frame_t = np.arange(starts[-1]) - starts[self._frame_clip]
        self.num_frames = int(starts[-1])
        self.pairs = bank.twin_pairs() if self.twin_mode != "none" else np.zeros((0, 3), np.int64)
        if self.twin_mode != "none" and len(self.pairs) == 0:
            valid = sum(int(v.sum()) for v in bank.valid)
            raise ValueError(
                f"twin_mode={self.twin_mode!r} needs twin pairs, but the mined clips have none "
                f"({bank.num_clips} clips, {valid} valid patches, 0 twins): use twin_mode='none' (view branch only), "
                "or mine with other options (e.g. a lower mi_threshold / significance=0, a smaller noise_factor, "
                "longer clips with more motion)"
            )
        self.num_pairs = len(self.pairs)
        self._valid_idx = [np.flatnonzero(v) for v in bank.valid]
        self._tracked = [np.isfinite(t).all(-1) for t in bank.tracks]  # (P, T) bool per clip
        self._box_side = [np.sqrt(np.maximum(b[:, 2] - b[:, 0], 1) * np.maximum(b[:, 3] - b[:, 1], 1)) for b in bank.boxes]
        default = self.num_frames
        if self.num_pairs:
            default = max(default, -(-self.num_pairs // self.twins_per_item))
        self.length = int(length) if length is not None else default
        self._epoch = _epoch_tensor()
        self._orders: tuple[int, np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.length

    def _epoch_orders(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        if self._orders is None or self._orders[0] != epoch:
            g = torch.Generator().manual_seed(mix(self.seed, epoch, -1))
            frames = torch.randperm(self.num_frames, generator=g).numpy()
            pairs = torch.randperm(max(self.num_pairs, 1), generator=g).numpy()
            self._orders = (epoch, frames, pairs)
        return self._orders[1], self._orders[2]

    def _plan(self, index: int) -> tuple[ItemPlan, Draws]:
        index = self._check_index(index, self.length)
        epoch = self.epoch
        frame_order, pair_order = self._epoch_orders(epoch)
        d = Draws(mix(self.seed, epoch, index))
        f = frame_order[index % self.num_frames]
        clip, frame = int(self._frame_clip[f]), int(self._frame_t[f])
        twins: list[Optional[TwinChoice]] = []
        if self.twin_mode != "none":
            for k in range(self.twins_per_item):
                c, a, b = (int(v) for v in self.pairs[pair_order[(index * self.twins_per_item + k) % self.num_pairs]])
                if self.twin_mode == "random":  # random_twins: uniform over the *other* valid patches
                    others = self._valid_idx[c]
                    choice = others[d.randint(len(others) - 1)]
                    b = int(choice if choice != a else others[-1])
                ta = np.flatnonzero(self._tracked[c][a])
                tb = np.flatnonzero(self._tracked[c][b])
                if len(ta) == 0 or len(tb) == 0:
                    twins.append(None)
                    continue
                twins.append(TwinChoice(c, a, b, int(ta[d.randint(len(ta))]), int(tb[d.randint(len(tb))])))
        return ItemPlan(index, epoch, clip, frame, tuple(twins)), d

    def describe(self, index: int) -> ItemPlan:
        """The content choices of item ``index`` in the current epoch (frame and twin pairs)."""
        return self._plan(index)[0]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        with OneThread():
            return self._item(index)

    def _item(self, index: int) -> dict[str, torch.Tensor]:
        plan, d = self._plan(index)
        image = self.bank.frames[plan.clip][plan.frame]
        out = {"view1": self._aug.view(image, d), "view2": self._aug.view(image, d)}
        if self.twin_mode == "none":
            return out
        crops_a, crops_b, ok = [], [], []
        for choice in plan.twins:
            if choice is None:
                crops_a.append(self._aug.zeros())
                crops_b.append(self._aug.zeros())
                ok.append(False)
                continue
            crops_a.append(self._twin_crop(choice.clip, choice.anchor, choice.t_a, d))
            crops_b.append(self._twin_crop(choice.clip, choice.partner, choice.t_b, d))
            ok.append(True)
        if self.twins_per_item == 1:
            out.update(twin_a=crops_a[0], twin_b=crops_b[0], twin_valid=torch.tensor(ok[0]))
        else:
            out.update(twin_a=torch.stack(crops_a), twin_b=torch.stack(crops_b), twin_valid=torch.tensor(ok))
        return out

    def _twin_crop(self, clip: int, patch: int, t: int, d: Draws) -> torch.Tensor:
        cx, cy = self.bank.tracks[clip][patch, t]
        return self._aug.twin(self.bank.frames[clip][t], float(cx), float(cy), float(self._box_side[clip][patch]), d)

    @property
    def fingerprint(self) -> Optional[str]:
        """The ``datasets`` fingerprint of the mined clips this reads (what a resumed run must match)."""
        mined = getattr(self.bank, "mined", None)
        return getattr(mined, "_fingerprint", None)

    def __repr__(self) -> str:
        return (
            f"TwinContrastiveDataset(twin_mode={self.twin_mode!r}, items={self.length}, frames={self.num_frames}, "
            f"pairs={self.num_pairs}, clips={self.bank.num_clips}, img_size={self.augment.img_size}, seed={self.seed})"
        )


# --------------------------------------------------------------------------------------------
# image-only datasets
# --------------------------------------------------------------------------------------------


def find_image_column(dataset: datasets.Dataset, image_column: Optional[str], what: str) -> Optional[str]:
    """``image_column`` (checked to exist), else ``"image"`` / ``"img"``, else the first ``datasets.Image``
    column, else None."""
    if image_column is not None:
        if image_column not in dataset.column_names:
            raise ValueError(f"{what}: no image column {image_column!r}; the dataset has columns {dataset.column_names}")
        return image_column
    for name in IMAGE_COLUMNS:
        if name in dataset.column_names:
            return name
    for name, feature in dataset.features.items():
        if isinstance(feature, datasets.Image):
            return name
    return None


def _flatten(array):
    """A pyarrow array of nested lists / fixed-size lists / datasets' Array extension -> its flat values."""
    import pyarrow as pa

    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    while True:
        if isinstance(array, pa.ExtensionArray):
            array = array.storage
        elif pa.types.is_list(array.type) or pa.types.is_large_list(array.type) or pa.types.is_fixed_size_list(array.type):
            array = array.flatten()
        else:
            return array


def _check_column_pixels(dataset: datasets.Dataset, column: str, dtype: Optional[np.dtype], what, batch: int = 1024) -> None:
    """Every row of an array column whose dtype needs a range (floats: [0, 1]; integers other than uint8 /
    uint16: 0..255) checked once with Arrow, so a bad row fails when the dataset is built, not in a DataLoader
    worker hours later. The first bad row is then read with :func:`to_uint8_rgb`, whose error names it."""
    if dtype is None or dtype.kind not in "uif" or dtype in (np.uint8, np.uint16):
        return
    import pyarrow.compute as pc

    high = 1 if dtype.kind == "f" else 255
    table = dataset.with_format("arrow", columns=[column])
    for start in range(0, len(dataset), batch):
        values = _flatten(table[start:start + batch][column])
        if len(values) == 0:
            continue
        stats = pc.min_max(values).as_py()
        finite = dtype.kind != "f" or pc.all(pc.is_finite(values)).as_py() is not False
        if finite and stats["min"] is not None and stats["min"] >= 0 and stats["max"] <= high:
            continue
        for index in range(start, min(start + batch, len(dataset))):
            to_uint8_rgb(dataset[index][column], what(index), dtype=dtype)


class ImageContrastiveDataset(_EpochMixin, torch.utils.data.Dataset):
    """Two SimCLR views (``view1``, ``view2``: float32 (3, S, S)) of each image of an image-only HF
    dataset (e.g. CIFAR-10). ``image_column`` defaults to ``"image"``, ``"img"`` or the first
    ``datasets.Image`` column. Random choices as in :class:`TwinContrastiveDataset`.

    Pixels: :func:`mimcl_hub.data.images.to_uint8_rgb`, by the column's feature type (``datasets.Image``:
    PIL modes, 16-bit modes scaled; an ``Array3D`` / nested ``Sequence`` column: its dtype, e.g. float32
    images must lie in [0, 1]). Float and wide-integer array columns are range-checked over every row
    when the dataset is built; a bad row raises ``ValueError`` naming the row and the column.
    """

    def __init__(self, dataset: datasets.Dataset, augment: AugmentConfig, image_column: Optional[str] = None,
                 seed: int = 0):
        if isinstance(dataset, datasets.DatasetDict):
            raise ValueError(f"ImageContrastiveDataset: got a DatasetDict with splits {list(dataset)}; pass one split")
        if not isinstance(dataset, datasets.Dataset):
            raise ValueError(f"ImageContrastiveDataset: expected a datasets.Dataset, got {type(dataset).__name__}")
        self.augment = check_augment(augment, "ImageContrastiveDataset")
        column = find_image_column(dataset, image_column, "ImageContrastiveDataset")
        if column is None:
            raise ValueError(
                f"ImageContrastiveDataset: no image column (looked for {list(IMAGE_COLUMNS)} or a datasets.Image "
                f"feature) among {dataset.column_names}; pass image_column"
            )
        if len(dataset) == 0:
            raise ValueError("ImageContrastiveDataset: the dataset is empty")
        self.image_column = column
        self.dataset = dataset.select_columns([column])
        self.pixel_dtype = image_dtype(dataset.features[column])  # one rule for the whole column
        self.seed = check_seed(seed)
        self._aug = Augmenter(augment)
        self._epoch = _epoch_tensor()
        self.image(0)  # a bad column fails now, not in a worker
        _check_column_pixels(self.dataset, column, self.pixel_dtype, self._what)

    def _what(self, index: int) -> str:
        return f"row {index} of column {self.image_column!r}"

    def image(self, index: int) -> torch.Tensor:
        """Row ``index``'s image as uint8 (3, H, W), through the one conversion."""
        value = self.dataset[index][self.image_column]
        array = to_uint8_rgb(value, self._what(index), dtype=self.pixel_dtype)
        return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        index = self._check_index(index, len(self))
        image = self.image(index)
        d = Draws(mix(self.seed, self.epoch, index))
        with OneThread():
            return {"view1": self._aug.view(image, d), "view2": self._aug.view(image, d)}

    @property
    def fingerprint(self) -> Optional[str]:
        """The ``datasets`` fingerprint of the images this reads (what a resumed run must match)."""
        return getattr(self.dataset, "_fingerprint", None)

    def __repr__(self) -> str:
        return (f"ImageContrastiveDataset(items={len(self)}, column={self.image_column!r}, "
                f"img_size={self.augment.img_size}, seed={self.seed})")


# --------------------------------------------------------------------------------------------
# collation
# --------------------------------------------------------------------------------------------


def collate_contrastive(items: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack items into a batch: ``view1``/``view2`` (B, 3, S, S), ``view_index`` (B,) int64 when every item
    has one (the view rows of a :class:`~mimcl_hub.data.two_sources.TwoSourceDataset`) and, where any item has them,
    ``twin_a``/``twin_b`` (B, [K,] 3, S, S), ``twin_valid`` (B[, K]) bool, ``twin_index`` (the flat (item, k)
    positions of the valid pairs, int64) and ``twin_count`` (their number, a Python int), so the training loop
    selects pairs without reading the device. An item without twin keys (e.g. from an image dataset in a
    ``ConcatDataset``) gets zero crops and ``twin_valid`` False, so mixed batches still stack."""
    if not items:
        raise ValueError("collate_contrastive: empty batch")
    for i, item in enumerate(items):
        missing = [k for k in _VIEW_KEYS if k not in item]
        if missing:
            raise ValueError(f"collate_contrastive: item {i} has no {missing} (keys: {sorted(item)})")
    batch = {k: torch.stack([item[k] for item in items]) for k in _VIEW_KEYS}
    if all("view_index" in item for item in items):          # provenance (TwoSourceDataset): the view rows
        batch["view_index"] = torch.stack([item["view_index"] for item in items])
    with_twins = [item for item in items if "twin_a" in item]
    if with_twins:
        ref = with_twins[0]
        for i, item in enumerate(items):
            if "twin_a" in item and not all(k in item for k in _TWIN_KEYS):
                raise ValueError(f"collate_contrastive: item {i} has twin_a but not all of {list(_TWIN_KEYS)}")

        def get(item, key):
            if "twin_a" in item:
                return item[key]
            return torch.zeros_like(ref[key])

        for key in _TWIN_KEYS:
            batch[key] = torch.stack([get(item, key) for item in items])
        batch["twin_valid"] = batch["twin_valid"].to(torch.bool)
        index = torch.nonzero(batch["twin_valid"].reshape(-1)).flatten()   # on the CPU, before any device
        batch["twin_index"], batch["twin_count"] = index, int(index.numel())
    return batch
