"""Everything data: clip sources and the one source resolver, video decoding, the one pixel conversion,
procedural scenes, the HF Datasets mining map function, augmentations, the clip bank, the contrastive
datasets (image view branch, twin-pair branch) and their collation.

Modules (imports point down: nothing here imports ``mimcl_hub.train``, ``cli``, ``hub`` or ``eval``):
``images`` (pixels -> uint8 RGB), ``video`` (decoding, shot cuts), ``sources`` (clip datasets from files /
HF datasets), ``scenes`` (procedural clips with ground truth), ``mining`` (twin mining map), ``crops``
(patch crops materialised while mining, so training reads twin pairs without videos), ``clipbank``
(mined clips in memory), ``augment`` (settings, seeded draws, kernels), ``contrastive`` (the datasets and
collation), ``twin_pairs`` (the MI branch read from mined crops, no video), ``two_sources`` (an image dataset for
the view branch + mined pairs for the MI branch), ``two_source_stream`` (both as streams, ``--streaming``),
``default`` (the offline default clips), ``resolve`` (source strings -> datasets, the training set factory),
``store`` (atomic saves), ``dataset_card`` (the card of a mined dataset), ``shards`` (sharded, resumable,
distributed mining: what ``mimcl mine`` runs), ``mine_processes`` (its processes: ranks, waits, the shared scan),
``mined_folder`` (the Hub-style Parquet folder it writes: layout, run state, completeness, card), ``clip_stream``
(``--streaming`` clip sources for mining).
"""

from .augment import AugmentConfig
from .clipbank import ClipBank, load_twin_clips
from .contrastive import ImageContrastiveDataset, ItemPlan, TwinChoice, TwinContrastiveDataset, collate_contrastive
from .default import default_video_dataset
from .images import ImageError, image_dtype, to_uint8_rgb
from .mining import TWIN_FEATURES, error_reason, mine_dataset, mine_twin_patches, mining_report, with_lossless_frames
from .resolve import build_train_dataset, is_saved_dataset, load_clip_source, open_source, source_problem
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
from .mined_folder import MinedFolderError, is_mined_folder, load_mined_folder, mined_folder_problem
from .shards import mine_folder
from .clip_stream import open_streaming_clips
from .store import save_dataset_atomically, save_mined_dataset
from .twin_pairs import CyclicOrder, PairChoice, TwinPairDataset
from .two_sources import TwoSourceDataset, UnminedSourceError, build_two_source_dataset
from .video import decode_video, detect_shot_cuts, frame_differences, scan_video, shot_windows

__all__ = [
    "TWIN_FEATURES", "error_reason", "mine_dataset", "mine_twin_patches", "mining_report", "with_lossless_frames",
    "Scene", "make_scenes", "patch_entities", "patch_groups", "render_scene",
    "bundled_clips", "bundled_video_paths", "folder_clips", "frames_to_uint8_rgb", "hf_video_clips",
    "load_clip_frames", "video_clips",
    "decode_video", "detect_shot_cuts", "frame_differences", "scan_video", "shot_windows",
    "ImageError", "image_dtype", "to_uint8_rgb",
    "AugmentConfig", "ClipBank", "load_twin_clips",
    "TwinContrastiveDataset", "ImageContrastiveDataset", "ItemPlan", "TwinChoice", "collate_contrastive",
    "default_video_dataset", "build_train_dataset",
    "load_clip_source", "open_source", "is_saved_dataset", "source_problem", "save_dataset_atomically",
    "save_mined_dataset",
    "CyclicOrder", "PairChoice", "TwinPairDataset", "TwoSourceDataset", "UnminedSourceError",
    "build_two_source_dataset",
    "mine_folder", "mined_folder_problem", "is_mined_folder", "load_mined_folder", "open_streaming_clips",
    "MinedFolderError",
]
