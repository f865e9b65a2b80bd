"""The FP16 converter on small graphs, and the rounding runner that measures FP16 on ORT CPU."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from attn_export.export.fp16_from_onnx import KEEP_FP32_OPS, fp16_from_onnx
from attn_export.runtime.fp16_rounding import Fp16RoundingRunner
from attn_export.runtime.validation_runner import graph_kind
from tests.export.onnx_graphs import F32, elem_type, gate_graph, model_of, run


def test_fp16_keeps_io_float32_and_reductions_float32():
    model = gate_graph()
    conv = fp16_from_onnx(model)
    out = conv.model
    assert out.graph.input[0].type.tensor_type.elem_type == F32
    assert out.graph.output[0].type.tensor_type.elem_type == F32
    assert out.graph.output[0].name == "y"
    assert elem_type(out, "m") == F32  # ReduceMean kept (F1)
    assert elem_type(out, "g") == TensorProto.FLOAT16
    assert "ReduceMean" in next(iter(conv.kept_fp32.values()))
    assert graph_kind(out) == "fp16" and graph_kind(model) == "fp32"
    x = np.random.default_rng(0).standard_normal((2, 4, 5, 7)).astype(np.float32)
    np.testing.assert_allclose(run(out, {"x": x}), run(model, {"x": x}), atol=2e-3, rtol=2e-3)
    assert model.graph.node[0].name == ""  # the input model is not modified


def test_keep_lists_are_honoured():
    conv = fp16_from_onnx(gate_graph(), keep_fp32_ops=KEEP_FP32_OPS | {"Sigmoid"})
    assert elem_type(conv.model, "g") == F32
    named = fp16_from_onnx(gate_graph(), keep_fp32_ops=(), keep_fp32_nodes=("Mul_3",))
    assert elem_type(named.model, "m") == TensorProto.FLOAT16
    assert named.kept_fp32 == {"Mul_3": "listed in keep_fp32_nodes"}


def test_tensors_out_of_fp16_range_on_sample_data_stay_float32():
    """F1 on the data: x*x reaches 1e4 for x = 100, beyond the 4096 headroom limit."""
    nodes = [helper.make_node("Mul", ["x", "x"], ["sq"]),
             helper.make_node("Sqrt", ["sq"], ["r"]),
             helper.make_node("Relu", ["r"], ["y"])]
    model = model_of(nodes, {"x": [1, 8]})
    x = np.full((1, 8), 100.0, np.float32)
    conv = fp16_from_onnx(model, sample_feeds=[{"x": x}])
    assert {"Mul_0", "Sqrt_1"} <= set(conv.kept_fp32)
    assert "reaches 1e+04" in conv.kept_fp32["Mul_0"]
    assert elem_type(conv.model, "y__fp16") == TensorProto.FLOAT16  # Relu on sqrt: back in range
    blind = fp16_from_onnx(model)  # without data the square is converted
    assert elem_type(blind.model, "sq") == TensorProto.FLOAT16


def test_epsilons_fp16_would_flush_keep_their_node_float32():
    """BLOCKS.md: external attention's 1e-9 vanishes in FP16 (smallest subnormal ~6e-8)."""
    nodes = [helper.make_node("Add", ["x", "eps"], ["d"]),
             helper.make_node("Div", ["x", "d"], ["y"])]
    model = model_of(nodes, {"x": [1, 4]}, inits={"eps": [1e-9]})
    conv = fp16_from_onnx(model)
    assert "Add_0" in conv.kept_fp32 and "flushes to 0" in conv.kept_fp32["Add_0"]
    x = np.array([[0.0, 1.0, 2.0, 3.0]], np.float32)
    assert np.isfinite(run(conv.model, {"x": x})).all()


def test_shape_arithmetic_stays_float32():
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Cast", ["s"], ["sf"], to=F32),
             helper.make_node("Div", ["sf", "two"], ["h"]),
             helper.make_node("ReduceMax", ["h"], ["hm"], keepdims=0),
             helper.make_node("Mul", ["x", "hm"], ["y"])]
    model = model_of(nodes, {"x": [1, 3000]}, inits={"two": [2.0]})
    conv = fp16_from_onnx(model)
    assert "shape arithmetic" in conv.kept_fp32["Div_2"]
    assert "Mul_4" not in conv.kept_fp32  # data times a shape-derived scalar is data: FP16
    x = np.ones((1, 3000), np.float32)
    assert run(conv.model, {"x": x})[0, 0] == 1500.0  # 3000 / 2 computed in float32


def test_two_inputs_of_one_type_constraint_stay_consistent():
    """Equal's T inputs must agree even though its output is bool (found on GCT's graph)."""
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Equal", ["r", "zero"], ["is0"]),
             helper.make_node("Where", ["is0", "one", "r"], ["y"])]
    model = model_of(nodes, {"x": [2, 3]}, inits={"zero": [0.0], "one": [1.0]})
    out = fp16_from_onnx(model).model
    x = np.array([[-1, 2, 0], [3, -4, 5]], np.float32)
    np.testing.assert_array_equal(run(out, {"x": x}), [[1, 2, 1], [3, 1, 5]])


def test_rounding_runner_rounds_every_fp16_tensor(tmp_path):
    """Plain ONNX Runtime CPU drops the FP16 rounding of ops it has no FP16 kernel for; the
    rounding runner keeps it, so the FP16 tolerance is judged on real FP16 numbers."""
    nodes = [helper.make_node("Mul", ["x", "half"], ["y"])]
    model = model_of(nodes, {"x": [1, 64]}, inits={"half": [0.5]})
    path = tmp_path / "m.onnx"
    onnx.save(fp16_from_onnx(model).model, str(path))
    x = np.random.default_rng(1).uniform(10, 40, (1, 64)).astype(np.float32)
    rounded = Fp16RoundingRunner(path).infer({"x": x})["y"]
    np.testing.assert_array_equal(rounded, (x.astype(np.float16) * np.float16(0.5)).astype(np.float32))
    assert np.abs(rounded - 0.5 * x).max() > 1e-3  # the rounding is visible
