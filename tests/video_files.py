"""Real files for the clip-source tests: videos written with PyAV (H.264, MPEG-4, FFV1), an audio-only MP4, a PNG
renamed to .mp4, a 0-byte file, and the other things a folder of "videos" can hold (a folder named x.mp4, broken
links, link loops, a named pipe, a name that is not UTF-8).

``BAD_FILES`` maps a case name to ``(make(folder) -> path, reason, text)``: the file ``make`` leaves in ``folder``
gives no clip of ``WINDOW`` frames; its row carries ``reason`` (a code of ``mimcl_hub.errors.CLIP_ERROR_REASONS``)
and a message containing ``text``."""

from __future__ import annotations

import io
import os
from pathlib import Path

import av
import numpy as np
from PIL import Image

#: The clip window the bad-file cases are built for (a good video of ``GOOD_FRAMES`` frames gives one window).
WINDOW = 16
GOOD_FRAMES = 20


def write_video(path, num_frames: int, codec: str = "libx264", size: tuple[int, int] = (64, 48), seed: int = 0):
    """A real video of ``num_frames`` frames (``size`` = (W, H)): a random texture panning one pixel a frame."""
    width, height = size
    texture = np.random.default_rng(seed).integers(0, 256, (height + num_frames, width + num_frames, 3), np.uint8)
    with av.open(os.fspath(path), "w") as out:
        stream = out.add_stream(codec, rate=25)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv444p" if codec == "ffv1" else "yuv420p"
        for t in range(num_frames):
            frame = np.ascontiguousarray(texture[t:t + height, t:t + width])
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return Path(os.fsdecode(path))


def write_audio_only(path):
    """An MP4 with one AAC audio stream and no video stream."""
    with av.open(os.fspath(path), "w") as out:
        stream = out.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.rate = 8000
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return Path(path)


def write_png(path):
    """A PNG image (FFmpeg opens it and decodes one frame) under whatever name ``path`` has."""
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 64, 3), np.uint8)).save(buffer, "PNG")
    Path(path).write_bytes(buffer.getvalue())
    return Path(path)


def _zero_byte(folder: Path) -> Path:
    path = folder / "empty.mp4"
    path.write_bytes(b"")
    return path


def _random_bytes(folder: Path) -> Path:
    path = folder / "junk.mp4"
    path.write_bytes(np.random.default_rng(3).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    return path


def _folder(folder: Path) -> Path:
    path = folder / "x.mp4"
    path.mkdir()
    return path


def _broken_link(folder: Path) -> Path:
    path = folder / "broken.mp4"
    path.symlink_to("nowhere.mp4")
    return path


def _link_loop(folder: Path) -> Path:
    path = folder / "loop.mp4"
    path.symlink_to("loop.mp4")
    return path


def _named_pipe(folder: Path) -> Path:
    path = folder / "pipe.mp4"
    os.mkfifo(path)
    return path


def _non_utf8(folder: Path) -> Path:
    return write_video(os.fsdecode(bytes(folder) + b"/caf\xe9.mp4"), GOOD_FRAMES, seed=4)


BAD_FILES = {
    "zero_byte": (_zero_byte, "corrupt_video", "is empty (0 bytes)"),
    "audio_only": (lambda folder: write_audio_only(folder / "audio.mp4"), "corrupt_video", "no video stream"),
    "png_renamed": (lambda folder: write_png(folder / "image.mp4"), "too_few_frames", "a single frame"),
    "random_bytes": (_random_bytes, "corrupt_video", "cannot be opened as a video"),
    "one_frame_h264": (lambda folder: write_video(folder / "one.mp4", 1, seed=1), "too_few_frames", "a single frame"),
    "shorter_than_window": (lambda folder: write_video(folder / "short.avi", 10, codec="mpeg4", seed=2),
                            "too_few_frames", f"no window of {WINDOW} frames"),
    "folder_named_mp4": (_folder, "missing_video", "is a folder"),
    "broken_link": (_broken_link, "missing_video", "broken symbolic link"),
    "link_loop": (_link_loop, "missing_video", "symbolic link loop"),
    "named_pipe": (_named_pipe, "missing_video", "not a regular file"),
    "non_utf8_name": (_non_utf8, "bad_field", "not valid UTF-8"),
}


def printable(path) -> str:
    """How a dataset and an error message show ``path`` (bytes that are not UTF-8 as ``\\xe9``)."""
    return os.fsencode(os.fspath(path)).decode("utf-8", "backslashreplace")
