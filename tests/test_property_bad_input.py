"""Property-based bad input: find_twins and the mining map function only ever raise clear ValueErrors
(find_twins) or mark the row (mine_twin_patches), whatever shapes, dtypes and values they get."""

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mimcl_hub import ClipError
from mimcl_hub.data import mine_twin_patches
from mimcl_hub.errors import CLIP_ERROR_REASONS
from mimcl_hub.mi import TwinOptions, TwinPatches, find_twins

DTYPES = [np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int64, np.float16, np.float32, np.float64,
          np.complex64, np.bool_, np.object_]
SPECIALS = [np.nan, np.inf, -np.inf, -1.0, 256.0, 65535.0, 1e30, 0.5]


@st.composite
def arrays(draw):
    """Random shapes (0-5 dims, zero-sized axes, plausible clips, grey / RGBA / 2- and 5-channel frames), every
    dtype family, and values in range, out of range, fractional, NaN / inf, constant; sometimes as a torch
    tensor, a nested list or a list of frames."""
    ndim = draw(st.integers(0, 5))
    shape = tuple(draw(st.lists(st.integers(0, 9) if ndim > 3 else st.integers(0, 80), min_size=ndim, max_size=ndim)))
    if ndim == 4 and draw(st.booleans()):  # often a plausible clip shape
        shape = (draw(st.integers(0, 12)), draw(st.integers(1, 80)), draw(st.integers(1, 80)),
                 draw(st.sampled_from([1, 2, 3, 4, 5])))
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    if draw(st.integers(0, 3)) == 0:       # at the boundary of valid: 6-8 frames, 63-66 px, grey / RGB / RGBA
        shape = draw(st.sampled_from([(7, 64, 64, 3), (8, 66, 64, 3), (6, 64, 64, 3), (7, 63, 64, 3),
                                      (7, 64, 66, 1), (8, 64, 64, 4), (7, 64, 64)]))
        dtype = np.dtype(draw(st.sampled_from([np.uint8, np.uint16, np.float32, np.int64])))
    size = int(np.prod(shape)) if shape else 1
    if size > 200_000:
        shape, size = (2, 2), 4
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    high = draw(st.sampled_from([2, 256, 65536]))
    if dtype == np.bool_:
        values = rng.random(size) > 0.5
    elif dtype == np.object_:
        values = np.empty(size, object)
        values[:] = [draw(st.sampled_from([None, "x", 1, 2.5])) for _ in range(min(size, 3))] + [0] * max(0, size - 3)
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            values = rng.integers(0, high, size=size).astype(dtype)
    kind = draw(st.sampled_from(["plain", "special", "constant", "fraction"]))
    values = values.reshape(shape) if shape else values.reshape(())
    if kind == "special" and values.dtype.kind in "fc" and values.size:
        values = values.copy()
        with np.errstate(over="ignore", invalid="ignore"):
            values.flat[draw(st.integers(0, values.size - 1))] = draw(st.sampled_from(SPECIALS))
    if kind == "fraction" and values.dtype.kind == "f":
        values = values / max(float(high), 1.0)
    if kind == "constant":
        values = np.zeros_like(values)
    wrap = draw(st.sampled_from(["array", "array", "array", "torch", "list", "frames_list"]))
    if wrap == "torch" and values.dtype.kind in "uifb" and values.dtype not in (np.uint16, np.uint32):
        import torch

        return torch.from_numpy(np.ascontiguousarray(values))
    if wrap == "list" and values.size <= 2000:
        return values.tolist()
    if wrap == "frames_list" and values.ndim >= 1:
        return list(values)
    return values


def _clear(error: BaseException, name: str) -> None:
    """A clear error: a ValueError subclass (ClipError) whose message names the clip (matched literally)."""
    assert isinstance(error, ClipError), f"{type(error).__name__}: {error}"
    assert re.search(re.escape(name), str(error)), str(error)
    assert error.reason in CLIP_ERROR_REASONS


_VALID = np.random.default_rng(5).integers(0, 256, (7, 64, 64, 3)).astype(np.uint8)


@settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(frames=arrays())
@example(frames=_VALID)                                                     # the success path, always tried
@example(frames=_VALID[:6])
@example(frames=_VALID[:, :63])
def test_find_twins_raises_only_clear_value_errors(frames):
    try:
        result = find_twins(frames, clip_id="prop[1]*")                  # regex metacharacters in the name
    except Exception as error:                                            # anything but a clear ClipError fails
        _clear(error, "prop[1]*")
        return
    assert isinstance(result, TwinPatches)
    assert result.twin.shape == result.valid.shape == (result.boxes.shape[0],)


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(items=st.lists(arrays(), min_size=1, max_size=3))
@example(items=[_VALID, _VALID[..., 0], _VALID.astype(np.uint16) * 257, _VALID.astype(np.float64)])
def test_mining_map_marks_bad_rows_and_never_crashes(items):
    batch = {"clip_id": [f"clip-{i}" for i in range(len(items))], "frames": items}
    out = mine_twin_patches(batch, indices=list(range(len(items))), max_side=None)
    assert len(out["mine_error"]) == len(items)
    for i, error in enumerate(out["mine_error"]):
        if error:
            assert out["twin"][i] == [] and f"clip-{i}" in error
            assert out["mine_reason"][i] in CLIP_ERROR_REASONS, (out["mine_reason"][i], error)  # never unexpected
        else:
            assert len(out["twin"][i]) == len(out["twin_boxes"][i]) > 0 and out["mine_reason"][i] == ""


@settings(max_examples=60, deadline=None, derandomize=True)
@given(name=st.sampled_from(sorted(TwinOptions.RANGES)),
       value=st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                       st.none(), st.text(max_size=3)))
def test_twin_options_accept_or_name_the_option(name, value):
    try:
        TwinOptions.from_kwargs(**{name: value})
    except Exception as error:
        assert type(error) is ValueError and name in str(error), f"{type(error).__name__}: {error}"


@pytest.mark.parametrize("bad", [None, "frames", 3.5, [[1, 2], [3]]])
def test_find_twins_rejects_non_arrays(bad):
    with pytest.raises(ClipError, match="frames must be"):
        find_twins(bad, clip_id="x")
