"""Augmentations of both InfoAug branches (DESIGN.md, method item 7): the settings, the seeded draws and the
kernels.

- :class:`AugmentConfig` — the settings, validated once when it is built (each field carries its own check
  in its dataclass field metadata); frozen, so everything downstream trusts it.
- :class:`Draws` — uniform numbers from one seeded ``torch.Generator``; :func:`mix` makes its seed from
  ``(seed, epoch, index)``, so an item's draws never depend on the global RNGs, the worker or the process.
- :class:`Augmenter` — the kernels: a SimCLR view of a frame, a twin crop around a tracked patch centre.

The kernels are torchvision ``transforms.v2`` functions on tensors: the crop (and resize, with antialias)
on uint8 frames, then flip, colour jitter (random order), grey scale and normalisation on the small float
crop.
"""

from __future__ import annotations

import hashlib
import math
import struct
from dataclasses import dataclass, field, fields
from typing import Any, Callable

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF

from .._safety import check_number

__all__ = ["AugmentConfig", "Augmenter", "Draws", "OneThread", "adjust_hue", "check_augment", "mix"]


# --------------------------------------------------------------------------------------------
# settings
# --------------------------------------------------------------------------------------------


def _number(low=None, high=None, **kw) -> Callable[[str, Any], Any]:
    """A field check: a number in the range (see ``_safety.check_number``)."""
    return lambda name, value: check_number(name, value, low, high, **kw)


def _numbers(count: int, low=None, high=None, **kw) -> Callable[[str, Any], Any]:
    """A field check: ``count`` numbers, each in the range, as a tuple of floats."""

    def check(name: str, value: Any) -> tuple:
        if not isinstance(value, (tuple, list)) or len(value) != count:
            raise ValueError(f"{name} must be {count} numbers, got {value!r}")
        return tuple(float(check_number(f"{name}[{i}]", v, low, high, **kw)) for i, v in enumerate(value))

    return check


def _crop_scale(name: str, value: Any) -> tuple:
    lo, hi = _numbers(2, 0, 1, low_open=True)(name, value)
    if lo > hi:
        raise ValueError(f"{name} must be (lo, hi) with lo <= hi, got {value!r}")
    return lo, hi


def _setting(default: Any, check: Callable[[str, Any], Any], help: str) -> Any:
    return field(default=default, metadata={"check": check, "help": help})


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentations of both branches; defaults are the SimCLR CIFAR recipe (Chen et al. 2020,
    arXiv 2002.05709, as in solo-learn): random resized crop of scale (0.2, 1), flip, colour jitter
    (brightness / contrast / saturation = ``jitter_strength``, hue = ``jitter_strength / 4``,
    random order) with probability 0.8, grey scale with probability 0.2, CIFAR-10 normalisation.

    Twin crops (MI branch): a square window of side ``twin_context`` x the patch box side
    (geometric mean of its width and height) x a random factor in ``1 +- twin_scale_jitter``,
    centred on the tracked patch centre, then flipped with ``flip_p`` and colour-jittered lightly
    (``twin_jitter_strength``, probability ``jitter_p``); no grey scale.

    Every field is checked when the config is built (``ValueError`` naming every bad field); the config
    is frozen, so the augmenter and the datasets take it as valid. ``crop_scale``, ``mean`` and ``std``
    are stored as tuples of floats.
    """

    img_size: int = _setting(32, _number(8, None, integer=True), "side S of every view and twin crop (px)")
    crop_scale: tuple[float, float] = _setting((0.2, 1.0), _crop_scale, "area range of the random resized crop")
    flip_p: float = _setting(0.5, _number(0, 1), "probability of a horizontal flip")
    jitter_strength: float = _setting(0.4, _number(0, 2), "colour jitter of the views")
    jitter_p: float = _setting(0.8, _number(0, 1), "probability of colour jitter")
    grayscale_p: float = _setting(0.2, _number(0, 1), "probability of grey scale (views only)")
    twin_context: float = _setting(1.0, _number(0, 16, low_open=True), "twin window side / patch box side")
    twin_scale_jitter: float = _setting(0.2, _number(0, 1, high_open=True), "random factor 1 +- this on the window")
    twin_jitter_strength: float = _setting(0.2, _number(0, 2), "colour jitter of the twin crops")
    mean: tuple[float, float, float] = _setting((0.4914, 0.4822, 0.4465), _numbers(3), "normalisation mean (RGB)")
    std: tuple[float, float, float] = _setting((0.2470, 0.2435, 0.2616), _numbers(3, 0, None, low_open=True),
                                               "normalisation std (RGB), > 0")

    def __post_init__(self) -> None:
        bad = []
        for f in fields(self):
            value = getattr(self, f.name)
            try:
                checked = f.metadata["check"](f.name, value)
            except ValueError as error:
                bad.append(f"{f.name}={value!r} ({error})")
                continue
            if isinstance(checked, tuple):
                object.__setattr__(self, f.name, checked)
        if bad:
            raise ValueError("invalid AugmentConfig: " + "; ".join(bad))


def check_augment(augment: Any, what: str) -> AugmentConfig:
    """``augment`` when it is an :class:`AugmentConfig` (valid by construction), else ``ValueError``."""
    if not isinstance(augment, AugmentConfig):
        raise ValueError(f"{what}: augment must be an AugmentConfig, got {type(augment).__name__}")
    return augment


# --------------------------------------------------------------------------------------------
# seeded draws
# --------------------------------------------------------------------------------------------


def mix(*values: int) -> int:
    """A 63-bit seed from a few integers (blake2b of their 64-bit two's complement)."""
    data = struct.pack(f"<{len(values)}Q", *(int(v) & 0xFFFFFFFFFFFFFFFF for v in values))
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little") >> 1


class Draws:
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


# --------------------------------------------------------------------------------------------
# kernels
# --------------------------------------------------------------------------------------------

_LOG_RATIO = (math.log(3 / 4), math.log(4 / 3))


def _resized_crop_params(height: int, width: int, scale: tuple[float, float], d: Draws) -> tuple[int, int, int, int]:
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


def _clamp_window(start: float, side: int, extent: int) -> int:
    """Window start (px, continuous coordinates: the window spans [start, start + side)) rounded
    and clamped so the window stays inside [0, extent); a window larger than the frame covers it
    all and stays as close as possible to centred on the requested position."""
    start = int(math.floor(start + 0.5))
    lo, hi = min(0, extent - side), max(0, extent - side)
    return min(max(start, lo), hi)


def adjust_hue(x: torch.Tensor, factor: float) -> torch.Tensor:
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


class Augmenter:
    """The augmentation kernels of one (valid, frozen) :class:`AugmentConfig`; normalisation constants
    precomputed. Every random choice comes from the :class:`Draws` passed in."""

    def __init__(self, cfg: AugmentConfig):
        self.cfg = cfg
        self.size = [int(cfg.img_size), int(cfg.img_size)]
        self.mean = torch.tensor(cfg.mean, dtype=torch.float32).view(3, 1, 1)
        self.inv_std = 1.0 / torch.tensor(cfg.std, dtype=torch.float32).view(3, 1, 1)

    def _finish(self, x: torch.Tensor, d: Draws, strength: float, grayscale_p: float) -> torch.Tensor:
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
    def _jitter(x: torch.Tensor, s: float, d: Draws) -> torch.Tensor:
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
                x = adjust_hue(x, max(-0.5, min(0.5, factors[3])))
        return x

    def view(self, image: torch.Tensor, d: Draws) -> torch.Tensor:
        """A SimCLR view of a uint8 (3, H, W) image -> float32 (3, S, S)."""
        height, width = image.shape[-2:]
        top, left, h, w = _resized_crop_params(height, width, self.cfg.crop_scale, d)
        x = TF.resized_crop_image(image, top, left, h, w, self.size, antialias=True)
        return self._finish(x, d, self.cfg.jitter_strength, self.cfg.grayscale_p)

    def twin(self, image: torch.Tensor, cx: float, cy: float, box_side: float, d: Draws) -> torch.Tensor:
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


class OneThread:
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
