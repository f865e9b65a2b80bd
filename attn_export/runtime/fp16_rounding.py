"""Running a float16 ONNX graph on ONNX Runtime CPU with every FP16 tensor really rounded.

In ``runtime/`` because ``validate`` and ``serve`` judge FP16 graphs with it, not only the export
that writes them.
"""

from __future__ import annotations

from pathlib import Path

from attn_export.runtime.onnx_file import load_onnx
from attn_export.runtime.onnxruntime_runner import OnnxRuntimeRunner


def elem_types(model) -> dict[str, int]:
    """Tensor name -> ONNX element type over the graph's inputs, values, outputs and weights."""
    types: dict[str, int] = {}
    graph = model.graph
    for value in (*graph.input, *graph.value_info, *graph.output):
        if value.type.HasField("tensor_type") and value.type.tensor_type.elem_type:
            types[value.name] = value.type.tensor_type.elem_type
    for tensor in graph.initializer:
        types[tensor.name] = tensor.data_type
    return types


def fp16_rounding_model(model):
    """A copy of a float16 graph on which ONNX Runtime CPU rounds every FP16 tensor, as a GPU does.

    ONNX Runtime's CPU provider has FP16 kernels for few ops: it runs the others in float32 between
    inserted Casts, and then removes each ``Cast(float->float16) -> Cast(float16->float)`` pair as
    redundant, so the activations are never rounded to FP16 at all (measured with onnxruntime 1.31:
    ``Mul``, ``Relu``, ``Conv`` on a float16 graph give float32 results bit for bit). An
    ``Identity`` (which has an FP16 kernel) after every FP16 output keeps each rounding; run it with
    graph optimizations off (:class:`Fp16RoundingRunner`) so the Identities are not eliminated.
    The result is FP16 storage with float32 arithmetic inside each op, which is what TensorRT's FP16
    kernels do (FP32 accumulation), so the FP16 tolerance is judged on realistic numbers.
    """
    import onnx

    rounded = onnx.ModelProto()
    rounded.CopyFrom(model)
    graph = rounded.graph
    types = elem_types(onnx.shape_inference.infer_shapes(rounded))
    nodes = []
    for node in graph.node:
        barriers = []
        for i, name in enumerate(node.output):
            if name and types.get(name) == onnx.TensorProto.FLOAT16:
                node.output[i] = f"{name}__unrounded"
                barriers.append(onnx.helper.make_node("Identity", [node.output[i]], [name],
                                                      name=f"{name}/round_fp16"))
        nodes += [node, *barriers]
    del graph.node[:]
    graph.node.extend(nodes)
    return rounded


class Fp16RoundingRunner(OnnxRuntimeRunner):
    """ONNX Runtime CPU over :func:`fp16_rounding_model` of a float16 ONNX file, with graph
    optimizations off so the rounding Identities survive."""

    def __init__(self, model_path: str | Path) -> None:
        super().__init__(model_path, providers=["CPUExecutionProvider"])

    def _load(self) -> None:
        import onnxruntime as ort

        model = fp16_rounding_model(load_onnx(self.model))
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        self._session = ort.InferenceSession(model.SerializeToString(), sess_options=options,
                                             providers=["CPUExecutionProvider"])
        self.name = "onnxruntime[CPU, FP16 rounding]"


def is_fp16_graph(model) -> bool:
    """Whether a model computes in float16 anywhere (a graph :func:`fp16_from_onnx` wrote)."""
    import onnx

    f16 = onnx.TensorProto.FLOAT16
    return any(t.data_type == f16 for t in model.graph.initializer) or any(
        a.name == "to" and a.i == f16 for n in model.graph.node for a in n.attribute)
