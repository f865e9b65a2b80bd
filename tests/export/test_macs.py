"""MACs per weighted node, the INT8 share of a Q/DQ graph, and INT8 that quantizes nothing."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from attn_export.export.macs import count_macs, mean_convs, quantized_nodes
from tests.export.onnx_graphs import model_of


def test_macs_of_each_weighted_op():
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "k"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Conv", ["c", "dw"], ["d"], group=8, pads=[2, 2, 2, 2], name="dw"),
             helper.make_node("ConvTranspose", ["d", "up"], ["u"], strides=[2, 2], name="up"),
             helper.make_node("ReduceMean", ["u"], ["p"], axes=[2, 3], keepdims=0),
             helper.make_node("Gemm", ["p", "w"], ["g"], transB=1, name="fc"),
             helper.make_node("MatMul", ["g", "m"], ["y"], name="mm")]
    model = model_of(nodes, {"x": [None, 4, 6, 5]}, inits={
        "k": rng.standard_normal((8, 4, 3, 3)), "dw": rng.standard_normal((8, 1, 5, 5)),
        "up": rng.standard_normal((8, 2, 2, 2)), "w": rng.standard_normal((3, 2)),
        "m": rng.standard_normal((3, 7))})
    count = count_macs(model, {"x": (2, 4, 6, 5)})
    assert count.per_node == {
        "conv": 2 * 8 * 6 * 5 * (4 * 3 * 3),  # every output: C_in x k x k
        "dw": 2 * 8 * 6 * 5 * (1 * 5 * 5),  # depthwise: C_in / group = 1
        "up": 2 * 8 * 6 * 5 * (2 * 2 * 2),  # every input scatters C_out / group x k x k
        "fc": 2 * 3 * 2, "mm": 2 * 7 * 3}
    assert count.int8_nodes == [] and count.int8_share == 0.0 and count.unknown == []


def _qdq(name, scale="s", zero="z"):
    return [helper.make_node("QuantizeLinear", [name, scale, zero], [f"{name}_q"]),
            helper.make_node("DequantizeLinear", [f"{name}_q", scale, zero], [f"{name}_dq"])]


def test_int8_share_counts_convs_whose_operands_are_both_dequantized():
    rng = np.random.default_rng(0)
    nodes = [*_qdq("x"), *_qdq("k"),
             helper.make_node("Conv", ["x_dq", "k_dq"], ["c"], pads=[1, 1, 1, 1], name="int8"),
             helper.make_node("Conv", ["c", "k2"], ["y"], name="float")]
    model = model_of(nodes, {"x": [1, 4, 8, 8]}, inits={
        "k": rng.standard_normal((4, 4, 3, 3)), "k2": rng.standard_normal((4, 4, 1, 1)),
        "s": np.float32(0.1)})
    model.graph.initializer.append(helper.make_tensor("z", 3, [], [0]))  # int8 zero point
    count = count_macs(model, {"x": (1, 4, 8, 8)})
    assert count.int8_nodes == ["int8"]
    assert count.int8_share == pytest.approx((36 * 4 * 64) / (36 * 4 * 64 + 4 * 4 * 64))
    assert quantized_nodes(model) == ["int8"]


@pytest.mark.parametrize("block, kwargs, quantized", [("se", {"reduction": 4}, False),
                                                      ("rcan_ca", {"reduction": 4}, False),
                                                      ("cbam", {"ratio": 4}, True)],
                         ids=["se", "rcan_ca", "cbam"])
def test_int8_of_real_blocks_says_how_much_is_int8(tmp_path, block, kwargs, quantized):
    import torch

    from attn_export.export.onnx_from_torch import onnx_from_torch
    from attn_export.export.precision import write_int8_onnx
    from attn_export.modules.factory import create_block

    torch.manual_seed(0)
    path = onnx_from_torch(create_block(block, 32, **kwargs).eval(), (1, 32, 12, 10),
                           tmp_path / f"{block}.onnx", 17, "torchscript", "none")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = write_int8_onnx(path)
    said = [str(w.message) for w in caught if "quantized nothing" in str(w.message)]
    assert bool(result.quantized) is quantized and bool(said) is not quantized
    assert result.macs.total > 0
    if quantized:
        assert result.macs.int8_share > 0.9 and "% of MACs in INT8" in result.describe()
    else:
        assert result.macs.int8 == 0 and result.describe().startswith("nothing quantized")


def test_cli_labels_an_int8_row_that_quantized_nothing(tmp_path):
    from click.testing import CliRunner

    from attn_export.cli import main

    out = tmp_path / "se"
    result = CliRunner().invoke(main, ["se", "--input-shape", "1x32x8x8", "--set", "reduction=4",
                                       "--precision", "int8", "--output-dir", str(out)])
    assert result.exit_code == 0, result.output
    assert "warning: INT8 quantized nothing in se.onnx" in result.output
    assert "int8 graph, nothing quantized (float)" in result.output
    report = json.loads((out / "report.json").read_text())["int8"]
    assert report["quantized_nodes"] == 0 and report["int8_mac_share"] == 0.0
    assert report["total_macs"] == 2 * 32 * 8  # two 1x1 convs 32 -> 8 -> 32 on a pooled vector


def test_mean_convs_are_the_constant_weight_convs_only():
    """A channel mean written as a conv (CBAM) is a reduction: found; a learned conv is not."""
    nodes = [helper.make_node("Conv", ["x", "mean_w"], ["m"], name="mean"),
             helper.make_node("Conv", ["x", "learned_w"], ["y"], name="learned"),
             helper.make_node("Conv", ["x", "mean_w", "b"], ["z"], name="biased")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in ("m", "y", "z")],
        [numpy_helper.from_array(np.full((1, 4, 1, 1), 0.25, np.float32), "mean_w"),
         numpy_helper.from_array(np.arange(4, dtype=np.float32).reshape(1, 4, 1, 1), "learned_w"),
         numpy_helper.from_array(np.zeros(1, np.float32), "b")])
    model = helper.make_model(graph)
    assert mean_convs(model) == ["mean"]
    assert set(count_macs(model, {"x": (1, 4, 8, 8)}).per_node) == {"learned", "biased"}
