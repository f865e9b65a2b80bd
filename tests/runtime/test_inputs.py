import numpy as np
import pytest

from attn_export.errors import ValidationError
from attn_export.runtime.inputs import (
    INPUT_KINDS,
    extra_shapes,
    load_user_inputs,
    make_input,
    standard_cases,
)


def test_every_kind_is_float32_and_seeded():
    for kind in INPUT_KINDS:
        a, b = make_input(kind, (1, 2, 3, 4), seed=5), make_input(kind, (1, 2, 3, 4), seed=5)
        assert a.dtype == np.float32 and np.array_equal(a, b)
    assert make_input("relu_large", (1, 4, 8, 8)).min() == 0
    assert make_input("relu_large", (1, 4, 8, 8)).max() > 10


@pytest.mark.parametrize("dynamic,changed", [("batch", {0}), ("all", {0, 2, 3})])
def test_extra_shapes_differ_from_export_shape_only_where_dynamic(dynamic, changed):
    shape = (1, 8, 16, 16)
    shapes = extra_shapes(shape, dynamic)
    assert len(shapes) == 2
    for s in shapes:
        assert s != shape and s[1] == 8
        assert {i for i in range(4) if s[i] != shape[i]} <= changed
    assert extra_shapes(shape, "none") == []


def test_all_mode_covers_h_not_equal_w_and_odd_sizes():
    shapes = extra_shapes((1, 8, 16, 16), "all")
    assert any(s[2] != s[3] for s in shapes) and any(s[2] % 2 or s[3] % 2 for s in shapes)


def test_standard_cases_name_kind_and_shape():
    names = [n for n, _ in standard_cases((1, 2, 3, 4))]
    assert names == [f"{k}@1x2x3x4" for k in INPUT_KINDS]


def test_user_npy_inputs_checked(tmp_path):
    good = tmp_path / "feat.npy"
    np.save(good, np.ones((8, 5, 5), np.float64))
    (name, array), = load_user_inputs([good], channels=8)
    assert name == "feat@1x8x5x5" and array.dtype == np.float32
    with pytest.raises(ValidationError, match="C=4"):
        load_user_inputs([good], channels=4)
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"not numpy")
    with pytest.raises(ValidationError, match="cannot read"):
        load_user_inputs([bad], channels=8)
