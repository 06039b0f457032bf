"""Procedural clips with ground truth: the test bed of the MI pipeline.

A scene is a strongly textured static background with textured entities (rectangles / ellipses)
moving over it. Entities come in *groups*: the entities of one group share one random walk (plus a
little independent noise), so their frame-to-frame displacements carry high mutual information;
*distractors* walk on their own, so their displacements carry ~0 MI with everything else. Ground
truth: which pixel of frame 0 belongs to which entity (``labels``), which entity belongs to which
group (``entity_group``), every entity centre in every frame (``positions``) and the camera offset
(``camera``). :func:`patch_groups` turns the ground truth into the expected group of each grid
patch, which is what the twin miner should recover.

Motion model (per axis, per group, ``theta = mean_reversion``, ``sigma = motion_std``)::

    x_{t+1} = x_t + d_t + eps_t - theta * (x_t - home),   d_t ~ N(0, sigma^2) shared by the group,
                                                           eps_t ~ N(0, (coupling_noise * sigma)^2)
                                                           independent per entity

an Ornstein-Uhlenbeck walk around the entity's home position. Written as ``x_t = home + g_t +
n_t`` it splits exactly into a group part ``g`` (driven by ``d``) and an entity part ``n``
(driven by ``eps``); ``g`` is kept within ``max_excursion - r_n`` and ``n`` within ``r_n`` per
axis (``r_n = min(max_excursion / 2, 4 * std(n))``), so every entity stays within
``max_excursion`` px of its home. The bound on ``g`` is applied to the whole group at once, so it
never breaks the coupling. With the defaults (``sigma = 1.5``, ``theta = 0.5``) the displacement of
an entity has a standard deviation of ~1.7 px/frame and the coupled-pair displacement correlation
is ~0.98 (``1 / (1 + coupling_noise^2)``).

Layout: the usable part of frame 0 is cut into one cell per entity (a random guillotine
partition into near-equal areas, or cells of a regular grid when that packs better); each entity is placed inside its cell with ``max_excursion`` +
1 px of margin on every side, so entities can never overlap or leave the frame. 128x128 frames
hold six entities of 24-28 x 24-44 px by default (three cells across a 128 px side leave
``42 - 2 * 6 - 2 = 28`` px). An impossible request raises ``ValueError``.

Camera (``pan=True``): the world (background) is rendered on a canvas ``pan_range`` px larger
than the frame and a window is cropped from it. The window moves with a smooth random walk
(per-axis velocity AR(1), ``pan_speed`` px/frame rms) reflected into a band of ``pan_range`` px,
so everything in the frame (background and entities) moves by ``-camera[t]``::

    frame_t[y, x] = frame_0[y + camera[t, 1], x + camera[t, 0]]   (background pixels)
    positions[t]  = home + g_t + n_t - camera[t]

``camera[0] == (0, 0)``. Entities are placed so they stay in the frame whatever the camera does.

Illumination (``illumination=True``): every frame is multiplied by a per-channel gain whose
brightness moves smoothly (a half cosine) from one end of ``illumination_gain`` to the other
(direction at random, e.g. 0.8 -> 1.2) over the clip, with a small random colour tint that grows
along the same ramp; see :func:`_illumination_gain`. ``Scene.gain`` records it.

Coordinates: pixel ``(x, y)`` has its centre at integer coordinates (the OpenCV / LK
convention). Frame 0 is rendered at integer positions, so ``labels`` is exact (no anti-aliasing);
later frames are rendered with sub-pixel translations (``cv2.warpAffine``, bilinear).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np

__all__ = [
    "Scene",
    "SceneConfig",
    "render_scene",
    "make_scenes",
    "scene_seed",
    "scene_features",
    "patch_groups",
    "patch_entities",
    "BACKGROUND",
    "MIXED",
]

#: ``patch_groups`` value for a patch covered by background.
BACKGROUND = -1
#: ``patch_groups`` / ``patch_entities`` value for a patch with no dominant entity / background.
MIXED = -2

_PAD = 2  # sprite / canvas padding (px) so that bilinear interpolation never reads outside
_GAP = 2  # minimum free space (px) between the excursion boxes of two entities
_SHAPES = ("rect", "ellipse")


# --------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_num(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


@dataclass(frozen=True)
class SceneConfig:
    """Every knob of :func:`render_scene` except the seed (see the module docstring)."""

    num_frames: int = 48  #: T, frames per clip
    height: int = 128  #: H, frame height in px
    width: int = 128  #: W, frame width in px
    num_groups: int = 2  #: groups of coupled entities
    entities_per_group: int = 2  #: entities in each group
    num_distractors: int = 2  #: independent entities, each its own group
    pan: bool = False  #: moving camera window over a larger world
    illumination: bool = False  #: smooth global brightness / colour change
    coupling_noise: float = 0.15  #: std of an entity's own noise, as a fraction of motion_std
    entity_size: tuple[int, int] = (24, 44)  #: (min, max) side length of an entity in px
    motion_std: float = 1.5  #: sigma, std (px) of the per-frame group displacement, per axis
    mean_reversion: float = 0.5  #: theta in [0, 1], pull toward the home position per frame
    max_excursion: float = 6.0  #: hard bound (px, per axis) on |position - home|
    pan_speed: float = 2.0  #: rms camera speed per axis in px/frame (pan=True)
    pan_range: float = 12.0  #: the camera offset stays within a band this wide (px, per axis)
    illumination_gain: tuple[float, float] = (0.8, 1.2)  #: brightness gain at one end / other end
    shapes: tuple[str, ...] = _SHAPES  #: entity shapes drawn at random from these

    def __post_init__(self):
        for name in ("num_frames", "height", "width", "num_groups", "entities_per_group", "num_distractors"):
            if not _is_int(getattr(self, name)):
                raise ValueError(f"{name} must be an int, got {getattr(self, name)!r}")
        for name in (
            "coupling_noise", "motion_std", "mean_reversion", "max_excursion", "pan_speed", "pan_range",
        ):
            v = getattr(self, name)
            if not _is_num(v) or not math.isfinite(float(v)):
                raise ValueError(f"{name} must be a finite number, got {v!r}")
        for name in ("pan", "illumination"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if self.num_frames < 2:
            raise ValueError(f"num_frames must be >= 2, got {self.num_frames}")
        if self.height < 32 or self.width < 32:
            raise ValueError(f"height and width must be >= 32 px, got height={self.height}, width={self.width}")
        if self.num_groups < 0:
            raise ValueError(f"num_groups must be >= 0, got {self.num_groups}")
        if self.entities_per_group < (1 if self.num_groups > 0 else 0):
            raise ValueError(f"entities_per_group must be >= 1, got {self.entities_per_group}")
        if self.num_distractors < 0:
            raise ValueError(f"num_distractors must be >= 0, got {self.num_distractors}")
        if self.coupling_noise < 0:
            raise ValueError(f"coupling_noise must be >= 0, got {self.coupling_noise}")
        if self.motion_std < 0:
            raise ValueError(f"motion_std must be >= 0, got {self.motion_std}")
        if not 0.0 <= self.mean_reversion <= 1.0:
            raise ValueError(f"mean_reversion must be in [0, 1], got {self.mean_reversion}")
        if self.max_excursion < 0:
            raise ValueError(f"max_excursion must be >= 0, got {self.max_excursion}")
        if self.pan_speed < 0:
            raise ValueError(f"pan_speed must be >= 0, got {self.pan_speed}")
        if self.pan_range < 0:
            raise ValueError(f"pan_range must be >= 0, got {self.pan_range}")
        size = tuple(self.entity_size) if isinstance(self.entity_size, (tuple, list)) else None
        if size is None or len(size) != 2 or not all(_is_int(s) for s in size) or not 8 <= size[0] <= size[1]:
            raise ValueError(f"entity_size must be (min, max) ints with 8 <= min <= max, got {self.entity_size!r}")
        object.__setattr__(self, "entity_size", (int(size[0]), int(size[1])))
        gain = tuple(self.illumination_gain) if isinstance(self.illumination_gain, (tuple, list)) else None
        if gain is None or len(gain) != 2 or not all(_is_num(g) and 0 < g < 10 for g in gain):
            raise ValueError(f"illumination_gain must be two numbers in (0, 10), got {self.illumination_gain!r}")
        object.__setattr__(self, "illumination_gain", (float(gain[0]), float(gain[1])))
        shapes = (self.shapes,) if isinstance(self.shapes, str) else tuple(self.shapes)
        if not shapes or any(s not in _SHAPES for s in shapes):
            raise ValueError(f"shapes must be a non-empty subset of {_SHAPES}, got {self.shapes!r}")
        object.__setattr__(self, "shapes", shapes)
        self._check_layout_possible()

    @property
    def num_entities(self) -> int:
        """E, all entities (grouped ones first, then distractors)."""
        return self.num_groups * self.entities_per_group + self.num_distractors

    @property
    def margin(self) -> int:
        """Free space (px) kept around an entity's frame-0 box inside its cell, per side."""
        return int(math.ceil(self.max_excursion)) + _GAP // 2

    def _check_layout_possible(self) -> None:
        """Raise ValueError if even the most even partition cannot hold the smallest entities."""
        e = self.num_entities
        if e == 0:
            return
        span = int(math.ceil(self.pan_range)) if self.pan else 0
        region = (0, 0, self.width - span, self.height - span)
        need = self.entity_size[0] + 2 * self.margin
        if _min_side(_partition(None, region, e)) < need and _min_side(_grid(region, e)) < need:
            raise ValueError(
                f"cannot place {e} entities of >= {self.entity_size[0]} px (entity_size) with "
                f"max_excursion={self.max_excursion} px in a {self.width}x{self.height} frame"
                + (f" with pan_range={self.pan_range} px" if self.pan else "")
                + ": use fewer entities (num_groups, entities_per_group, num_distractors), a smaller "
                "entity_size / max_excursion, or a larger frame"
            )


# --------------------------------------------------------------------------------------------
# the scene
# --------------------------------------------------------------------------------------------


@dataclass
class Scene:
    """One rendered clip and its ground truth. E = number of entities, T = frames.

    Attributes:
        frames: (T, H, W, 3) uint8 RGB.
        labels: (H, W) int32, entity id of each pixel of frame 0 (0 = background, 1..E).
        entity_group: (E + 1,) int32, group id of each entity id; index 0 (background) is -1.
            Entities of one group share an id (0..num_groups-1); each distractor has its own id
            (num_groups, num_groups + 1, ...). Entity ids: group 0's entities first, then group 1's,
            ..., then the distractors.
        positions: (T, E, 2) float64, entity centres (x, y) per frame in frame pixels (row ``e-1``
            is entity id ``e``).
        camera: (T, 2) float64, camera offset (x, y) per frame, ``camera[0] == 0``; the background
            moves by ``-camera[t]`` in the frame (all zeros without ``pan``).
        sizes: (E, 2) int32, (width, height) of each entity in px.
        gain: (T, 3) float64, per-channel illumination gain of each frame (all ones without
            ``illumination``).
        seed: the seed the scene was rendered from.
    """

    frames: np.ndarray
    labels: np.ndarray
    entity_group: np.ndarray
    positions: np.ndarray
    camera: np.ndarray
    sizes: np.ndarray
    gain: np.ndarray
    seed: int

    @property
    def num_entities(self) -> int:
        return int(self.positions.shape[1])


def _check_seed(seed, name: str = "seed") -> int:
    if not _is_int(seed) or seed < 0:
        raise ValueError(f"{name} must be an int >= 0, got {seed!r}")
    return int(seed)


def render_scene(seed: int, num_frames: int = 48, height: int = 128, width: int = 128, num_groups: int = 2,
                 entities_per_group: int = 2, num_distractors: int = 2, pan: bool = False,
                 illumination: bool = False, coupling_noise: float = 0.15, **options) -> Scene:
    """Render one procedural clip with ground truth.

    Args:
        seed: int >= 0; the same seed and options give the same scene bit for bit.
        num_frames, height, width, num_groups, entities_per_group, num_distractors, pan,
        illumination, coupling_noise: see :class:`SceneConfig`.
        **options: the other :class:`SceneConfig` fields (``entity_size``, ``motion_std``,
            ``mean_reversion``, ``max_excursion``, ``pan_speed``, ``pan_range``,
            ``illumination_gain``, ``shapes``).

    Returns:
        A :class:`Scene`; ``frames`` is (T, H, W, 3) uint8.

    Raises:
        ValueError: a bad argument (named in the message), or entities that cannot fit.
        TypeError: an unknown option.

    Background, camera, layout, motion, textures and illumination draw from separate random
    streams, so e.g. the same seed with ``num_groups=0, num_distractors=0`` renders the same
    background (and camera) without entities.
    """
    cfg = SceneConfig(num_frames=num_frames, height=height, width=width, num_groups=num_groups,
                      entities_per_group=entities_per_group, num_distractors=num_distractors, pan=pan,
                      illumination=illumination, coupling_noise=coupling_noise, **options)
    return _render(_check_seed(seed), cfg)


def _render(seed: int, cfg: SceneConfig) -> Scene:
    rng_bg, rng_cam, rng_layout, rng_motion, rng_tex, rng_light = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(6)
    )
    T, H, W, E = cfg.num_frames, cfg.height, cfg.width, cfg.num_entities

    # camera: window top-left in world = _PAD + band[t]; camera = band - band[0]
    if cfg.pan:
        band = _camera_band(rng_cam, T, cfg.pan_speed, float(cfg.pan_range))  # (T, 2) in [0, pan_range]
        span = int(math.ceil(cfg.pan_range))
    else:
        band, span = np.zeros((T, 2)), 0
    camera = band - band[0]
    world = _background(rng_bg, H + span + 2 * _PAD, W + span + 2 * _PAD)  # (H', W', 3) float32

    # layout (frame-0 coordinates): usable region so that x - camera stays inside the frame
    x_lo, y_lo = camera.max(axis=0)
    x_hi, y_hi = np.array([W, H]) + camera.min(axis=0)
    region = (math.ceil(x_lo), math.ceil(y_lo), math.floor(x_hi), math.floor(y_hi))
    boxes = _layout(rng_layout, region, cfg)  # (E, 4) int xywh at frame 0

    group_of = np.concatenate([np.repeat(np.arange(cfg.num_groups), cfg.entities_per_group),
                               cfg.num_groups + np.arange(cfg.num_distractors)]).astype(np.int32)
    offsets = _motion(rng_motion, cfg, group_of)  # (T, E, 2), offsets[0] == 0
    sizes = boxes[:, 2:].astype(np.int32)
    home = boxes[:, :2] + (sizes - 1) / 2.0  # centre of the frame-0 box (pixel-centre coords)
    positions = home[None] + offsets - camera[:, None, :]

    sprites = [_sprite(rng_tex, int(w), int(h), cfg.shapes) for w, h in sizes]
    frames = np.empty((T, H, W, 3), np.float32)
    labels = np.zeros((H, W), np.int32)
    for t in range(T):
        ox, oy = _PAD + band[t]
        frame = _translate(world, -ox, -oy, W, H)
        for e, (tex, mask) in enumerate(sprites):
            tx, ty = positions[t, e] - (sizes[e] - 1) / 2.0 - _PAD  # sprite top-left incl. padding
            m = _translate(mask, tx, ty, W, H)[..., None]
            frame = frame * (1.0 - m) + _translate(tex, tx, ty, W, H) * m
            if t == 0:
                labels[m[..., 0] > 0.5] = e + 1
        frames[t] = frame

    gain = _illumination_gain(rng_light, T, cfg.illumination_gain) if cfg.illumination else np.ones((T, 3))
    frames = np.clip(np.rint(frames * gain[:, None, None, :].astype(np.float32)), 0, 255).astype(np.uint8)
    return Scene(frames=frames, labels=labels, entity_group=np.concatenate([[-1], group_of]).astype(np.int32),
                 positions=positions, camera=camera, sizes=sizes, gain=gain, seed=seed)


# --------------------------------------------------------------------------------------------
# rendering pieces
# --------------------------------------------------------------------------------------------


def _translate(img: np.ndarray, tx: float, ty: float, width: int, height: int) -> np.ndarray:
    """``out[y, x] = img[y - ty, x - tx]`` (bilinear, zero outside), out shape (height, width[, C])."""
    m = np.array([[1.0, 0.0, tx], [0.0, 1.0, ty]], np.float64)
    return cv2.warpAffine(img, m, (width, height), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, sigma: float, channels: int = 3) -> np.ndarray:
    """(h, w, channels) float32 Gaussian noise blurred with ``sigma`` px, rescaled to unit std."""
    n = rng.standard_normal((h, w, channels)).astype(np.float32)
    n = cv2.GaussianBlur(n, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    if n.ndim == 2:
        n = n[..., None]
    return n / (n.std() + 1e-6)


def _stretch(img: np.ndarray, lo: float = 0.0, hi: float = 255.0) -> np.ndarray:
    """Map the 1st..99th percentile of ``img`` linearly onto [lo, hi] (clipped)."""
    p1, p99 = np.percentile(img, [1, 99])
    return np.clip((img - p1) / max(p99 - p1, 1e-6) * (hi - lo) + lo, lo, hi).astype(np.float32)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """(h, w, 3) float32 in 0..255: multi-scale smoothed noise (mostly grey, mild colour) plus
    random outlined shapes, for high local contrast everywhere (corners for LK)."""
    img = sum(wt * _smooth_noise(rng, h, w, s) for s, wt in ((1.0, 0.6), (2.5, 1.0), (6.0, 1.0), (16.0, 0.8)))
    lum = img.mean(axis=2, keepdims=True)
    img = _stretch(lum + 0.35 * (img - lum))
    canvas = np.ascontiguousarray(img)
    for _ in range(max(8, h * w // 300)):
        color = tuple(float(c) for c in rng.uniform(0, 255, 3))
        cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
        r = int(rng.integers(2, 9))
        kind = rng.integers(0, 3)
        thickness = int(rng.choice([-1, 1, 2]))
        if kind == 0:
            cv2.circle(canvas, (cx, cy), r, color, thickness)
        elif kind == 1:
            cv2.rectangle(canvas, (cx - r, cy - r), (cx + r, cy + int(rng.integers(2, 9))), color, thickness)
        else:
            ex, ey = cx + int(rng.integers(-12, 13)), cy + int(rng.integers(-12, 13))
            cv2.line(canvas, (cx, cy), (ex, ey), color, max(thickness, 1))
    return canvas


def _sprite(rng: np.random.Generator, w: int, h: int, shapes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Texture (h+2p, w+2p, 3) float32 and mask (h+2p, w+2p) float32 in {0, 1} of one entity
    (p = _PAD; the shape fills [p, p+w) x [p, p+h), the texture extends into the padding so that
    interpolated edges blend texture, not black).

    The texture is saturated colour (the background is mostly grey): two random hues in a checker
    or stripe pattern, plus fine noise, plus a dark outline, so it differs clearly from the
    background and has corners of its own.
    """
    hp, wp = h + 2 * _PAD, w + 2 * _PAD
    hues = rng.uniform(0, 180, 2)
    hues[1] = (hues[0] + rng.uniform(50, 130)) % 180
    cols = cv2.cvtColor(np.array([[[hues[0], 255, 230], [hues[1], 220, 120]]], np.uint8), cv2.COLOR_HSV2RGB)
    c0, c1 = cols[0, 0].astype(np.float32), cols[0, 1].astype(np.float32)
    yy, xx = np.mgrid[0:hp, 0:wp].astype(np.float32)
    if rng.random() < 0.5:  # checkerboard
        cell = rng.uniform(4, 8)
        pat = ((np.floor(xx / cell) + np.floor(yy / cell)) % 2).astype(np.float32)
    else:  # stripes at a random angle
        ang, period = rng.uniform(0, np.pi), rng.uniform(6, 11)
        pat = (np.sin(2 * np.pi * (xx * np.cos(ang) + yy * np.sin(ang)) / period) > 0).astype(np.float32)
    tex = c0 * (1 - pat[..., None]) + c1 * pat[..., None]
    tex = np.clip(tex + 25.0 * _smooth_noise(rng, hp, wp, 1.0), 0, 255)
    mask = np.zeros((hp, wp), np.float32)
    shape = shapes[int(rng.integers(0, len(shapes)))]
    if shape == "rect":
        mask[_PAD:_PAD + h, _PAD:_PAD + w] = 1.0
        outline = np.zeros_like(mask)
        cv2.rectangle(outline, (_PAD, _PAD), (_PAD + w - 1, _PAD + h - 1), 1.0, 1)
    else:
        # ellipse through the box: filled with sub-pixel precision (shift=4), symmetric about the centre
        centre = ((w - 1) / 2.0 + _PAD, (h - 1) / 2.0 + _PAD)
        axes = (w / 2.0 - 0.5, h / 2.0 - 0.5)
        s = 16
        args = ((int(round(centre[0] * s)), int(round(centre[1] * s))), (int(round(axes[0] * s)), int(round(axes[1] * s))), 0, 0, 360)
        cv2.ellipse(mask, *args, 1.0, -1, cv2.LINE_8, 4)
        outline = np.zeros_like(mask)
        cv2.ellipse(outline, *args, 1.0, 1, cv2.LINE_8, 4)
    tex = tex * (1 - 0.7 * outline[..., None])
    return np.ascontiguousarray(tex, dtype=np.float32), mask


def _camera_band(rng: np.random.Generator, T: int, speed: float, band: float) -> np.ndarray:
    """(T, 2) camera window offsets in [0, band]: a smooth random walk (per-axis velocity AR(1)
    with coefficient 0.8 and rms ``speed`` px/frame) reflected at the edges of the band; starts
    at an integer offset so frame 0 is an exact crop."""
    rho = 0.8
    v = np.empty((T - 1, 2))
    v[0] = rng.normal(0, speed, 2)
    for t in range(1, T - 1):
        v[t] = rho * v[t - 1] + math.sqrt(1 - rho**2) * rng.normal(0, speed, 2)
    start = rng.integers(0, int(math.floor(band)) + 1, 2).astype(np.float64)
    raw = np.concatenate([start[None], start + np.cumsum(v, axis=0)])
    if band <= 0:
        return np.zeros((T, 2))
    return band - np.abs(np.mod(raw, 2 * band) - band)  # reflect into [0, band]


def _partition(rng: np.random.Generator | None, region: tuple, k: int) -> list[tuple]:
    """Split region (x0, y0, x1, y1) into k cells of near-equal area (guillotine cuts across the
    longer side). With rng the cut proportions are jittered and the split counts randomised;
    without it the partition is the deterministic most-even one."""
    x0, y0, x1, y1 = region
    if k == 1:
        return [region]
    k1 = k // 2 if rng is None or k % 2 == 0 else int(rng.choice([k // 2, k - k // 2]))
    frac = k1 / k
    if rng is not None:
        frac = float(np.clip(frac + rng.uniform(-0.06, 0.06), 0.1, 0.9))
    horizontal = (x1 - x0) > (y1 - y0) or ((x1 - x0) == (y1 - y0) and (rng is None or rng.random() < 0.5))
    if horizontal:
        xs = int(round(x0 + frac * (x1 - x0)))
        a, b = (x0, y0, xs, y1), (xs, y0, x1, y1)
    else:
        ys = int(round(y0 + frac * (y1 - y0)))
        a, b = (x0, y0, x1, ys), (x0, ys, x1, y1)
    return _partition(rng, a, k1) + _partition(rng, b, k - k1)


def _grid(region: tuple, k: int) -> list[tuple]:
    """The cells of the cols x rows grid over region with cols * rows >= k whose cells have the
    longest short side (ties: fewest cells); may hold more than k cells."""
    x0, y0, x1, y1 = region
    w, h = x1 - x0, y1 - y0
    best = max(((min(w // c, h // -(-k // c)), -c * -(-k // c), c) for c in range(1, k + 1)))
    cols = best[2]
    rows = -(-k // cols)
    xs = [x0 + (w * i) // cols for i in range(cols + 1)]
    ys = [y0 + (h * j) // rows for j in range(rows + 1)]
    return [(xs[i], ys[j], xs[i + 1], ys[j + 1]) for j in range(rows) for i in range(cols)]


def _min_side(cells: list[tuple]) -> int:
    return min(min(c[2] - c[0], c[3] - c[1]) for c in cells)


def _layout(rng: np.random.Generator, region: tuple, cfg: SceneConfig, tries: int = 50) -> np.ndarray:
    """(E, 4) int frame-0 boxes (x, y, w, h): one entity per cell, with ``cfg.margin`` px free on
    every side inside its cell. Cells: a random guillotine partition of ``region`` when one fits
    (up to ``tries`` draws), else E random cells of the best regular grid, else the most even
    guillotine partition. Cells are assigned to entities in random order."""
    E = cfg.num_entities
    if E == 0:
        return np.zeros((0, 4), np.int64)
    lo, hi = cfg.entity_size
    m = cfg.margin
    grid = _grid(region, E)
    candidates = itertools.chain(
        (_partition(rng, region, E) for _ in range(tries)),
        ([grid[i] for i in sorted(rng.choice(len(grid), E, replace=False))] for _ in range(1)),
        (_partition(None, region, E) for _ in range(1)),
    )
    for cells in candidates:
        if _min_side(cells) >= lo + 2 * m:
            break
    else:  # pragma: no cover - SceneConfig checks the worst-case region
        raise ValueError(f"cannot place {E} entities of >= {lo} px (entity_size) in region {region}")
    boxes = np.empty((E, 4), np.int64)
    for e, i in enumerate(rng.permutation(E)):
        cx0, cy0, cx1, cy1 = cells[i]
        w = int(rng.integers(lo, min(hi, cx1 - cx0 - 2 * m) + 1))
        h = int(rng.integers(lo, min(hi, cy1 - cy0 - 2 * m) + 1))
        x = int(rng.integers(cx0 + m, cx1 - m - w + 1))
        y = int(rng.integers(cy0 + m, cy1 - m - h + 1))
        boxes[e] = (x, y, w, h)
    return boxes


def _motion(rng: np.random.Generator, cfg: SceneConfig, group_of: np.ndarray) -> np.ndarray:
    """(T, E, 2) entity offsets from home (x, y), zero at frame 0: a shared OU walk per group plus
    an independent OU walk per entity (see the module docstring)."""
    T, E = cfg.num_frames, len(group_of)
    theta, sigma, bound = cfg.mean_reversion, cfg.motion_std, cfg.max_excursion
    sigma_n = cfg.coupling_noise * sigma
    std_n = sigma_n / math.sqrt(theta * (2 - theta)) if theta > 0 else math.inf
    r_n = min(bound / 2, 4 * std_n) if sigma_n > 0 else 0.0
    r_g = bound - r_n
    num_groups = int(group_of.max()) + 1 if E else 0
    d = rng.normal(0, sigma, (T - 1, num_groups, 2))
    eps = rng.normal(0, sigma_n, (T - 1, E, 2)) if sigma_n > 0 else np.zeros((T - 1, E, 2))
    g = np.zeros((T, num_groups, 2))
    n = np.zeros((T, E, 2))
    for t in range(T - 1):
        g[t + 1] = np.clip((1 - theta) * g[t] + d[t], -r_g, r_g)
        n[t + 1] = np.clip((1 - theta) * n[t] + eps[t], -r_n, r_n)
    return g[:, group_of] + n


def _illumination_gain(rng: np.random.Generator, T: int, gain_range: tuple[float, float]) -> np.ndarray:
    """(T, 3) per-channel gain: brightness moves smoothly (half cosine) from one end of
    ``gain_range`` to the other (direction at random), times a tint of up to +-8 % per channel that
    grows along the same ramp."""
    ramp = (1 - np.cos(np.pi * np.arange(T) / (T - 1))) / 2  # 0 -> 1
    a, b = gain_range if rng.random() < 0.5 else gain_range[::-1]
    brightness = a + (b - a) * ramp
    tint = 1 + 0.08 * ramp[:, None] * rng.uniform(-1, 1, 3)[None]
    return brightness[:, None] * tint


# --------------------------------------------------------------------------------------------
# ground truth per patch
# --------------------------------------------------------------------------------------------


def _check_boxes(boxes, shape: tuple[int, int]) -> np.ndarray:
    b = np.asarray(boxes)
    if b.ndim != 2 or b.shape[1] != 4 or not np.issubdtype(b.dtype, np.integer):
        raise ValueError(f"boxes must be a (P, 4) integer array (x0, y0, x1, y1), got shape {b.shape} dtype {b.dtype}")
    H, W = shape
    bad = (b[:, 0] < 0) | (b[:, 1] < 0) | (b[:, 2] > W) | (b[:, 3] > H) | (b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1])
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"boxes[{i}] = {b[i].tolist()} is empty or outside the {W}x{H} frame (xyxy, x1/y1 exclusive)")
    return b.astype(np.int64)


def patch_entities(labels: np.ndarray, boxes: np.ndarray, min_fraction: float = 0.6) -> np.ndarray:
    """Entity id of each patch: the id (0 = background, 1..E) that covers >= ``min_fraction`` of
    the patch's pixels, or ``MIXED`` (-2) if none does (or two tie).

    Args:
        labels: (H, W) int entity id per pixel of frame 0 (``Scene.labels``).
        boxes: (P, 4) int patch boxes (x0, y0, x1, y1) in frame-0 pixels, x1 / y1 exclusive
            (``labels[y0:y1, x0:x1]`` is the patch).
        min_fraction: in (0, 1].

    Returns:
        (P,) int64.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer) or (labels.size and labels.min() < 0):
        raise ValueError(f"labels must be an (H, W) array of entity ids >= 0, got shape {labels.shape} dtype {labels.dtype}")
    if not _is_num(min_fraction) or not 0 < min_fraction <= 1:
        raise ValueError(f"min_fraction must be in (0, 1], got {min_fraction!r}")
    b = _check_boxes(boxes, labels.shape)
    num_ids = int(labels.max()) + 1 if labels.size else 1
    out = np.empty(len(b), np.int64)
    for i, (x0, y0, x1, y1) in enumerate(b):
        counts = np.bincount(labels[y0:y1, x0:x1].ravel(), minlength=num_ids)
        best = int(counts.argmax())
        frac = counts[best] / counts.sum()
        tie = (counts == counts[best]).sum() > 1
        out[i] = best if frac >= min_fraction and not tie else MIXED
    return out


def patch_groups(labels: np.ndarray, entity_group: np.ndarray, boxes: np.ndarray,
                 min_fraction: float = 0.6) -> np.ndarray:
    """Group id of each patch: the group of the entity covering >= ``min_fraction`` of the patch,
    ``BACKGROUND`` (-1) when background covers it, ``MIXED`` (-2) otherwise.

    Args:
        labels: (H, W) int entity id per pixel of frame 0 (``Scene.labels``).
        entity_group: (E + 1,) int group id per entity id (``Scene.entity_group``; index 0 = -1).
        boxes: (P, 4) int patch boxes (x0, y0, x1, y1), x1 / y1 exclusive.
        min_fraction: in (0, 1].

    Returns:
        (P,) int64. Two patches with the same id >= 0 belong to entities that move together.
    """
    ent = patch_entities(labels, boxes, min_fraction)
    groups = np.asarray(entity_group)
    if groups.ndim != 1 or len(groups) < int(np.asarray(labels).max(initial=0)) + 1:
        raise ValueError(f"entity_group must be a 1-D array with one entry per entity id (incl. 0), "
                         f"got shape {groups.shape} for labels up to {int(np.asarray(labels).max(initial=0))}")
    out = np.where(ent == MIXED, MIXED, np.where(ent == 0, BACKGROUND, groups[np.maximum(ent, 0)]))
    return out.astype(np.int64)


# --------------------------------------------------------------------------------------------
# datasets
# --------------------------------------------------------------------------------------------


def scene_seed(seed: int, index: int) -> int:
    """The seed of scene ``index`` of ``make_scenes(..., seed=seed)`` (a uint32 from
    ``np.random.SeedSequence([seed, index])``)."""
    _check_seed(seed)
    _check_seed(index, "index")
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, dtype=np.uint32)[0])


def scene_features(num_frames: int = 48, height: int = 128, width: int = 128, num_entities: int = 6):
    """The ``datasets.Features`` of :func:`make_scenes` for these sizes."""
    from datasets import Array2D, Array3D, Array4D, Features, Sequence, Value

    return Features({
        "clip_id": Value("string"),
        "frames": Array4D(shape=(num_frames, height, width, 3), dtype="uint8"),
        "labels": Array2D(shape=(height, width), dtype="int32"),
        "entity_group": Sequence(Value("int32")),
        "positions": Array3D(shape=(num_frames, num_entities, 2), dtype="float32"),
        "camera": Array2D(shape=(num_frames, 2), dtype="float32"),
        "pan": Value("bool"),
        "illumination": Value("bool"),
        "seed": Value("int64"),
    })


def _generate(indices: list[int], seed: int, config: dict) -> Iterator[dict]:
    cfg = SceneConfig(**config)
    for i in indices:
        s = _render(scene_seed(seed, i), cfg)
        yield {
            "clip_id": f"scene-{seed}-{i}",
            "frames": s.frames,
            "labels": s.labels,
            "entity_group": s.entity_group,
            "positions": s.positions.astype(np.float32),
            "camera": s.camera.astype(np.float32),
            "pan": cfg.pan,
            "illumination": cfg.illumination,
            "seed": s.seed,
        }


def make_scenes(n: int, seed: int = 0, *, num_proc: int | None = None, cache_dir: str | None = None,
                keep_in_memory: bool = False, **render_kwargs):
    """A ``datasets.Dataset`` of ``n`` procedural clips (see :func:`render_scene`).

    Scene ``i`` is ``render_scene(scene_seed(seed, i), **render_kwargs)``, so the dataset is
    deterministic. Built with ``Dataset.from_generator`` (Arrow on disk under ``cache_dir``, the
    HF datasets cache by default; the fingerprint covers this module's source, so editing the
    renderer never serves stale clips).

    Columns:
        clip_id (str ``"scene-<seed>-<i>"``), frames (Array4D (T, H, W, 3) uint8), labels (Array2D
        (H, W) int32), entity_group (Sequence int32, length E + 1), positions (Array3D (T, E, 2)
        float32), camera (Array2D (T, 2) float32), pan (bool), illumination (bool), seed (int64,
        the scene's own seed).

    ``dataset.with_format("numpy")[i]["frames"]`` is the (T, H, W, 3) array of frame ``i``. Note
    that the datasets numpy (and torch) formatter upcasts every integer array to int64 by design
    (``NumpyFormatter._tensorize``), so it arrives as int64 holding 0..255. For uint8 frames ask
    for the dtype on that column, ``dataset.with_format("numpy", columns=["frames"],
    dtype=np.uint8, output_all_columns=True)``, or cast with ``np.asarray(frames, np.uint8)``.

    Raises:
        ValueError: n < 1, a bad seed or a bad render argument (named in the message).
        TypeError: an unknown render argument.
    """
    from datasets import Dataset

    if not _is_int(n) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    seed = _check_seed(seed)
    if num_proc is not None and (not _is_int(num_proc) or num_proc < 1):
        raise ValueError(f"num_proc must be None or an int >= 1, got {num_proc!r}")
    cfg = SceneConfig(**render_kwargs)  # validates before any generator runs
    config = dataclasses.asdict(cfg)
    source = Path(__file__).read_bytes()
    key = repr((int(n), seed, sorted(config.items()))).encode()
    fingerprint = hashlib.sha256(source + b"\0" + key).hexdigest()[:32]
    return Dataset.from_generator(
        _generate,
        features=scene_features(cfg.num_frames, cfg.height, cfg.width, cfg.num_entities),
        gen_kwargs={"indices": list(range(n)), "seed": seed, "config": config},
        num_proc=num_proc if num_proc and num_proc > 1 and n > 1 else None,
        cache_dir=cache_dir,
        keep_in_memory=keep_in_memory,
        fingerprint=fingerprint,
    )
