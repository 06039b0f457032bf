"""Twin-patch mining: which patches of a clip share the most mutual information in their motion.

Pipeline (DESIGN.md, "The method"; InfoAug, Chen & Yang, arXiv 2511.00028):
track grid patches → remove camera motion → residual frame-to-frame displacements per patch →
entropy gate (static patches are invalid) → all-pairs KSG MI → each valid patch's best partner
above ``mi_threshold`` is its twin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Union

import numpy as np
import torch

from ..errors import MAX_FRAME_PIXELS, ClipError
from .ksg import pairwise_mi
from .motion import IDENTITY, estimate_camera_motion, residual_displacements, tracking_noise
from .reference import pairwise_histogram_mi
from .tracking import reduce_by_patch, track_patches

__all__ = ["TWIN_MODES", "TwinPatches", "TwinOptions", "find_twins", "select_twins", "random_twins", "validate_frames"]

#: Partner choice of the MI branch (DESIGN.md, method item 7): the mined MI-best twin (``"mi"``), a uniformly
#: random other valid patch (``"random"``, the paper's ablation, :func:`random_twins`), or no MI branch (``"none"``).
TWIN_MODES = ("mi", "random", "none")

# Patch status codes, stored per patch; ``STATUS_NAMES[code]`` says why a patch is invalid.
STATUS_NAMES = ("ok", "no_texture", "lost", "static")
OK, NO_TEXTURE, LOST, STATIC = range(4)


@dataclass
class TwinOptions:
    """Settings of ``find_twins``; every field is a keyword of ``find_twins``.

    Attributes:
        grid: patches per side of the frame-0 grid (P = grid²).
        points_per_patch: Shi–Tomasi corners seeded per patch.
        min_points: a patch needs this many points surviving the whole clip (else ``lost``): one
            lone point is too easily a tracking error.
        corner_quality: a corner must reach this fraction of the frame's strongest corner
            response, so textureless patches get no points (status ``no_texture``).
        fb_threshold: forward–backward LK error (px) above which a point is lost.
        win_size, max_level: LK window side (px) and pyramid levels.
        reduce: ``"median"`` or ``"mean"`` over a patch's points.
        compensate_camera: remove the global similarity motion (RANSAC) before anything else.
        ransac_threshold: RANSAC inlier distance (px).
        motion_floor: entropy gate, absolute part: a patch must move (temporal std of its residual
            displacement, px/frame) by at least this fraction of the frame diagonal. 0.0002 is
            0.036 px/frame at 128×128 and 0.07 px/frame at 320×136; it only matters for clean
            (synthetic) clips, where tracking noise is ~0.
        noise_factor: entropy gate, clip-relative part: the patch's temporal std must also exceed
            this multiple of the clip's own tracking noise σ (how much points of one patch disagree,
            see ``motion.tracking_noise``). Gate = max(motion_floor · diagonal, noise_factor · σ).
            On the bundled bikes clip at 320×136, σ ≈ 0.015–0.025 px/frame, so the gate is
            ≈ 0.07–0.1 px/frame: the static street is invalid, the cyclist's patches are valid.
        k: KSG neighbours.
        mi_threshold: absolute floor (nats) for a partner to become a twin.
        significance: the threshold is also raised to this quantile of the best-partner MI under
            independence, measured on the clip itself: MI is recomputed on ``surrogates`` copies of
            the displacements with each patch's time order independently shuffled (which keeps
            every marginal and destroys coupling). 0 disables the surrogate test. Independent
            Gaussian movers give a 95% best-of-50 null of ≈ 0.21–0.25 nats at 15–47 samples.
        surrogates: number of shuffled copies for the significance threshold.
        seed: seed of the surrogate shuffles (results are deterministic).
        colour_weight: weight of the colour-change MI (histogram estimator on luminance change,
            global illumination change removed) added to the motion MI; 0 disables it.
        colour_bins: histogram bins for the colour MI.
        exclude_neighbours: never pair a patch with one of its 8 grid neighbours.
    """

    grid: int = 8
    points_per_patch: int = 9
    min_points: int = 3
    corner_quality: float = 0.01
    fb_threshold: float = 0.5
    win_size: int = 9
    max_level: int = 3
    reduce: str = "median"
    compensate_camera: bool = True
    ransac_threshold: float = 0.5
    motion_floor: float = 0.0002
    noise_factor: float = 4.0
    k: int = 5
    mi_threshold: float = 0.2
    significance: float = 0.95
    surrogates: int = 4
    seed: int = 0
    colour_weight: float = 0.0
    colour_bins: int = 4
    exclude_neighbours: bool = False

    @classmethod
    def from_kwargs(cls, **options) -> "TwinOptions":
        """Build and validate options; unknown names raise ``TypeError`` listing them."""
        unknown = set(options) - set(cls.__dataclass_fields__)
        if unknown:
            raise TypeError(f"unknown option(s) for twin mining: {sorted(unknown)}")
        opts = cls(**options)
        opts.validate()
        return opts

    #: Allowed ranges, (low, high, integer, low_open, high_open); the checks and the error messages use them.
    RANGES = {
        "grid": (1, 64, True, False, False),
        "points_per_patch": (1, 1024, True, False, False),
        "min_points": (1, 1024, True, False, False),
        "corner_quality": (0, 1, False, False, True),
        "fb_threshold": (0, None, False, True, False),
        "win_size": (3, 255, True, False, False),
        "max_level": (0, 16, True, False, False),
        "ransac_threshold": (0, None, False, True, False),
        "motion_floor": (0, 1, False, False, True),
        "noise_factor": (0, None, False, False, False),
        "k": (1, 1000, True, False, False),
        "mi_threshold": (None, None, False, False, False),
        "significance": (0, 1, False, False, True),
        "surrogates": (1, 10000, True, False, False),
        "seed": (0, None, True, False, False),
        "colour_weight": (0, None, False, False, False),
        "colour_bins": (2, 1024, True, False, False),
    }

    def validate(self) -> None:
        """Raise ``ValueError`` listing every option outside its range (name, allowed range, value)."""
        from .._safety import check_number

        problems = []
        for name, (low, high, integer, low_open, high_open) in self.RANGES.items():
            try:
                check_number(name, getattr(self, name), low, high, integer=integer, low_open=low_open,
                             high_open=high_open)
            except ValueError as e:
                problems.append(str(e))
        if not problems and self.min_points > self.points_per_patch:
            problems.append(f"min_points must be <= points_per_patch ({self.points_per_patch}), got {self.min_points}")
        if self.reduce not in ("median", "mean"):
            problems.append(f"reduce must be 'median' or 'mean', got {self.reduce!r}")
        for name in ("compensate_camera", "exclude_neighbours"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                problems.append(f"{name} must be True or False, got {getattr(self, name)!r}")
        if problems:
            raise ValueError("invalid twin-mining option(s): " + "; ".join(problems))


@dataclass
class TwinPatches:
    """Twin patches of one clip.

    Attributes:
        boxes: (P, 4) int xyxy patch boxes in frame-0 pixels.
        twin: (P,) int index of each patch's twin, −1 for none.
        mi: (P,) float MI (nats) between a valid patch and its best partner (also when below the
            threshold, so twin == −1 but mi is finite); NaN for invalid patches.
        valid: (P,) bool — patches with enough motion entropy to be anchors or twins.
        mi_matrix: (P, P) float MI between valid patches; NaN on the diagonal and wherever a
            patch is invalid.
        tracks: (P, T, 2) float32 patch-centre (x, y) per frame (box centre + the median motion of
            its points); NaN for patches without surviving points.
        status: (P,) int code, ``STATUS_NAMES[status]`` is ok / no_texture / lost / static.
        motion: (P,) float temporal std of residual displacement (px/frame), NaN without points.
        gate: the entropy-gate threshold used (px/frame); noise: tracking noise σ (px/frame).
        threshold: the MI threshold used (max of ``mi_threshold`` and the surrogate quantile).
        frame_size: (H, W) of the mined frames.
    """

    boxes: np.ndarray
    twin: np.ndarray
    mi: np.ndarray
    valid: np.ndarray
    mi_matrix: np.ndarray
    tracks: np.ndarray
    status: np.ndarray
    motion: np.ndarray
    gate: float
    noise: float
    threshold: float
    frame_size: tuple[int, int]
    options: TwinOptions = field(default_factory=TwinOptions)

    @property
    def pairs(self) -> list[tuple[int, int, float]]:
        """(anchor, twin, mi) for every patch that has a twin."""
        return [(int(i), int(self.twin[i]), float(self.mi[i])) for i in np.flatnonzero(self.twin >= 0)]

    def status_names(self) -> list[str]:
        return [STATUS_NAMES[s] for s in self.status]


def validate_frames(frames, k: int = 5, grid: int = 8, clip_id: Optional[str] = None) -> np.ndarray:
    """Check a clip is (T, H, W, 3) uint8 RGB with enough frames for KSG; return it as numpy.

    Raises ``ClipError`` naming the clip for anything else (grey or RGBA frames, floats, NaN, too
    few frames, frames too small for the grid). Convert other formats explicitly first
    (``mimcl_hub.data.load_clip_frames(..., strict_format=False)``).
    """
    name = f"clip {clip_id!r}" if clip_id is not None else "clip"
    if hasattr(frames, "detach"):
        frames = frames.detach().cpu().numpy()
    if not isinstance(frames, np.ndarray):
        raise ClipError(f"{name}: frames must be a (T, H, W, 3) uint8 array, got {type(frames).__name__}",
                        reason="bad_dtype")
    if frames.dtype != np.uint8:
        nan_note = " containing NaN" if frames.dtype.kind == "f" and np.isnan(frames).any() else ""
        raise ClipError(f"{name}: frames must be uint8 RGB, got dtype {frames.dtype}{nan_note}", reason="bad_dtype")
    if frames.ndim == 3:
        raise ClipError(f"{name}: frames have shape {frames.shape}; grey clips must be converted to RGB (T, H, W, 3)",
                        reason="bad_shape")
    if frames.ndim != 4:
        raise ClipError(f"{name}: frames must have shape (T, H, W, 3), got {frames.shape}", reason="bad_shape")
    if frames.shape[-1] != 3:
        kind = {1: "grey", 4: "RGBA"}.get(frames.shape[-1], f"{frames.shape[-1]}-channel")
        raise ClipError(f"{name}: frames are {kind} (shape {frames.shape}); convert them to RGB (T, H, W, 3)",
                        reason="bad_shape")
    t_len, h, w, _ = frames.shape
    if h * w > MAX_FRAME_PIXELS:
        raise ClipError(f"{name}: frames of {h}x{w} pixels are larger than the limit of {MAX_FRAME_PIXELS} pixels "
                        "(mimcl_hub.errors.MAX_FRAME_PIXELS); downscale them first", reason="frames_too_large")
    need = k + 2
    if t_len < need:
        raise ClipError(
            f"{name}: has {t_len} frame(s); KSG with k={k} needs at least {need} frames "
            f"(more than k frame-to-frame displacements)", reason="too_few_frames"
        )
    min_side = 8 * grid
    if h < min_side or w < min_side:
        raise ClipError(f"{name}: frames of {h}x{w} are too small for a {grid}x{grid} grid (need >= {min_side} px a side)",
                        reason="frames_too_small")
    return np.ascontiguousarray(frames)


def select_twins(mi_matrix: np.ndarray, valid: np.ndarray, threshold: float,
                 forbidden: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
    """Each valid patch's highest-MI valid partner (never itself), kept if MI > threshold.

    Args:
        mi_matrix: (P, P) MI (NaN entries are ignored).
        valid: (P,) bool.
        forbidden: optional (P, P) bool of pairs never to choose.

    Returns:
        twin (P,) int (−1 for none) and best (P,) float (best partner's MI, NaN if none exists).
    """
    p = mi_matrix.shape[0]
    scores = np.where(np.isnan(mi_matrix), -np.inf, mi_matrix).astype(np.float64)
    scores[~valid, :] = -np.inf
    scores[:, ~valid] = -np.inf
    np.fill_diagonal(scores, -np.inf)
    if forbidden is not None:
        scores[forbidden] = -np.inf
    twin = np.full(p, -1, np.int64)
    best = np.full(p, np.nan)
    if p < 2:
        return twin, best
    arg = scores.argmax(1)
    top = scores[np.arange(p), arg]
    has = np.isfinite(top)
    best[has] = top[has]
    keep = has & (top > threshold)
    twin[keep] = arg[keep]
    return twin, best


def random_twins(valid: np.ndarray, seed: int = 0) -> np.ndarray:
    """The paper's "random twin" ablation: each valid patch gets a uniformly random other valid patch.

    valid (P,) bool → twin (P,) int (−1 for invalid patches or when fewer than two are valid).
    """
    rng = np.random.default_rng(seed)
    idx = np.flatnonzero(valid)
    twin = np.full(valid.shape[0], -1, np.int64)
    if idx.size < 2:
        return twin
    for i in idx:
        choice = rng.integers(idx.size - 1)
        partner = idx[choice]
        twin[i] = partner if partner != i else idx[-1]
    return twin


def _neighbour_mask(grid: int) -> np.ndarray:
    r, c = np.divmod(np.arange(grid * grid), grid)
    return (np.abs(r[:, None] - r[None]) <= 1) & (np.abs(c[:, None] - c[None]) <= 1)


def _standardise(disp: np.ndarray) -> np.ndarray:
    """Centre each trajectory and divide by its overall RMS (one scale for all its coordinates, so a
    mostly horizontal mover keeps its small vertical component small). (P, N, d) → same."""
    centred = disp - disp.mean(axis=1, keepdims=True)
    rms = np.sqrt((centred**2).mean(axis=(1, 2), keepdims=True))
    return centred / np.maximum(rms, 1e-12)


def find_twins(
    frames,
    depth_fn: Optional[Callable[[np.ndarray], np.ndarray]] = None,
    clip_id: Optional[str] = None,
    *,
    device: Union[str, torch.device, None] = None,
    **options,
) -> TwinPatches:
    """Find twin patches in a clip by mutual information of their motion.

    Args:
        frames: (T, H, W, 3) uint8 RGB clip (no shot cut inside; T >= k + 2).
        depth_fn: optional per-frame depth model (frame → (h, w) map); adds depth change as a third
            motion coordinate, scaled to the spread of the pixel displacements.
        clip_id: name used in error messages.
        device: where the MI work runs (the all-pairs KSG of the clip and of its surrogates, and the colour
            histogram MI): ``None`` or ``"cpu"`` — numpy and the compiled CPU kernel of ``pairwise_mi``;
            ``"cuda"`` / ``"cuda:N"`` (or a ``torch.device``) — the float64 torch path of ``pairwise_mi`` on that
            device. Tracking stays on the CPU and results are numpy either way; on a GPU the MI values agree
            with the CPU ones to float64 rounding (summation order), so the twins are the same unless two
            partners tie. Not a ``TwinOptions`` field: where the work ran is not a mining setting.
        **options: any field of ``TwinOptions`` (grid, k, mi_threshold, motion_floor, ...).

    Returns:
        ``TwinPatches`` with boxes (P, 4), twin (P,), mi (P,), valid (P,), mi_matrix (P, P), tracks.
    """
    opts = TwinOptions.from_kwargs(**options)
    mi_device = _mi_device(device)
    frames = validate_frames(frames, k=opts.k, grid=opts.grid, clip_id=clip_id)
    t_len, h, w, _ = frames.shape

    tracked = track_patches(
        frames, grid=opts.grid, points_per_patch=opts.points_per_patch, corner_quality=opts.corner_quality,
        win_size=opts.win_size, max_level=opts.max_level, fb_threshold=opts.fb_threshold, reduce=opts.reduce,
        depth_fn=depth_fn,
    )
    p = tracked.num_patches
    boxes = tracked.boxes
    survivors = tracked.survivors()

    status = np.full(p, OK, np.int64)
    status[tracked.seeded == 0] = NO_TEXTURE
    status[(tracked.seeded > 0) & (survivors < opts.min_points)] = LOST

    pts = tracked.points  # (Q, T, 2)
    if opts.compensate_camera:
        transforms, _ = estimate_camera_motion(pts, opts.ransac_threshold)
    else:
        transforms = np.repeat(IDENTITY[None], t_len - 1, axis=0)
    residual = residual_displacements(pts, transforms)  # (Q, T-1, 2)
    noise = tracking_noise(residual, tracked.point_patch)
    disp = reduce_by_patch(residual, tracked.point_patch, p, opts.reduce)  # (P, T-1, 2)

    if tracked.depth is not None:
        ddepth = np.diff(tracked.depth.astype(np.float64), axis=1)[..., None]  # (P, T-1, 1)
        finite = np.isfinite(ddepth[..., 0]).all(1) & np.isfinite(disp).all(axis=(1, 2))
        if finite.any():
            scale = np.std(disp[finite]) / max(np.std(ddepth[finite]), 1e-12)
            disp = np.concatenate([disp, ddepth * scale], axis=-1)

    finite = np.isfinite(disp).all(axis=(1, 2))
    motion = np.full(p, np.nan)
    if finite.any():  # temporal std of the residual displacement, px/frame
        motion[finite] = np.sqrt(disp[finite][..., :2].var(axis=1).mean(-1))
    diagonal = float(np.hypot(h, w))
    gate = max(opts.motion_floor * diagonal, opts.noise_factor * noise)
    has_track = status == OK
    status[has_track & ~(finite & (motion > gate))] = STATIC
    valid = status == OK

    mi_matrix = np.full((p, p), np.nan)
    idx = np.flatnonzero(valid)
    threshold = float(opts.mi_threshold)
    forbidden = _neighbour_mask(opts.grid) if opts.exclude_neighbours else None
    if idx.size >= 2:
        series = _standardise(disp[idx])
        colour = colour_changes(tracked.colours[idx]) if opts.colour_weight > 0 else None
        mi_matrix[np.ix_(idx, idx)] = _motion_mi(series, colour, opts, mi_device)
        np.fill_diagonal(mi_matrix, np.nan)
        if opts.significance > 0:
            sub_forbidden = forbidden[np.ix_(idx, idx)] if forbidden is not None else None
            threshold = max(threshold, _surrogate_threshold(series, colour, opts, sub_forbidden, mi_device))

    twin, best = select_twins(mi_matrix, valid, threshold, forbidden)

    centres = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2.0, (boxes[:, 1] + boxes[:, 3]) / 2.0], -1)
    tracks = (centres[:, None, :] + tracked.shifts).astype(np.float32)

    return TwinPatches(
        boxes=boxes, twin=twin, mi=best, valid=valid, mi_matrix=mi_matrix, tracks=tracks, status=status,
        motion=motion, gate=float(gate), noise=float(noise), threshold=threshold, frame_size=(h, w), options=opts,
    )


def _mi_device(device) -> Optional[torch.device]:
    """``find_twins``' ``device`` checked: None for the CPU path (None or any "cpu"), else the torch device."""
    if device is None:
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device must be None, 'cpu', 'cuda' or 'cuda:N' (a torch device), got {device!r}") from e
    if dev.type == "cpu":
        return None
    if dev.type != "cuda":      # the float64 torch path needs float64 kernels: CPU and CUDA have them
        raise ValueError(f"device must be None, 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    if not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: CUDA is not available here (torch.cuda.is_available() is False); "
                         "use device=None for the CPU")
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {device!r}: there are only {torch.cuda.device_count()} CUDA device(s)")
    return dev


def _motion_mi(series: np.ndarray, colour_change: Optional[np.ndarray], opts: TwinOptions,
               device: Optional[torch.device] = None) -> np.ndarray:
    """(P, N, d) standardised displacements (+ optional (P, N) luminance changes) → (P, P) MI, diagonal 0.

    ``device`` None: numpy in, the CPU kernel of ``pairwise_mi``; else both estimators run on that device (float64)
    and the sum comes back as numpy."""
    if device is None:
        mi = pairwise_mi(series, k=opts.k)
        if colour_change is not None:
            mi = mi + opts.colour_weight * pairwise_histogram_mi(colour_change[..., None], bins=opts.colour_bins)
        return mi
    traj = torch.from_numpy(np.ascontiguousarray(series, dtype=np.float64)).to(device)
    mi = pairwise_mi(traj, k=opts.k)                                  # "auto": the torch backend for CUDA tensors
    if colour_change is not None:
        colour = torch.from_numpy(np.ascontiguousarray(colour_change[..., None], dtype=np.float64)).to(device)
        mi = mi + opts.colour_weight * pairwise_histogram_mi(colour, bins=opts.colour_bins)
    return mi.cpu().numpy()


def _surrogate_threshold(series: np.ndarray, colour_change: Optional[np.ndarray], opts: TwinOptions,
                         forbidden: Optional[np.ndarray], device: Optional[torch.device] = None) -> float:
    """Quantile ``opts.significance`` of each patch's best-partner MI when every patch's time order
    is shuffled independently (a null of no coupling with the clip's own marginals)."""
    rng = np.random.default_rng(opts.seed)
    p, n, _ = series.shape
    row_max = []
    for _ in range(opts.surrogates):
        perm = np.argsort(rng.random((p, n)), axis=1)
        shuffled = np.take_along_axis(series, perm[..., None], axis=1)
        shuffled_colour = np.take_along_axis(colour_change, perm, axis=1) if colour_change is not None else None
        null = _motion_mi(shuffled, shuffled_colour, opts, device)
        np.fill_diagonal(null, -np.inf)
        if forbidden is not None:
            null[forbidden] = -np.inf
        row_max.append(null.max(axis=1))
    values = np.concatenate(row_max)
    values = values[np.isfinite(values)]
    return float(np.quantile(values, opts.significance)) if values.size else float("-inf")


def colour_changes(colours: np.ndarray) -> np.ndarray:
    """Luminance change per frame step with the clip-wide (median) change removed, so a global
    illumination change is not shared information. colours (P, T, 3) mean RGB → (P, T−1)."""
    lum = colours.astype(np.float64) @ np.array([0.299, 0.587, 0.114])  # Rec. 601 luma
    change = np.diff(lum, axis=1)
    change = change - np.nanmedian(change, axis=0, keepdims=True)
    return np.nan_to_num(change)
