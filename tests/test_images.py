"""The one pixel conversion (mimcl_hub.data.images, issue 13): exact values per dtype and PIL mode, refusals
that name what was wrong, the rule taken from a dataset's feature type, and the clip-frames path using it."""

from fractions import Fraction
import pickle

import cv2
import datasets
import numpy as np
import pytest
from PIL import Image

from mimcl_hub.data import frames_to_uint8_rgb, load_clip_frames
from mimcl_hub.data.images import ImageError, image_dtype, to_uint8_rgb
from mimcl_hub.errors import CLIP_ERROR_REASONS, ClipError

U16 = np.array([0, 1, 128, 129, 256, 257, 32767, 32768, 65279, 65534, 65535], np.uint16)


def _scaled16(values) -> np.ndarray:
    """round(x * 255 / 65535) in exact arithmetic (no ties occur: 65535 = 255 * 257, 257 odd)."""
    return np.array([round(Fraction(int(v) * 255, 65535)) for v in np.ravel(values)], np.uint8).reshape(np.shape(values))


def _grey16() -> np.ndarray:
    """A 16-bit grey picture: a real photo's luminance spread over 0..65535, plus the U16 probe values."""
    from sklearn.datasets import load_sample_image

    grey = cv2.cvtColor(load_sample_image("flower.jpg"), cv2.COLOR_RGB2GRAY)
    grey = cv2.resize(grey, (40, 27), interpolation=cv2.INTER_AREA).astype(np.uint16) * 257
    grey[0, : len(U16)] = U16
    return grey


def test_uint8_is_kept_and_uint16_is_scaled_exactly():
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    out = to_uint8_rgb(rgb)
    assert out.dtype == np.uint8 and np.array_equal(out, rgb)
    deep = np.stack([U16, U16[::-1], U16], axis=-1)[None]  # (1, 11, 3)
    assert _scaled16(U16).tolist() == [0, 0, 0, 1, 1, 1, 127, 128, 254, 255, 255]
    np.testing.assert_array_equal(to_uint8_rgb(deep), _scaled16(deep))


@pytest.mark.parametrize("writer", ["pillow", "opencv"])
def test_16bit_png_is_scaled_not_clipped(tmp_path, writer):
    """A real 16-bit PNG opens in a 16-bit PIL mode; convert("RGB") would clip it to almost white."""
    grey = _grey16()
    path = str(tmp_path / "grey16.png")
    if writer == "pillow":
        Image.fromarray(grey).save(path)
    else:
        assert cv2.imwrite(path, grey)
    with Image.open(path) as image:
        assert image.mode == "I;16"  # what Pillow 13 opens a 16-bit grey PNG as
        out = to_uint8_rgb(image)
        clipped = np.asarray(image.convert("RGB"))
    expected = _scaled16(grey)
    np.testing.assert_array_equal(out, np.repeat(expected[..., None], 3, axis=-1))
    assert (clipped == 255).mean() > 0.9 and abs(out.mean() - expected.mean()) < 1e-9  # the bug it avoids


def test_16bit_pil_modes():
    grey = _grey16()
    expected = np.repeat(_scaled16(grey)[..., None], 3, axis=-1)
    big_endian = Image.frombytes("I;16B", grey.shape[::-1], grey.astype(">u2").tobytes())
    np.testing.assert_array_equal(to_uint8_rgb(big_endian), expected)
    as_i = Image.fromarray(grey.astype(np.int32))
    assert as_i.mode == "I"  # mode I is read as 16-bit data
    np.testing.assert_array_equal(to_uint8_rgb(as_i), expected)
    too_deep = grey.astype(np.int32)
    too_deep[3, 4] = 70_000
    with pytest.raises(ImageError, match=r"picture: .*mode 'I'.*70000.*0\.\.65535"):
        to_uint8_rgb(Image.fromarray(too_deep), "picture")
    with pytest.raises(ImageError, match="strict_format"):
        to_uint8_rgb(Image.fromarray(grey), strict_format=True)


def test_floats_in_unit_range_are_scaled_and_rounded():
    values = np.array([0.0, 1 / 255, 0.25, 0.5, 0.75, 254 / 255, 1.0], np.float32)
    expected = [0, 1, 64, 128, 191, 254, 255]  # rint(x * 255): 63.75 -> 64, 127.5 -> 128, 191.25 -> 191
    for dtype in (np.float16, np.float32, np.float64):
        out = to_uint8_rgb(values.astype(dtype)[None])  # grey (1, 7)
        assert out.shape == (1, 7, 3) and out[0, :, 0].tolist() == expected, dtype
    levels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    np.testing.assert_array_equal(to_uint8_rgb(levels.astype(np.float32) / 255)[..., 0], levels)  # every level back
    pil_float = Image.fromarray((levels / 255).astype(np.float32))
    assert pil_float.mode == "F"
    np.testing.assert_array_equal(to_uint8_rgb(pil_float)[..., 1], levels)


def test_the_rule_depends_on_the_dtype_never_on_the_values():
    dark = np.full((4, 4), 0.003, np.float32)  # a dark float image is still a [0, 1] image: 0.765 -> 1
    assert to_uint8_rgb(dark).max() == 1
    ints = np.zeros((4, 4), np.int64)
    ints[0, 0] = 1  # an int image with values 0 / 1 stays 0 / 1 (never multiplied by 255)
    assert to_uint8_rgb(ints).max() == 1


@pytest.mark.parametrize("value, pattern, reason", [
    (np.full((3, 3), 1.0001, np.float32), r"outside \[0, 1\]", "bad_dtype"),
    (np.full((3, 3), -0.01), r"outside \[0, 1\]", "bad_dtype"),
    (np.full((3, 3), 200.0), r"outside \[0, 1\].*not integer grey levels", "bad_dtype"),
    (np.array([[0.5, np.nan]]), "NaN", "non_finite"),
    (np.array([[0.5, np.inf]]), "infinite", "non_finite"),
    (np.array([[0, 256]], np.int32), r"outside 0\.\.255", "bad_dtype"),
    (np.array([[-1, 3]], np.int16), r"outside 0\.\.255", "bad_dtype"),
    (np.array([[True, False]]), "dtype bool", "bad_dtype"),
    (np.array([[1 + 1j]]), "dtype complex", "bad_dtype"),
    (np.array([["a", "b"]], object), "dtype object", "bad_dtype"),
    (np.zeros((4, 4, 2), np.uint8), "2 channels", "bad_shape"),
    (np.zeros((3, 5, 6), np.uint8), "channels-first", "bad_shape"),
    (np.zeros((2, 4, 4, 3), np.uint8), "4 dimensions", "bad_shape"),
    (np.zeros((0, 4, 3), np.uint8), "empty", "empty_frames"),
])
def test_bad_pixels_are_refused_naming_what(value, pattern, reason):
    with pytest.raises(ImageError, match=pattern) as info:
        to_uint8_rgb(value, "row 7 of column 'img'")
    assert str(info.value).startswith("row 7 of column 'img': ")
    assert info.value.reason == reason and reason in CLIP_ERROR_REASONS
    assert isinstance(info.value, ValueError)
    again = pickle.loads(pickle.dumps(info.value))  # crosses DataLoader / Dataset.map workers intact
    assert again.reason == reason and str(again) == str(info.value)


def test_integers_in_byte_range_and_channels():
    ints = np.arange(12, dtype=np.int64).reshape(2, 2, 3) * 20
    np.testing.assert_array_equal(to_uint8_rgb(ints), ints.astype(np.uint8))
    grey = np.arange(6, dtype=np.uint8).reshape(2, 3)
    out = to_uint8_rgb(grey)
    assert out.shape == (2, 3, 3) and all(np.array_equal(out[..., c], grey) for c in range(3))
    np.testing.assert_array_equal(to_uint8_rgb(grey[..., None]), out)
    rgba = np.dstack([ints.astype(np.uint8), np.full((2, 2), 9, np.uint8)])
    np.testing.assert_array_equal(to_uint8_rgb(rgba), ints.astype(np.uint8))  # alpha dropped, not composited
    palette = Image.fromarray(ints.astype(np.uint8)).convert("P")
    np.testing.assert_array_equal(to_uint8_rgb(palette), np.asarray(palette.convert("RGB")))
    for bad in (grey, rgba):
        with pytest.raises(ImageError, match="strict_format"):
            to_uint8_rgb(bad, strict_format=True)


def test_the_rule_comes_from_the_feature_type():
    """issue 13: rows of a uint16 / float32 column come back as nested Python lists; the column's dtype, not
    the list's values, decides how they are read."""
    deep = np.stack([_grey16()[:4, :5]] * 3, axis=-1)
    features = datasets.Features({"a": datasets.Array3D(shape=deep.shape, dtype="uint16"),
                                  "s": datasets.Sequence(datasets.Sequence(datasets.Sequence(datasets.Value("float32")))),
                                  "i": datasets.Image()})
    unit = deep.astype(np.float32) / 65535
    ds = datasets.Dataset.from_dict({"a": [deep], "s": [unit], "i": [Image.fromarray(deep[..., 0])]}, features=features)
    assert image_dtype(ds.features["a"]) == np.uint16 and image_dtype(ds.features["s"]) == np.float32
    assert image_dtype(ds.features["i"]) is None and image_dtype(datasets.Value("string")) is None
    row = ds[0]
    assert isinstance(row["a"], list)
    np.testing.assert_array_equal(to_uint8_rgb(row["a"], dtype=image_dtype(ds.features["a"])), _scaled16(deep))
    with pytest.raises(ImageError, match="outside 0..255"):  # read as plain integers, 16-bit values are refused
        to_uint8_rgb(row["a"])
    np.testing.assert_array_equal(to_uint8_rgb(row["s"], dtype=np.float32), np.rint(unit * np.float32(255)))
    with pytest.raises(ImageError, match="do not fit the column's dtype uint8"):
        to_uint8_rgb([[300, 2]], dtype=np.uint8)


def test_clip_frames_use_the_same_conversion(tmp_path):
    """The frames path (load_clip_frames -> frames_to_uint8_rgb) reads pixels by the same rule."""
    grey = _grey16()
    frames16 = np.stack([grey, grey[::-1]])
    paths = []
    for i, frame in enumerate(frames16):
        paths.append(str(tmp_path / f"f{i}.png"))
        cv2.imwrite(paths[-1], frame)
    pil = [Image.open(p) for p in paths]
    out = load_clip_frames({"clip_id": "png16", "frames": pil})
    np.testing.assert_array_equal(out, np.stack([to_uint8_rgb(Image.open(p)) for p in paths]))
    np.testing.assert_array_equal(out[..., 0], _scaled16(frames16))
    unit = frames16.astype(np.float64) / 65535
    np.testing.assert_array_equal(frames_to_uint8_rgb(unit, "unit")[..., 2], np.rint(unit * 255).astype(np.uint8))
    with pytest.raises(ClipError, match=r"clip bright: .*outside \[0, 1\]") as info:
        frames_to_uint8_rgb(unit * 2, "bright")
    assert info.value.reason == "bad_dtype"
    with pytest.raises(ClipError, match="clip png16: .*strict_format") as info:
        load_clip_frames({"clip_id": "png16", "frames": pil}, strict_format=True)
    assert info.value.reason == "bad_format"
