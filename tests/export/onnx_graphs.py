"""Small hand-built ONNX graphs for the precision tests (IR 10: onnxruntime reads <= 13)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

F32 = TensorProto.FLOAT


def model_of(nodes, inputs, outputs="y", inits=(), opset=17):
    """A small float32 model: ``inputs`` name -> shape, one float output."""
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(n, F32, s) for n, s in inputs.items()],
        [helper.make_tensor_value_info(outputs, F32, None)],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in dict(inits).items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 9
    return model


def run(model, feed, optimized=True):
    options = ort.SessionOptions()
    if not optimized:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    return session.run(None, feed)[0]


def elem_type(model, name):
    inferred = onnx.shape_inference.infer_shapes(model)
    for v in (*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input):
        if v.name == name:
            return v.type.tensor_type.elem_type
    return next(t.data_type for t in model.graph.initializer if t.name == name)


def gate_graph():
    """y = x * sigmoid(mean_hw(x) * w): the SE pattern with a ReduceMean."""
    nodes = [helper.make_node("ReduceMean", ["x"], ["m"], axes=[2, 3], keepdims=1),
             helper.make_node("Mul", ["m", "w"], ["s"]),
             helper.make_node("Sigmoid", ["s"], ["g"]),
             helper.make_node("Mul", ["x", "g"], ["y"])]
    return model_of(nodes, {"x": ["N", 4, "H", "W"]}, inits={"w": np.full((1, 4, 1, 1), 0.5)})


def small_onnx(path: Path) -> Path:
    """Conv -> Sigmoid gate -> Mul with a dynamic batch, saved at ``path`` (engine-build tests)."""
    conv = helper.make_node("Conv", ["input", "k"], ["c"], pads=[1, 1, 1, 1])
    nodes = [conv, helper.make_node("Sigmoid", ["c"], ["g"]),
             helper.make_node("Mul", ["input", "g"], ["output"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 4, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(
            np.random.default_rng(0).standard_normal((4, 4, 3, 3)).astype(np.float32), "k")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path
