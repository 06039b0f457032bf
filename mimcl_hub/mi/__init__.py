"""The MI engine: KSG and reference estimators, patch tracking, camera compensation, twin selection."""

from .ksg import chebyshev_distances, ksg_mi, pairwise_mi
from .motion import estimate_camera_motion, residual_displacements, tracking_noise
from .reference import gaussian_mi, gaussian_mi_from_rho, histogram_mi, pairwise_histogram_mi
from .tracking import PatchTracks, grid_boxes, track_patches
from .twins import STATUS_NAMES, TwinOptions, TwinPatches, find_twins, random_twins, select_twins, validate_frames

__all__ = [
    "ksg_mi", "pairwise_mi", "chebyshev_distances",
    "gaussian_mi", "gaussian_mi_from_rho", "histogram_mi", "pairwise_histogram_mi",
    "PatchTracks", "grid_boxes", "track_patches",
    "estimate_camera_motion", "residual_displacements", "tracking_noise",
    "TwinOptions", "TwinPatches", "STATUS_NAMES", "find_twins", "select_twins", "random_twins", "validate_frames",
]
