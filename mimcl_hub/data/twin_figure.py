"""The twin picture of a mined dataset, drawn from its twin columns — never by mining again.

``save_mined_twin_figure(mined, "twins.png")`` picks a clip (the one with the most twins; real footage first),
reads its twins back with :meth:`mimcl_hub.data.mining.MinedTwins.from_row`, decodes its first frame at the size
it was mined at (``twin_frame_size``, with the ``max_side`` recorded in ``twin_options``) and draws it with
:func:`mimcl_hub.mi.visualize.plot_twins`. The pairs drawn are exactly the mined ones, whatever options
``find_twins`` has today. ``mimcl mine --visualize`` and the model card of a training run use it.
"""

from __future__ import annotations

from typing import Optional

import datasets
import numpy as np

from ..errors import ClipError
from .mining import MinedTwins, with_lossless_frames
from .sources import load_clip_frames

__all__ = ["mined_twin_frame", "pick_twin_clip", "plot_mined_twins", "save_mined_twin_figure"]

#: A clip of real footage is preferred for the picture when one has at least this many twins.
MIN_REAL_TWINS = 3


def pick_twin_clip(mined: datasets.Dataset) -> int:
    """The row to draw: the mined clip with the most twins (valid anchors with a partner), preferring real
    footage — a ``clip_id`` not starting with ``"scene"`` (the procedural scenes) — when one of those has at
    least :data:`MIN_REAL_TWINS` twins. Columns are streamed, never loaded whole.

    Raises:
        ValueError: every row failed mining (or the dataset is empty).
    """
    columns = [c for c in ("twin", "twin_valid", "mine_error", "clip_id") if c in mined.column_names]
    counts, real = [], []
    for batch in mined.select_columns(columns).iter(batch_size=512):
        n = len(batch["twin"])
        for i in range(n):
            error = batch["mine_error"][i] if "mine_error" in batch else ""
            twin, valid = np.asarray(batch["twin"][i]), np.asarray(batch["twin_valid"][i], bool)
            counts.append(-1 if error else int(((twin >= 0) & valid).sum()) if twin.size == valid.size else 0)
            real.append(not str(batch["clip_id"][i] if "clip_id" in batch else "").startswith("scene"))
    counts, real = np.asarray(counts), np.asarray(real, bool)
    if not counts.size or counts.max() < 0:
        raise ValueError(f"no clip to draw: all {len(mined)} rows of the mined dataset failed mining (mine_error)")
    if (counts[real] >= MIN_REAL_TWINS).any():
        return int(np.argmax(np.where(real, counts, -1)))
    return int(np.argmax(counts))


def mined_twin_frame(mined: datasets.Dataset, index: Optional[int] = None) -> tuple[int, np.ndarray, MinedTwins]:
    """``(index, frame, twins)``: the row to draw (``index``, default :func:`pick_twin_clip`), its first frame
    (H, W, 3) uint8 at the mined size ``twin_frame_size`` and its twins read from the row's columns.

    Raises:
        ValueError: ``index`` out of range; ``ClipError`` (a ValueError): the row failed mining, its twin columns
            are inconsistent, or its clip cannot be decoded now.
    """
    if not isinstance(mined, datasets.Dataset):
        raise TypeError(f"expected a mined datasets.Dataset, got {type(mined).__name__}")
    missing = [c for c in ("twin_boxes", "twin", "twin_mi", "twin_valid", "twin_status", "twin_frame_size",
                           "twin_threshold") if c not in mined.column_names]
    if missing:
        raise ValueError(f"the dataset has no twin column(s) {missing}: mine it first (mimcl_hub.data.mine_dataset "
                         "or `mimcl mine`)")
    if index is None:
        index = pick_twin_clip(mined)
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < len(mined):
        raise ValueError(f"clip index {index!r} is out of range for the {len(mined)} mined clips")
    row = with_lossless_frames(mined.select([int(index)]))[0]
    try:
        twins = MinedTwins.from_row(row, index=int(index))
    except ClipError as e:
        raise ClipError(f"{e}; pick another clip", reason=e.reason) from e
    height, width = twins.frame_size
    max_side = twins.options.get("max_side", max(height, width))
    if row.get("frames") is None and row.get("num_frames"):
        row = dict(row, num_frames=2)                    # a video window: decode its first frames only
    frame = load_clip_frames(row, max_side=max_side)[0]
    if frame.shape[:2] != (height, width):               # a source decoded at another size today: fit the boxes
        import cv2

        frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
    return int(index), frame, twins


def plot_mined_twins(mined: datasets.Dataset, index: Optional[int] = None, title: Optional[str] = None):
    """The matplotlib Figure of :func:`mimcl_hub.mi.visualize.plot_twins` for one mined row (see
    :func:`mined_twin_frame`); ``title`` defaults to the clip id."""
    from ..mi.visualize import plot_twins

    index, frame, twins = mined_twin_frame(mined, index)
    return plot_twins(frame, twins, title=title if title is not None else twins.clip_id)


def save_mined_twin_figure(mined: datasets.Dataset, path: str, index: Optional[int] = None,
                           title: Optional[str] = None) -> str:
    """Draw one mined clip's twins (:func:`plot_mined_twins`) to a PNG at ``path`` (atomically); returns
    ``path``."""
    from ..mi.visualize import save_figure

    return save_figure(plot_mined_twins(mined, index, title), path)
