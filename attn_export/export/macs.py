"""Multiply-accumulates per weighted node of an ONNX graph, and the share that runs in INT8.

An "INT8" graph is only as INT8 as the MACs behind its Q/DQ nodes: in SE or RCAN's channel
attention every Conv is a GEMV on a pooled vector or sits on the sigmoid gate's path, which F2
keeps float, so the Q/DQ graph quantizes nothing. Counting the MACs of Conv, ConvTranspose, Gemm
and MatMul (the ops that carry nearly all the arithmetic of an attention block) at a concrete
input shape says what fraction of the work TensorRT can run in INT8. Pure onnx: shape inference
and arithmetic, no runtime.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from math import prod

WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
Q_DQ = ("QuantizeLinear", "DequantizeLinear")


def _with_input_shapes(model, shapes: Mapping[str, Sequence[int]]):
    import onnx

    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for value in fixed.graph.input:
        if value.name in shapes:
            dims = value.type.tensor_type.shape.dim
            for d, size in zip(dims, shapes[value.name]):
                d.Clear()
                d.dim_value = int(size)
    return onnx.shape_inference.infer_shapes(fixed)


def _known_shapes(model) -> dict[str, tuple[int, ...]]:
    shapes = {t.name: tuple(t.dims) for t in model.graph.initializer}
    for value in (*model.graph.input, *model.graph.value_info, *model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = tuple(d.dim_value for d in dims)
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            shapes[node.output[0]] = tuple(node.attribute[0].t.dims)
    return shapes


def _macs(node, shapes: Mapping[str, tuple[int, ...]]) -> int | None:
    """MACs of one weighted node; None when a shape it needs is unknown."""
    ins = [shapes.get(name) for name in node.input[:2]]
    out = shapes.get(node.output[0])
    if any(s is None for s in ins) or out is None:
        return None
    (a, b) = ins
    if node.op_type == "Conv":  # every output element: (C / group) * prod(kernel) MACs
        return prod(out) * prod(b[1:])
    if node.op_type == "ConvTranspose":  # every input element scatters (M / group) * prod(k)
        return prod(a) * prod(b[1:])
    if node.op_type == "Gemm":
        trans_a = next((at.i for at in node.attribute if at.name == "transA"), 0)
        return prod(out) * (a[0] if trans_a else a[-1])
    return prod(out) * a[-1]  # MatMul


def mean_convs(model) -> list[str]:
    """Convs whose weight is one constant everywhere with no bias: a mean over the input channels
    written as a convolution (CBAM's channel mean, the form ONNX Runtime CPU runs fast). It is a
    reduction, not a learned layer: INT8 export keeps it float (its Q/DQ on the input would be
    shared by the gate multiply reading the same map, F2) and the MAC count leaves it out, as it
    leaves out the ReduceMean it replaces."""
    from onnx import numpy_helper

    weights = {t.name: t for t in model.graph.initializer}
    weights.update({n.output[0]: a.t for n in model.graph.node if n.op_type == "Constant"
                    for a in n.attribute if a.name == "value"})
    found = []
    for i, node in enumerate(model.graph.node):
        if node.op_type != "Conv" or len(node.input) > 2 or node.input[1] not in weights:
            continue
        w = numpy_helper.to_array(weights[node.input[1]])
        if w.ndim >= 3 and w.shape[0] == 1 and w.size > 1 and (w == w.flat[0]).all():
            found.append(node.name or f"Conv_{i}")  # count_macs's name for an unnamed node
    return found


@dataclass
class MacCount:
    """MACs per weighted node, and which of those nodes read INT8 (Q/DQ) operands."""

    per_node: dict[str, int] = field(default_factory=dict)
    int8_nodes: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.per_node.values())

    @property
    def int8(self) -> int:
        return sum(self.per_node[n] for n in self.int8_nodes)

    @property
    def int8_share(self) -> float:
        """Fraction of the MACs TensorRT can run in INT8 (0.0 for a graph with no MACs)."""
        return self.int8 / self.total if self.total else 0.0


def count_macs(model, input_shapes: Mapping[str, Sequence[int]]) -> MacCount:
    """MACs of every Conv / ConvTranspose / Gemm / MatMul of ``model`` at ``input_shapes``; a
    node counts as INT8 when its data and weight operands both come from DequantizeLinear (what
    TensorRT's explicit quantization fuses into an INT8 kernel)."""
    inferred = _with_input_shapes(model, input_shapes)
    shapes = _known_shapes(inferred)
    dequantized = {o for n in inferred.graph.node if n.op_type == "DequantizeLinear"
                   for o in n.output}
    # DQ(weight) -> shapes of the float weight: the DQ output has the initializer's shape
    for node in inferred.graph.node:
        if node.op_type in Q_DQ and node.input[0] in shapes:
            shapes.setdefault(node.output[0], shapes[node.input[0]])
    count = MacCount()
    reductions = set(mean_convs(model))
    for i, node in enumerate(inferred.graph.node):
        name = node.name or f"{node.op_type}_{i}"
        if node.op_type not in WEIGHTED_OPS or name in reductions:
            continue
        macs = _macs(node, shapes)
        if macs is None:
            count.unknown.append(name)
            continue
        count.per_node[name] = macs
        if all(x in dequantized for x in node.input[:2]):
            count.int8_nodes.append(name)
    return count


def quantized_nodes(model) -> list[str]:
    """Nodes (other than Q/DQ) that read at least one DequantizeLinear output: what a Q/DQ graph
    actually quantizes. Empty means the "INT8" graph computes in float throughout."""
    dequantized = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return [n.name or f"{n.op_type}_{i}" for i, n in enumerate(model.graph.node)
            if n.op_type not in Q_DQ and any(x in dequantized for x in n.input)]
