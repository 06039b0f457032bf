"""The clip bank: mined clips decoded once into memory, the source of both InfoAug branches.

:func:`load_twin_clips` turns a mined dataset (the twin columns of :func:`mimcl_hub.data.mine_dataset`)
into a :class:`ClipBank`: frames as uint8 tensors at the size the twins were mined at, with the patch boxes,
twin indices, validity and tracks in the same pixels.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional

import datasets
import numpy as np
import torch

from .._safety import check_number
from ..errors import ClipError
from .mining import with_lossless_frames
from .sources import load_clip_frames
from .video import resize_max_side

logger = logging.getLogger(__name__)

__all__ = ["REQUIRED_TWIN_COLUMNS", "ClipBank", "is_mined", "load_twin_clips"]

#: Twin columns ``load_twin_clips`` needs (the rest of ``TWIN_FEATURES`` is informative).
REQUIRED_TWIN_COLUMNS = ("twin_boxes", "twin", "twin_valid", "twin_tracks", "twin_frame_size", "mine_error")


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
    rows left out (``mine_error`` set) to their reason; ``mined`` is the mined ``datasets.Dataset``
    the bank was loaded from (None for a bank built by hand), so its other columns (``twin_mi``,
    ``twin_status`` ...) stay at hand: row ``rows[c]`` of ``mined`` is clip ``c``. Memory is ``nbytes``
    (the frames dominate: T x 3 x H x W bytes per clip; the 18 bundled 24-frame clips at max_side 160
    take ~18 MiB, the offline default with its 4 scenes 22.8 MiB).
    """

    frames: list[torch.Tensor]
    boxes: list[np.ndarray]
    twin: list[np.ndarray]
    valid: list[np.ndarray]
    tracks: list[np.ndarray]
    clip_ids: list[str] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)
    mined: Optional[datasets.Dataset] = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.frames)
        if not self.clip_ids:
            self.clip_ids = [f"clip {c}" for c in range(n)]
        if not self.rows:
            self.rows = list(range(n))
        if self.mined is not None and not isinstance(self.mined, datasets.Dataset):
            raise ValueError(f"ClipBank: mined must be a datasets.Dataset or None, got {type(self.mined).__name__}")
        lengths = {name: len(getattr(self, name)) for name in ("boxes", "twin", "valid", "tracks", "clip_ids", "rows")}
        if any(v != n for v in lengths.values()):
            raise ValueError(f"ClipBank: {n} frame tensors but per-clip lists of lengths {lengths}")
        for c in range(n):
            self._check_clip(c)

    def _check_clip(self, c: int) -> None:
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


def is_mined(dataset: datasets.Dataset) -> bool:
    """True when ``dataset`` has every twin column :func:`load_twin_clips` needs."""
    return all(c in dataset.column_names for c in REQUIRED_TWIN_COLUMNS)


def _check_mined_columns(mined: datasets.Dataset, what: str = "load_twin_clips") -> None:
    if not isinstance(mined, datasets.Dataset):
        raise ValueError(f"{what}: expected a mined datasets.Dataset, got {type(mined).__name__}")
    missing = [c for c in REQUIRED_TWIN_COLUMNS if c not in mined.column_names]
    if missing:
        raise ValueError(
            f"{what}: the dataset has no twin column(s) {missing} (columns: {mined.column_names}); "
            "mine it first with mimcl_hub.data.mine_dataset or `mimcl mine`"
        )


def load_twin_clips(mined: datasets.Dataset, max_side: Optional[int] = None) -> ClipBank:
    """Decode every mined, error-free clip of ``mined`` once into a :class:`ClipBank` (``bank.mined`` is
    ``mined``).

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
    check_number("load_twin_clips: max_side", max_side, 8, None, integer=True, allow_none=True)
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
    bank = ClipBank(frames, boxes, twin, valid, tracks, ids, rows, skipped, mined=mined)
    logger.info("clip bank: %s", bank.summary())
    return bank


def _resize_exact(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    import cv2

    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
