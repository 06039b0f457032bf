"""Property-based bad input: find_twins and the mining map function only ever raise clear ValueErrors
(find_twins) or mark the row (mine_twin_patches), whatever shapes, dtypes and values they get."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mimcl_hub import ClipError
from mimcl_hub.data import mine_twin_patches
from mimcl_hub.mi import TwinPatches, find_twins

DTYPES = [np.uint8, np.uint16, np.float32, np.float64, np.int64, np.bool_]


@st.composite
def arrays(draw):
    ndim = draw(st.integers(0, 5))
    shape = tuple(draw(st.lists(st.integers(0, 9) if ndim > 3 else st.integers(0, 80), min_size=ndim, max_size=ndim)))
    if ndim == 4 and draw(st.booleans()):  # often a plausible clip shape
        shape = (draw(st.integers(0, 12)), draw(st.integers(1, 80)), draw(st.integers(1, 80)), draw(st.sampled_from([1, 3, 4])))
    dtype = draw(st.sampled_from(DTYPES))
    size = int(np.prod(shape)) if shape else 1
    if size > 200_000:
        shape, size = (2, 2), 4
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 256, size=size).astype(dtype) if dtype != np.bool_ else rng.random(size) > 0.5
    kind = draw(st.sampled_from(["plain", "nan", "constant"]))
    values = values.reshape(shape) if shape else values.reshape(())
    if kind == "nan" and values.dtype.kind == "f" and values.size:
        values = values.copy()
        values.flat[0] = np.nan
    if kind == "constant":
        values = np.zeros_like(values)
    return values


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(frames=arrays())
def test_find_twins_raises_only_clear_value_errors(frames):
    try:
        result = find_twins(frames, clip_id="prop")
    except ValueError as error:
        assert isinstance(error, ClipError) and "prop" in str(error)
        return
    assert isinstance(result, TwinPatches)
    assert result.twin.shape == result.valid.shape == (result.boxes.shape[0],)


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(items=st.lists(arrays(), min_size=1, max_size=3))
def test_mining_map_marks_bad_rows_and_never_crashes(items):
    batch = {"clip_id": [f"clip-{i}" for i in range(len(items))], "frames": items}
    out = mine_twin_patches(batch, indices=list(range(len(items))), max_side=None)
    assert len(out["mine_error"]) == len(items)
    for i, error in enumerate(out["mine_error"]):
        if error:
            assert out["twin"][i] == [] and f"clip-{i}" in error
        else:
            assert len(out["twin"][i]) == len(out["twin_boxes"][i]) > 0


@pytest.mark.parametrize("bad", [None, "frames", 3.5, [[1, 2], [3]]])
def test_find_twins_rejects_non_arrays(bad):
    with pytest.raises(ClipError, match="frames must be"):
        find_twins(bad, clip_id="x")
