"""Small helpers several test modules share (real files and real capabilities, never stand-ins)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def save_test_vit_encoder(folder: Path, model_id: str = "t/e") -> Path:
    """A real encoder folder: timm's ``test_vit`` (seed 0) built and saved at 16 px (its timm default is 160 px)."""
    import torch

    from mimcl_hub.hub import save_encoder
    from mimcl_hub.models import create_backbone

    torch.manual_seed(0)
    save_encoder(create_backbone("test_vit", img_size=16).eval(), folder, {"objective": "simclr", "model_id": model_id})
    return folder


def fresh_accelerate_state():
    """Fixture body (wrap with ``pytest.fixture(autouse=True)``): each in-process ``train()`` builds its own
    Accelerator (precision / cpu may differ), so Accelerate's process-wide state is reset after each test."""
    yield
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def save_mined_scenes(tmp_path_factory, n: int, seed: int, num_frames: int, name: str = "scenes",
                      **scene_kwargs) -> str:
    """``n`` procedural scenes (``make_scenes``) mined at ``max_side=128`` and saved with ``save_to_disk`` into a new
    temporary folder; returns its path."""
    from mimcl_hub.data import make_scenes, mine_dataset

    folder = tmp_path_factory.mktemp("data") / name
    mine_dataset(make_scenes(n, seed=seed, num_frames=num_frames, cache_dir=str(tmp_path_factory.mktemp("cache")),
                             **scene_kwargs), max_side=128).save_to_disk(str(folder))
    return str(folder)


def mined_scenes(tmp_path_factory) -> str:
    """Fixture body (wrap with ``pytest.fixture(scope="module")``): two procedural scenes (16 frames, 128 px) mined
    and saved: 64 items, 64 twin pairs."""
    return save_mined_scenes(tmp_path_factory, 2, seed=0, num_frames=16, height=128, width=128)


def mount_namespace_available() -> str:
    """'' when ``unshare -m`` + tmpfs mounts work here, else why not."""
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return "unshare / mount not installed"
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                            "d=$(mktemp -d) && mount -t tmpfs -o size=1m tmpfs $d && umount $d && rmdir $d"],
                           capture_output=True, text=True)
    return "" if probe.returncode == 0 else f"mount namespaces not permitted here: {probe.stderr.strip()[:200]}"
