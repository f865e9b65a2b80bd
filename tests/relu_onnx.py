"""The one-node ONNX graph the TensorRT build, runner and bench tests build engines from: small
enough that the fake TensorRT's ONNX Runtime execution costs nothing, real enough to parse."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import onnx
from onnx import TensorProto, helper


def relu_onnx(path: str | Path, shape: Sequence[int | str] = (1, 4, 8, 8)) -> Path:
    """Save ``output = Relu(input)`` of ``shape`` (a str dim is dynamic, e.g. ``("N", 4, 8, 8)``)
    at opset 17, IR 9 (what every ONNX Runtime and TensorRT the tests use reads)."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["input"], ["output"])], "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, list(shape))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return Path(path)
