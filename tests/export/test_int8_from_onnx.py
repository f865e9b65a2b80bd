"""INT8: gate and GEMV detection, calibration data."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from onnx import helper

from attn_export.errors import ValidationError
from attn_export.export.int8_from_onnx import (
    calibration_feeds_from_dir,
    gate_nodes,
    gemv_nodes,
    seeded_calibration_feeds,
)
from attn_export.runtime.base import TensorSpec
from tests.export.onnx_graphs import model_of


def test_gate_nodes_follow_shape_ops_to_the_gating_mul():
    nodes = [helper.make_node("Sigmoid", ["a"], ["g"], name="sig"),
             helper.make_node("Unsqueeze", ["g", "ax"], ["gu"], name="unsq"),
             helper.make_node("Mul", ["x", "gu"], ["p"], name="gate_mul"),
             helper.make_node("HardSigmoid", ["p"], ["h"], name="hsig"),
             helper.make_node("Mul", ["h", "p"], ["q"], name="hmul"),
             helper.make_node("Sigmoid", ["q"], ["y"], name="last")]
    model = model_of(nodes, {"a": [1, 4], "x": [1, 4, 1], "ax": [1]})
    # hsig * p is HardSwish (an activation: the tensor times a function of itself) and the last
    # Sigmoid multiplies nothing: neither is an attention gate, so both are quantized as usual.
    assert gate_nodes(model) == ["sig", "unsq", "gate_mul"]


def test_a_product_of_gates_is_a_gate_and_its_multiply_stays_float():
    # CoordAtt's deploy form: x * (sigmoid(a_h) * sigmoid(a_w)); the outer Mul applies the gate.
    nodes = [helper.make_node("Sigmoid", ["a"], ["gh"], name="sig_h"),
             helper.make_node("Sigmoid", ["b"], ["gw"], name="sig_w"),
             helper.make_node("Mul", ["gh", "gw"], ["g"], name="gate_product"),
             helper.make_node("Mul", ["x", "g"], ["y"], name="apply"),
             helper.make_node("Mul", ["y", "x"], ["z"], name="not_a_gate")]
    model = model_of(nodes, {"a": [1, 4, 8, 1], "b": [1, 4, 1, 8], "x": [1, 4, 8, 8]})
    assert gate_nodes(model) == ["sig_h", "gate_product", "sig_w", "apply"]


def test_gemv_nodes_are_vector_gemms_and_1x1_map_convs():
    nodes = [helper.make_node("Gemm", ["v", "w"], ["f"], name="fc", transB=1),
             helper.make_node("Conv", ["p", "k"], ["c"], name="conv1x1map"),
             helper.make_node("Conv", ["x", "k"], ["d"], name="conv"),
             helper.make_node("ReduceSum", ["d"], ["y"], keepdims=0)]
    model = model_of(nodes, {"v": [1, 4], "p": [1, 4, 1, 1], "x": [1, 4, 8, 8]},
                     inits={"w": np.ones((4, 4)), "k": np.ones((4, 4, 1, 1))})
    assert gemv_nodes(model) == ["fc", "conv1x1map"]


SPEC = TensorSpec("input", np.dtype(np.float32), (1, 4, None, None))


def test_calibration_folder_reads_samples_and_batches(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "a.npy", rng.standard_normal((4, 8, 8)))  # one sample, float64
    np.save(tmp_path / "b.npy", rng.standard_normal((3, 4, 6, 6)).astype(np.float32))  # a batch
    (tmp_path / "notes.txt").write_text("ignored")
    feeds = calibration_feeds_from_dir(tmp_path, [SPEC])
    assert [f["input"].shape for f in feeds] == [(1, 4, 8, 8)] + [(1, 4, 6, 6)] * 3
    assert all(f["input"].dtype == np.float32 for f in feeds)
    assert len(calibration_feeds_from_dir(tmp_path, [SPEC], limit=2)) == 2


def test_calibration_npz_holds_one_array_per_input(tmp_path):
    specs = [TensorSpec("a", np.dtype(np.float32), (None, 2)),
             TensorSpec("b", np.dtype(np.float32), (None, 3))]
    np.savez(tmp_path / "s.npz", a=np.ones((5, 2)), b=np.zeros((5, 3)))
    feeds = calibration_feeds_from_dir(tmp_path, specs)
    assert len(feeds) == 1 and feeds[0]["a"].shape == (5, 2)
    np.save(tmp_path / "t.npy", np.ones((1, 2)))
    with pytest.raises(ValidationError, match="use .npz files keyed by input name"):
        calibration_feeds_from_dir(tmp_path, specs)


@pytest.mark.parametrize(
    "setup, message",
    [(lambda d: None, "holds no .npy"),
     (lambda d: np.save(d / "x.npy", np.ones((1, 3, 8, 8))), "dim 1 must be 4"),
     (lambda d: np.save(d / "x.npy", np.array(["a"] * 4)), "does not fit input"),
     (lambda d: (d / "x.npy").write_bytes(b"garbage"), "cannot read calibration file")],
    ids=["empty", "channels", "strings", "corrupt"],
)
def test_calibration_folder_refusals(tmp_path, setup, message):
    setup(tmp_path)
    with pytest.raises(ValidationError, match=message):
        calibration_feeds_from_dir(tmp_path, [SPEC])


def test_calibration_path_must_be_a_folder(tmp_path):
    with pytest.raises(ValidationError, match="is not a folder"):
        calibration_feeds_from_dir(tmp_path / "missing", [SPEC])


def test_seeded_calibration_warns_and_is_reproducible():
    with pytest.warns(UserWarning, match="--calib-data"):
        a = seeded_calibration_feeds([SPEC], {"input": (1, 4, 8, 8)}, count=4, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b = seeded_calibration_feeds([SPEC], {"input": (1, 4, 8, 8)}, count=4, seed=3)
    assert len(a) == 4 and all(np.array_equal(x["input"], y["input"]) for x, y in zip(a, b,
                                                                                      strict=True))
    assert a[1]["input"].min() >= 0 and a[1]["input"].max() > 10  # the post-ReLU kind
