"""The MI branch read from mined crops: twin pairs without any video (DESIGN.md, method item 7).

:class:`TwinPairDataset` is a map-style ``torch.utils.data.Dataset`` over the rows of a mined dataset that holds
the materialised patch crops (:mod:`mimcl_hub.data.crops`, ``mimcl mine`` output). Pair ``j`` is one
(anchor, partner) of one clip row; its item is ``twin_a``, ``twin_b`` (float32 (3, S, S) twin crops) and
``twin_valid`` (True).

- **Pairs.** ``twin_mode="mi"``: every (anchor, twin) of a row where both patches are valid, distinct and have
  stored crops, in (row, anchor) order. ``"random"`` (the paper's ablation, the semantics of
  :class:`~mimcl_hub.data.contrastive.TwinContrastiveDataset`): the same anchors, each with a uniformly random
  *other* valid patch of the same clip that has crops, drawn per item. Both modes have the same pairs count.
- **Frames.** Anchor and partner each get one of their stored crops, uniformly and independently (so the two
  crops usually come from different frames, as in the clip-bank dataset).
- **Crops.** :meth:`~mimcl_hub.data.augment.Augmenter.twin` on the stored crop, around its stored
  ``crop_center`` with the stored ``crop_side`` (both in crop pixels): the same window, jitter and colour
  augmentation as on a full frame, inside the stored context margin.

Memory. The mined rows stay in their memory-mapped Arrow files (``datasets`` reads Parquet into its Arrow cache
and maps it); an item reads one row's small columns and decodes only the two JPEG crops it uses. What the object
holds per clip row is one int64 (the pair offsets, :attr:`TwinPairDataset.offsets`); it pickles small (the
``datasets.Dataset`` pickles its file paths), so DataLoader workers start fast. Counting the pairs at
construction reads the ``twin``, ``twin_valid`` and ``crop_patch`` columns once, in batches of
:data:`SCAN_BATCH` rows.

Determinism. Every random choice of item ``j`` in epoch ``e`` comes from a :class:`~mimcl_hub.data.augment.Draws`
seeded from ``(seed, e, j)``; a caller that combines pairs into other items passes its own draws to
:meth:`TwinPairDataset.choose` / :meth:`TwinPairDataset.crops` (see :mod:`mimcl_hub.data.two_sources`).

:class:`CyclicOrder` maps a running slot number onto pair indices, one pseudo-random permutation per pass over
the pairs, in O(1) memory (an affine bijection mod M).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import datasets
import numpy as np
import torch

from .._safety import check_number, check_seed, is_int
from .augment import AugmentConfig, Augmenter, Draws, OneThread, check_augment, mix
from .crops import CROP_FEATURES, decode_crop
from .contrastive import _EpochMixin, _epoch_tensor

__all__ = ["PAIR_MODES", "SCAN_BATCH", "PairChoice", "PairCounts", "CyclicOrder", "TwinPairDataset",
           "count_pairs", "patches_with_crops", "pick_partner_and_crops"]

#: Twin modes a pair dataset serves ("none" has no MI branch, so no pair dataset).
PAIR_MODES = ("mi", "random")
#: Rows read per Arrow batch while counting the pairs.
SCAN_BATCH = 2048
#: The columns an item reads (besides them only ``mine_error`` is read, once, to count failed rows).
ROW_COLUMNS = ("twin", "twin_valid", "crop_patch", "crop_frame", "crop_center", "crop_side", "crop_image")


@dataclass(frozen=True)
class PairChoice:
    """One MI-branch pair: ``anchor`` and ``partner`` patches of clip row ``row``, and the stored crop of each
    (``crop_a`` / ``crop_b``: positions in the row's crop lists; ``frame_a`` / ``frame_b``: their frames)."""

    row: int
    anchor: int
    partner: int
    crop_a: int
    crop_b: int
    frame_a: int
    frame_b: int


@dataclass(frozen=True)
class PairCounts:
    """What a mined dataset offers the MI branch (:func:`count_pairs`): clip rows, rows that failed mining,
    valid patches, mined twins (patches with a twin) and usable pairs (both patches valid, distinct, with crops)."""

    rows: int
    failed: int
    valid_patches: int
    twins: int
    pairs: int


def _flat(column) -> "np.ndarray":
    import pyarrow as pa

    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return array


def _values(list_array, dtype) -> np.ndarray:
    """The flattened values of a (sliced) Arrow list array as numpy."""
    return np.asarray(list_array.flatten().to_numpy(zero_copy_only=False), dtype=dtype)


def _usable_anchors(twin: np.ndarray, valid: np.ndarray, has: np.ndarray) -> np.ndarray:
    """(P,) bool: patches whose mined twin makes a usable pair (both valid, distinct, both with crops)."""
    p = len(twin)
    ok = (twin >= 0) & (twin < p) & (twin != np.arange(p))
    partner = np.where(ok, twin, 0)
    return ok & valid & valid[partner] & has & has[partner]


def patches_with_crops(num_patches: int, crop_patch: np.ndarray) -> np.ndarray:
    """(P,) bool: the patches of a row that have at least one stored crop."""
    has = np.zeros(num_patches, bool)
    has[crop_patch] = True
    return has


def pick_partner_and_crops(twin_mode: str, anchor: int, twin: np.ndarray, valid: np.ndarray, has: np.ndarray,
                           crop_patch: np.ndarray, randint) -> tuple[int, int, int]:
    """(partner, crop of the anchor, crop of the partner) of a usable ``anchor`` of one row; ``randint(n)`` draws an
    int in [0, n). The partner is the mined twin (``"mi"``) or, for ``"random"``
    (:func:`mimcl_hub.mi.twins.random_twins` semantics), uniform over the *other* valid patches with crops; each
    patch gets one of its stored crops uniformly. Draws, in order: the random partner (``"random"`` only), the anchor's crop, the partner's crop."""
    partner = int(twin[anchor])
    if twin_mode == "random":
        others = np.flatnonzero(valid & has)
        choice = int(others[randint(len(others) - 1)])
        partner = choice if choice != anchor else int(others[-1])
    crops_a = np.flatnonzero(crop_patch == anchor)
    crops_b = np.flatnonzero(crop_patch == partner)
    crop_a = int(crops_a[randint(len(crops_a))])
    return partner, crop_a, int(crops_b[randint(len(crops_b))])


def _scan(table, start: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of an Arrow batch (columns twin, twin_valid, crop_patch): usable pairs, valid patches, twins.
    Raises ``ValueError`` naming the first row (``start`` + position) whose columns do not fit together."""
    import pyarrow.compute as pc

    twin, valid, crops = (_flat(table.column(name)) for name in ("twin", "twin_valid", "crop_patch"))
    n = len(twin)
    lens = pc.list_value_length(twin).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    vlens = pc.list_value_length(valid).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    if (lens != vlens).any():
        row = int(np.flatnonzero(lens != vlens)[0])
        raise ValueError(f"row {start + row}: twin has {lens[row]} entries but twin_valid {vlens[row]}")
    tw = _values(twin, np.int64)
    vl = _values(valid, bool)
    first = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)       # each row's first patch in tw
    rows_t = np.repeat(np.arange(n), lens)
    local = np.arange(len(tw)) - first[rows_t]
    bad = (tw < -1) | (tw >= lens[rows_t])
    if bad.any():
        row = int(rows_t[np.flatnonzero(bad)[0]])
        raise ValueError(f"row {start + row}: twin indices outside -1..{lens[row] - 1}")
    cp = _values(crops, np.int64)
    clens = pc.list_value_length(crops).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    rows_c = np.repeat(np.arange(n), clens)
    bad = (cp < 0) | (cp >= lens[rows_c])
    if bad.any():
        row = int(rows_c[np.flatnonzero(bad)[0]])
        raise ValueError(f"row {start + row}: crop_patch holds patch indices outside 0..{lens[row] - 1}")
    has = np.zeros(len(tw), bool)
    has[first[rows_c] + cp] = True
    ok = (tw >= 0) & (tw != local)
    partner = first[rows_t] + np.where(ok, tw, 0)
    usable = ok & vl & vl[partner] & has & has[partner]
    return (np.bincount(rows_t[usable], minlength=n), np.bincount(rows_t[vl], minlength=n),
            np.bincount(rows_t[tw >= 0], minlength=n))


def count_pairs(mined: datasets.Dataset, batch_size: int = SCAN_BATCH) -> tuple[np.ndarray, PairCounts]:
    """(offsets, counts) of a mined dataset with crops: ``offsets`` (rows + 1,) int64 with
    ``offsets[r + 1] - offsets[r]`` = usable pairs of row ``r`` (:class:`TwinPairDataset` pairs), and the
    :class:`PairCounts`. Reads the ``twin``, ``twin_valid``, ``crop_patch`` and ``mine_error`` columns in Arrow
    batches (memory: one batch)."""
    check_number("batch_size", batch_size, 1, None, integer=True)
    import pyarrow.compute as pc

    arrow = mined.with_format("arrow", columns=["twin", "twin_valid", "crop_patch", "mine_error"])
    per_row = np.zeros(len(mined), np.int64)
    valid = twins = failed = 0
    for start in range(0, len(mined), batch_size):
        batch = arrow[start:start + batch_size]
        pairs, v, t = _scan(batch, start)
        per_row[start:start + len(pairs)] = pairs
        valid, twins = valid + int(v.sum()), twins + int(t.sum())
        errors = batch.column("mine_error")
        failed += int(pc.sum(pc.greater(pc.utf8_length(errors.fill_null("")), 0)).as_py() or 0)
    offsets = np.zeros(len(mined) + 1, np.int64)
    np.cumsum(per_row, out=offsets[1:])
    return offsets, PairCounts(rows=len(mined), failed=failed, valid_patches=valid, twins=twins,
                               pairs=int(offsets[-1]))


class CyclicOrder:
    """Slot ``s`` (0, 1, 2, ... without end) -> an index in ``range(size)``, every index once per pass.

    Pass ``c = s // size`` is a pseudo-random permutation of ``range(size)``, the affine bijection
    ``q -> (a_c * q + b_c) mod size`` with ``a_c`` coprime to ``size`` and ``a_c``, ``b_c`` drawn from
    ``(seed, c)`` (blake2b, :func:`~mimcl_hub.data.augment.mix`). Memory is O(1) whatever ``size`` (no
    ``randperm`` of all pairs); the order of one pass is a fixed stride through the indices from a random start,
    which is enough here because the DataLoader's sampler already shuffles which slots a batch holds."""

    __slots__ = ("size", "seed", "_pass", "_a", "_b")

    def __init__(self, size: int, seed: int = 0):
        self.size = int(check_number("size", size, 1, None, integer=True))
        self.seed = check_seed(seed)
        self._pass, self._a, self._b = -1, 1, 0

    def coefficients(self, cycle: int) -> tuple[int, int]:
        """(a, b) of pass ``cycle``."""
        if self.size == 1:
            return 1, 0
        a = 1 + mix(self.seed, cycle, 1) % (self.size - 1)
        while math.gcd(a, self.size) != 1:
            a = a % (self.size - 1) + 1
        return a, mix(self.seed, cycle, 2) % self.size

    def __call__(self, slot: int) -> int:
        if not is_int(slot) or slot < 0:
            raise ValueError(f"CyclicOrder: slot must be an int >= 0, got {slot!r}")
        cycle, position = divmod(int(slot), self.size)
        if cycle != self._pass:
            self._a, self._b = self.coefficients(cycle)
            self._pass = cycle
        return (self._a * position + self._b) % self.size


@dataclass(frozen=True)
class _Row:
    twin: np.ndarray        # (P,) int64
    valid: np.ndarray       # (P,) bool
    crop_patch: np.ndarray  # (C,) int64
    crop_frame: np.ndarray  # (C,) int64
    crop_center: np.ndarray  # (C, 2) float64, crop pixels
    crop_side: np.ndarray   # (C,) float64, crop pixels
    images: object          # Arrow StructArray (bytes, path) of the row's C crops (a zero-copy slice)

    @property
    def has_crops(self) -> np.ndarray:
        return patches_with_crops(len(self.twin), self.crop_patch)


class TwinPairDataset(_EpochMixin, torch.utils.data.Dataset):
    """Twin pairs of a mined dataset with crops, read without videos (see the module docstring).

    Args:
        mined: a mined ``datasets.Dataset`` with the twin columns and the crop columns
            (``mimcl mine`` output read with ``load_dataset(DIR, split="train")``, a Hub dataset, or a
            ``save_to_disk`` folder of rows mined with crops).
        augment: the (valid) :class:`AugmentConfig`; ``img_size`` is the side S of the crops served.
        twin_mode: ``"mi"`` or ``"random"``.
        seed: seed of the per-item draws.
        source: how to name the dataset in errors (e.g. ``"--twin_dataset 'mined/'"``).

    Item ``j``: ``twin_a``, ``twin_b`` float32 (3, S, S), ``twin_valid`` True. ``len`` = the number of pairs.

    Raises ``ValueError`` when a twin or crop column is missing, when rows' columns do not fit together (naming
    the row), or when there is no pair (with the counts and the mining options to change).
    """

    def __init__(self, mined: datasets.Dataset, augment: AugmentConfig, twin_mode: str = "mi", seed: int = 0,
                 source: Optional[str] = None):
        label = source or "TwinPairDataset"
        if not isinstance(mined, datasets.Dataset):
            raise ValueError(f"{label}: expected a mined datasets.Dataset, got {type(mined).__name__}")
        if twin_mode not in PAIR_MODES:
            raise ValueError(f"{label}: twin_mode must be one of {list(PAIR_MODES)} (twin_mode 'none' reads no pairs), "
                             f"got {twin_mode!r}")
        needed = [*ROW_COLUMNS, "mine_error"]
        missing = [c for c in needed if c not in mined.column_names]
        if missing:
            raise ValueError(f"{label}: no column(s) {missing} (columns: {mined.column_names}); it needs the twin "
                             f"columns and the crop columns {list(CROP_FEATURES)} that `mimcl mine` writes")
        self.augment = check_augment(augment, label)
        self.twin_mode = twin_mode
        self.seed = check_seed(seed)
        self.source = source
        self.fingerprint: Optional[str] = getattr(mined, "_fingerprint", None)
        try:
            self.offsets, self.counts = count_pairs(mined)
        except ValueError as error:
            raise ValueError(f"{label}: {error}") from error
        if self.counts.pairs == 0:
            c = self.counts
            raise ValueError(
                f"{label} has no twin pairs: {c.rows} rows ({c.failed} failed mining), {c.valid_patches} valid "
                f"patches, {c.twins} twins, 0 pairs whose two patches are valid and have crops. Mine with other "
                "options (`mimcl mine ... --significance 0`, a lower --mi_threshold, a smaller --noise_factor or "
                "--motion_floor, longer clips with more motion), or train with --twin_mode none")
        self.rows = mined.with_format("arrow", columns=list(ROW_COLUMNS))
        self._table = None          # the raw Arrow table of the row columns (see _row_table), never pickled
        self._aug = Augmenter(augment)
        self._epoch = _epoch_tensor()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_table"] = None      # the datasets.Dataset pickles its file paths; a raw table would pickle its data
        return state

    # ------------------------------------------------------------------------------------ size
    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def num_pairs(self) -> int:
        return len(self)

    @property
    def num_rows(self) -> int:
        return len(self.offsets) - 1

    # ------------------------------------------------------------------------------------ reading
    def _row_table(self, row: int):
        """Row ``row`` as a one-row Arrow table of :data:`ROW_COLUMNS` (a zero-copy slice of the mapped file; the
        ``datasets`` query path when the dataset has an indices mapping, ~30x slower)."""
        if self.rows._indices is not None:
            return self.rows[row]
        if self._table is None:
            self._table = self.rows.data.table.select(list(ROW_COLUMNS))
        return self._table.slice(row, 1)

    def read_row(self, row: int) -> _Row:
        """Row ``row``'s twin and crop columns as numpy (the crop images as an Arrow slice, not decoded)."""
        table = self._row_table(int(row))

        def values(name, dtype):
            return _values(_flat(table.column(name)), dtype)

        centers = _flat(table.column("crop_center")).flatten()
        return _Row(twin=values("twin", np.int64), valid=values("twin_valid", bool),
                    crop_patch=values("crop_patch", np.int64), crop_frame=values("crop_frame", np.int64),
                    crop_center=_values(centers, np.float64).reshape(-1, 2),
                    crop_side=values("crop_side", np.float64), images=_flat(table.column("crop_image")).flatten())

    def locate(self, index: int) -> tuple[int, int]:
        """Pair ``index`` -> (row, k): the k-th usable anchor (in patch order) of clip row ``row``."""
        index = self._check_index(index, len(self))
        row = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return row, index - int(self.offsets[row])

    def choose(self, index: int, d: Draws) -> tuple[PairChoice, _Row]:
        """The content choices of pair ``index`` with the draws ``d`` (partner for "random", one stored crop of
        each patch), and the row read for them."""
        row, k = self.locate(index)
        data = self.read_row(row)
        has = data.has_crops
        anchor = int(np.flatnonzero(_usable_anchors(data.twin, data.valid, has))[k])
        partner, ca, cb = pick_partner_and_crops(self.twin_mode, anchor, data.twin, data.valid, has, data.crop_patch,
                                                 d.randint)
        choice = PairChoice(row=row, anchor=anchor, partner=partner, crop_a=ca, crop_b=cb,
                            frame_a=int(data.crop_frame[ca]), frame_b=int(data.crop_frame[cb]))
        return choice, data

    def crop_image(self, data: _Row, crop: int) -> torch.Tensor:
        """Stored crop ``crop`` of a row as uint8 (3, s, s) (the only decoding an item does)."""
        image = decode_crop(data.images[crop].as_py())
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))

    def crops(self, choice: PairChoice, data: _Row, d: Draws) -> tuple[torch.Tensor, torch.Tensor]:
        """The augmented twin crops (float32 (3, S, S) each) of a chosen pair."""
        out = []
        for crop in (choice.crop_a, choice.crop_b):
            cx, cy = data.crop_center[crop]
            out.append(self._aug.twin(self.crop_image(data, crop), float(cx), float(cy), float(data.crop_side[crop]), d))
        return out[0], out[1]

    def describe(self, index: int) -> PairChoice:
        """The choices of item ``index`` in the current epoch."""
        return self.choose(index, Draws(mix(self.seed, self.epoch, index)))[0]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        d = Draws(mix(self.seed, self.epoch, index))
        with OneThread():
            choice, data = self.choose(index, d)
            a, b = self.crops(choice, data, d)
        return {"twin_a": a, "twin_b": b, "twin_valid": torch.tensor(True)}

    def summary(self) -> dict:
        """The counts for the run card: rows, failed rows, valid patches, twins, pairs, twin_mode."""
        c = self.counts
        return {"clips": c.rows, "failed_rows": c.failed, "valid_patches": c.valid_patches, "twins": c.twins,
                "twin_pairs": c.pairs, "twin_mode": self.twin_mode}

    def __repr__(self) -> str:
        return (f"TwinPairDataset(twin_mode={self.twin_mode!r}, pairs={len(self)}, rows={self.num_rows}, "
                f"img_size={self.augment.img_size}, seed={self.seed})")
