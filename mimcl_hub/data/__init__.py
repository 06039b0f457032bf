"""Clip sources, procedural scenes with ground truth, and the HF Datasets twin-mining map function."""

from .mining import TWIN_FEATURES, error_reason, mine_dataset, mine_twin_patches, mining_report, with_lossless_frames
from .scenes import Scene, make_scenes, patch_entities, patch_groups, render_scene
from .sources import (
    bundled_clips,
    bundled_video_paths,
    folder_clips,
    frames_to_uint8_rgb,
    hf_video_clips,
    load_clip_frames,
    video_clips,
)
from .video import decode_video, detect_shot_cuts, frame_differences, scan_video, shot_windows

__all__ = [
    "TWIN_FEATURES", "error_reason", "mine_dataset", "mine_twin_patches", "mining_report", "with_lossless_frames",
    "Scene", "make_scenes", "patch_entities", "patch_groups", "render_scene",
    "bundled_clips", "bundled_video_paths", "folder_clips", "frames_to_uint8_rgb", "hf_video_clips",
    "load_clip_frames", "video_clips",
    "decode_video", "detect_shot_cuts", "frame_differences", "scan_video", "shot_windows",
]
