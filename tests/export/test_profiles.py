"""Optimization profiles: defaults from the shape mode and export shape, overrides, refusals."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from attn_export.errors import ShapeModeError
from attn_export.export.profiles import (
    DEFAULT_MAX_BATCH,
    InputProfile,
    build_profile,
    check_shape_mode,
    onnx_input_specs,
    parse_shapes,
)
from attn_export.runtime.base import TensorSpec

F32 = np.dtype(np.float32)
STATIC = TensorSpec("input", F32, (1, 64, 32, 32))
BATCH = TensorSpec("input", F32, (None, 64, 32, 32))
ALL = TensorSpec("input", F32, (None, 64, None, None))
EXPORT = {"input": (1, 64, 32, 32)}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("1x64x32x32", {None: (1, 64, 32, 32)}),
        (" 2X3x4 ", {None: (2, 3, 4)}),
        ("input:1x64x8x8", {"input": (1, 64, 8, 8)}),
        ("a:1x2,b:3x4", {"a": (1, 2), "b": (3, 4)}),
        ("", {}),
        (None, {}),
    ],
    ids=["unnamed", "spaces-upper-x", "named", "two-inputs", "empty", "none"],
)
def test_parse_shapes(text, expected):
    assert parse_shapes(text) == expected


@pytest.mark.parametrize(
    "text, message",
    [("1x64xAx32", "cannot read shape"), ("1x0x3", "cannot read shape"),
     ("a:1x2,a:1x3", "given twice"), ("1x2,b:1x3", "mixes named and unnamed")],
    ids=["letter", "zero", "duplicate", "mixed"],
)
def test_parse_shapes_refuses(text, message):
    with pytest.raises(ShapeModeError, match=message):
        parse_shapes(text)


def test_static_input_gets_a_point_profile():
    (p,) = build_profile([STATIC], EXPORT)
    assert p.min == p.opt == p.max == (1, 64, 32, 32)


def test_batch_mode_defaults_span_one_to_max_batch():
    (p,) = build_profile([BATCH], {"input": (2, 64, 32, 32)}, shape_mode="batch")
    assert p.min == (1, 64, 32, 32)
    assert p.opt == (2, 64, 32, 32)
    assert p.max == (DEFAULT_MAX_BATCH, 64, 32, 32)


def test_all_mode_defaults_halve_and_double_the_spatial_dims():
    (p,) = build_profile([ALL], {"input": (1, 64, 32, 24)}, shape_mode="all")
    assert p.min == (1, 64, 16, 12)
    assert p.opt == (1, 64, 32, 24)
    assert p.max == (DEFAULT_MAX_BATCH, 64, 64, 48)


def test_overrides_replace_defaults_and_opt_need_not_be_the_export_shape():
    (p,) = build_profile([ALL], EXPORT, min_shapes="1x64x8x8", opt_shapes="4x64x40x40",
                         max_shapes="input:16x64x128x96")
    assert (p.min, p.opt, p.max) == ((1, 64, 8, 8), (4, 64, 40, 40), (16, 64, 128, 96))


def test_opt_override_alone_is_enough_without_an_export_shape():
    (p,) = build_profile([BATCH], None, opt_shapes="4x64x32x32")
    assert p.min[0] == 1 and p.opt[0] == 4 and p.max[0] == DEFAULT_MAX_BATCH


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_shapes": "8x32x32x32"}, "sets dim 1 to 32, but the graph fixes it to 64"),
        ({"min_shapes": "4x64x32x32", "opt_shapes": "2x64x32x32"}, "min <= opt <= max"),
        ({"max_shapes": "8x64x32"}, "has rank 3"),
        ({"max_shapes": "other:8x64x32x32"}, "names \\['other'\\]"),
    ],
    ids=["static-dim-changed", "min-above-opt", "rank", "unknown-input"],
)
def test_bad_overrides_are_refused_with_the_reason(kwargs, message):
    with pytest.raises(ShapeModeError, match=message):
        build_profile([BATCH], EXPORT, **kwargs)


def test_dynamic_dims_without_any_shape_are_refused():
    with pytest.raises(ShapeModeError, match="no export shape is known"):
        build_profile([ALL], None)


def test_unnamed_override_with_two_inputs_is_refused():
    two = [TensorSpec("a", F32, (None, 4)), TensorSpec("b", F32, (None, 4))]
    with pytest.raises(ShapeModeError, match="name each one"):
        build_profile(two, {"a": (1, 4), "b": (1, 4)}, max_shapes="8x4")


def test_shape_mode_must_match_the_graph():
    check_shape_mode([ALL], "all")
    with pytest.raises(ShapeModeError, match="re-export with --dynamic batch"):
        check_shape_mode([ALL], "batch")
    with pytest.raises(ShapeModeError, match="unknown shape mode"):
        check_shape_mode([ALL], "spatial")


def test_profile_accepts_and_round_trips():
    p = InputProfile("input", (1, 3, 8, 8), (2, 3, 16, 16), (4, 3, 32, 32))
    assert p.accepts((3, 3, 9, 31)) and not p.accepts((5, 3, 8, 8))
    assert not p.accepts((1, 3, 8))
    assert InputProfile.from_dict(p.to_dict()) == p
    assert "min 1x3x8x8" in p.describe()


def test_onnx_input_specs_reads_symbolic_dims_and_skips_initializers():
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 8, "H", 5])
    w = helper.make_tensor_value_info("w", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, None)
    graph = helper.make_graph([helper.make_node("Mul", ["input", "w"], ["output"])], "g", [x, w],
                              [y], [onnx.numpy_helper.from_array(np.ones(1, np.float32), "w")])
    specs = onnx_input_specs(helper.make_model(graph))
    assert specs == [TensorSpec("input", F32, (None, 8, None, 5))]
