"""What the rules need to know about a graph's tensors: types, shapes, constants, producers.

Constant folding here mirrors the parser's: a node whose inputs are all constant (or a ``Shape``
of a static tensor) yields constants, so "needs a constant input" rules see through folded chains.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from attn_export.export.lint.table import table_data

DEFAULT_DOMAINS = ("", "ai.onnx")
_FOLDABLE_EXCLUDED = {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike",
                      "Bernoulli", "Multinomial", "QuantizeLinear", "DequantizeLinear"}


@dataclass
class GraphFacts:
    """What the rules need to know about tensors: types, shapes, constants, producers."""

    dtypes: dict[str, str]
    shapes: dict[str, tuple]
    values: dict[str, np.ndarray]
    initializers: set[str]
    folded: set[str]
    producer: dict[str, Any]
    consumers: dict[str, list]
    graph_inputs: set[str]
    graph_outputs: set[str]
    nodes: list[tuple[str, Any]]

    def is_initializer(self, name: str) -> bool:
        return name in self.initializers

    def is_constant(self, name: str) -> bool:
        return name in self.initializers or name in self.folded

    def dtype(self, name: str) -> str | None:
        return self.dtypes.get(name)


def type_name(elem_type: int) -> str:
    import onnx

    onnx_name = onnx.TensorProto.DataType.Name(elem_type)
    return table_data()["type_names"].get(onnx_name, onnx_name)


def _walk(graph, prefix: str = ""):
    """(label, node, graph) for every node, subgraph bodies (If/Loop/Scan) included."""
    import onnx

    for i, node in enumerate(graph.node):
        label = prefix + (node.name or f"{node.op_type}_{i}")
        yield label, node, graph
        for attr in node.attribute:
            subs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
            for sub in subs:
                yield from _walk(sub, f"{label}/{attr.name}/")


def _value_infos(model) -> list:
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except (onnx.shape_inference.InferenceError, ValueError, RuntimeError):
        inferred = model  # a graph shape inference chokes on still gets the op checks
    g = inferred.graph
    return list(g.input) + list(g.output) + list(g.value_info)


def _constant_value(node) -> np.ndarray | None:
    from onnx import numpy_helper

    for attr in node.attribute:
        if attr.name == "value":
            return numpy_helper.to_array(attr.t)
        if attr.name in ("value_float", "value_int"):
            return np.array(attr.f if attr.name == "value_float" else attr.i)
        if attr.name in ("value_floats", "value_ints"):
            return np.array(list(attr.floats) if attr.name == "value_floats" else list(attr.ints))
    return None


def graph_facts(model) -> GraphFacts:
    from onnx import numpy_helper

    nodes = [(label, node) for label, node, _ in _walk(model.graph)]
    g = GraphFacts({}, {}, {}, set(), set(), {}, {}, {i.name for i in model.graph.input},
               {o.name for o in model.graph.output}, nodes)
    for vi in _value_infos(model):
        t = vi.type.tensor_type
        if t.elem_type:
            g.dtypes[vi.name] = type_name(t.elem_type)
        if t.HasField("shape"):
            g.shapes[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else
                                      (d.dim_param or None) for d in t.shape.dim)
    for sub in _all_graphs(model.graph):
        for init in sub.initializer:
            g.initializers.add(init.name)
            g.values[init.name] = numpy_helper.to_array(init)
            g.dtypes[init.name] = type_name(init.data_type)
            g.shapes[init.name] = tuple(init.dims)
    g.graph_inputs -= g.initializers
    _index_nodes(g)
    return g


def _all_graphs(graph):
    import onnx

    yield graph
    for node in graph.node:
        for attr in node.attribute:
            subs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
            for sub in subs:
                yield from _all_graphs(sub)


def _index_nodes(g: GraphFacts) -> None:
    for _, node in g.nodes:
        for name in node.output:
            if name:
                g.producer[name] = node
        for name in node.input:
            if name:
                g.consumers.setdefault(name, []).append(node)
        if node.op_type == "Constant" and node.output:
            value = _constant_value(node)
            g.initializers.add(node.output[0])  # the parser turns Constant nodes into weights
            if value is not None:
                g.values[node.output[0]] = value
                g.dtypes.setdefault(node.output[0], _np_type(value))
    for _, node in g.nodes:  # nodes are topologically sorted, so one pass folds chains
        ins = [i for i in node.input if i]
        static_shape = node.op_type == "Shape" and ins and is_static(g.shapes.get(ins[0]))
        if node.op_type not in _FOLDABLE_EXCLUDED and node.op_type != "Constant" and (
                static_shape or (ins and all(g.is_constant(i) for i in ins))):
            g.folded.update(o for o in node.output if o)


def _np_type(value: np.ndarray) -> str:
    from onnx import helper

    return type_name(helper.np_dtype_to_tensor_dtype(value.dtype))


def is_static(shape: tuple | None) -> bool:
    return shape is not None and all(isinstance(d, int) and d > 0 for d in shape)


# --------------------------------------------------------------------------- per-operator rules


def node_attr(node, name: str, default: Any = None) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            value = helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


def node_input(node, index: int) -> str:
    return node.input[index] if index < len(node.input) else ""
