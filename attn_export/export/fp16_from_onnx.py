"""FP16 graphs: our converter over the ONNX graph, driven by the op schemas, float32 I/O kept.

It keeps in float32 the nodes FP16 cannot hold (reductions over H*W (F1), normalisations (H9),
shape arithmetic, tensors out of FP16 range on sample data, constants FP16 flushes to zero), so
no extra dependency is needed and every decision is recorded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from attn_export.errors import ExportError
from attn_export.runtime.base import Feed
from attn_export.runtime.fp16_rounding import elem_types
from attn_export.runtime.onnx_file import default_opset

KEEP_FP32_OPS: frozenset[str] = frozenset({
    # F1: sums over H*W grow with the map size and overflow FP16 (max 65504) on large maps.
    "ReduceSum", "ReduceSumSquare", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp",
    "ReduceProd",
    # Means stay in range, but an FP16 accumulation over H*W = 4096 elements keeps ~3 digits; the
    # pooled vector drives every gate, so it is averaged in FP32 (the cast sits on the input edge,
    # usually the graph input, which is FP32 already).
    "ReduceMean",
    # H9 (NVIDIA/TensorRT#2564) and F1: variances over the map.
    "LayerNormalization", "GroupNormalization", "InstanceNormalization",
    # F1: squares (x.pow(2)) of activations above 256 overflow FP16.
    "Pow",
})
"""Op types kept in float32 whatever the data says (the data-driven checks add more)."""

FP16_MAX = 65504.0
FP16_TINY = 2.0 ** -24  # smallest positive subnormal: non-zero constants below it become 0
FP16_RANGE_LIMIT = 4096.0
"""A tensor whose magnitude exceeds this on the sample data keeps its nodes in FP32: 16x headroom
below FP16's maximum, the growth of a sum when a 16x16 export runs at 64x64."""

_SHAPE_SOURCES = ("Shape", "Size")
_PARAMS_FOLLOW_DATA = ("BatchNormalization",)  # scale/bias/mean/var typed with the data in FP16
_ANY_INPUT = "tensor(float16)"


@dataclass
class Fp16Conversion:
    """The converted model and why each float32 node stayed float32 (node name -> reason)."""

    model: object
    kept_fp32: dict[str, str] = field(default_factory=dict)
    casts: int = 0
    converted_nodes: int = 0
    path: Path | None = None


def fp16_from_onnx(
    model,
    keep_fp32_ops: Iterable[str] = KEEP_FP32_OPS,
    keep_fp32_nodes: Iterable[str] = (),
    sample_feeds: Sequence[Feed] | None = None,
    range_limit: float = FP16_RANGE_LIMIT,
) -> Fp16Conversion:
    """Convert a float32 ``onnx.ModelProto`` to float16 compute with float32 inputs and outputs.

    Args:
        model: the float32 model (not modified).
        keep_fp32_ops: op types that stay float32 (default :data:`KEEP_FP32_OPS`).
        keep_fp32_nodes: node names that stay float32.
        sample_feeds: inputs to run the float32 graph on; nodes touching a tensor larger than
            ``range_limit`` there stay float32 (F1 caught on the data, not guessed).
        range_limit: see :data:`FP16_RANGE_LIMIT`.

    Returns:
        :class:`Fp16Conversion`; the model passes ``onnx.checker``.
    """
    import onnx

    converted = onnx.ModelProto()
    converted.CopyFrom(model)
    graph = converted.graph
    _refuse_subgraphs(graph)
    name_nodes(graph)
    _constants_to_initializers(graph)
    opset = default_opset(converted, 17)
    inferred = onnx.shape_inference.infer_shapes(converted)
    types = elem_types(inferred)
    kept = _static_keeps(graph, types, set(keep_fp32_ops), set(keep_fp32_nodes))
    if sample_feeds:
        for name, reason in _out_of_range_nodes(inferred, types, sample_feeds, range_limit).items():
            kept.setdefault(name, reason)
    casts, count = _rewrite_fp16(graph, types, kept, opset)
    del graph.value_info[:]
    converted = onnx.shape_inference.infer_shapes(converted)
    try:
        onnx.checker.check_model(converted)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"the float16 graph fails the ONNX checker: {str(exc)[:300]}") from None
    return Fp16Conversion(converted, kept, casts, count)


def _refuse_subgraphs(graph) -> None:
    import onnx

    for node in graph.node:
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
               for a in node.attribute):
            raise ExportError(
                f"node {node.name or node.op_type} ({node.op_type}) holds a subgraph; the FP16 "
                "converter handles plain graphs only (attention blocks have no control flow)"
            )


def name_nodes(graph) -> None:
    """Give every node a unique name: the keep lists and ORT's exclusions address nodes by name."""
    seen: set[str] = set()
    for i, node in enumerate(graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
        seen.add(node.name)


def _constants_to_initializers(graph) -> None:
    """Float ``Constant`` nodes become initializers, so FP16 consumers get an FP16 copy, no Cast."""
    import onnx

    keep = []
    for node in graph.node:
        single = node.op_type == "Constant" and len(node.attribute) == 1
        attr = node.attribute[0] if single else None
        tensor = None
        if attr is not None and attr.name == "value" and attr.t.data_type == onnx.TensorProto.FLOAT:
            tensor = onnx.TensorProto()
            tensor.CopyFrom(attr.t)
        elif attr is not None and attr.name in ("value_float", "value_floats"):
            values = [attr.f] if attr.name == "value_float" else list(attr.floats)
            tensor = onnx.numpy_helper.from_array(
                np.asarray(values[0] if attr.name == "value_float" else values, dtype=np.float32))
        if tensor is None:
            keep.append(node)
            continue
        tensor.name = node.output[0]
        graph.initializer.append(tensor)
    del graph.node[:]
    graph.node.extend(keep)


def _static_keeps(graph, types: Mapping[str, int], ops: set[str], names: set[str]
                  ) -> dict[str, str]:
    """Nodes kept FP32 by op type, name, domain, shape arithmetic, or their constants."""
    import onnx

    float32 = onnx.TensorProto.FLOAT
    inits = {t.name: t for t in graph.initializer}
    kept: dict[str, str] = {}
    shape_derived: set[str] = set()  # computed from Shape/Size and constants only, no data
    constants = set(inits) | {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    for node in graph.node:
        inputs = [i for i in node.input if i]
        from_shape = node.op_type in _SHAPE_SOURCES or (
            any(i in shape_derived for i in inputs)
            and all(i in shape_derived or i in constants for i in inputs))
        if from_shape:
            shape_derived.update(node.output)
        if node.name in names:
            kept[node.name] = "listed in keep_fp32_nodes"
        elif node.op_type in ops:
            kept[node.name] = f"{node.op_type} is kept in FP32 (reductions, norms, powers: F1, H9)"
        elif node.domain not in ("", "ai.onnx"):
            kept[node.name] = f"custom domain {node.domain!r}"
        elif from_shape and node.op_type not in _SHAPE_SOURCES and any(
                types.get(o) == float32 for o in node.output):
            kept[node.name] = "shape arithmetic (FP16 holds integers exactly only up to 2048)"
        else:
            bad = [i for i in node.input if i in inits and not _fp16_representable(inits[i])]
            if bad:
                kept[node.name] = (f"constant {bad[0]!r} does not survive FP16 (overflows, or a "
                                   "non-zero epsilon flushes to 0)")
    return kept


def _fp16_representable(tensor) -> bool:
    import onnx

    if tensor.data_type != onnx.TensorProto.FLOAT:
        return True
    values = onnx.numpy_helper.to_array(tensor)
    finite = np.abs(values[np.isfinite(values)])
    if finite.size and finite.max() > FP16_MAX:
        return False
    # Small tensors are epsilons and scalars: one flushed to zero changes the maths (x / (s + eps)).
    # In weight tensors a few sub-2^-24 weights are noise, so only small tensors are judged on it.
    return not (values.size <= 16 and np.any((finite > 0) & (finite < FP16_TINY)))


def _out_of_range_nodes(model, types: Mapping[str, int], feeds: Sequence[Feed], limit: float
                        ) -> dict[str, str]:
    """Run the float32 graph on ``feeds`` with every float tensor exposed; flag large tensors."""
    import onnx
    import onnxruntime as ort

    float32 = onnx.TensorProto.FLOAT
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    inits = {t.name for t in probe.graph.initializer}
    outputs = {o.name for o in probe.graph.output}
    tensors = sorted({o for n in probe.graph.node for o in n.output
                      if o and types.get(o) == float32 and o not in outputs})
    probe.graph.output.extend(onnx.helper.make_tensor_value_info(t, float32, None) for t in tensors)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(probe.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    peak: dict[str, float] = {}
    for feed in feeds:
        for name, value in zip(names, session.run(names, feed), strict=True):
            finite = np.abs(value[np.isfinite(value)]) if value.size else value
            peak[name] = max(peak.get(name, 0.0), float(finite.max()) if finite.size else 0.0)
    for name in feeds[0]:
        peak[name] = max(float(np.abs(f[name]).max()) if f[name].size else 0.0 for f in feeds)
    kept = {}
    for node in probe.graph.node:
        big = [t for t in (*node.input, *node.output) if t not in inits and peak.get(t, 0) > limit]
        if big:
            kept[node.name] = (f"tensor {big[0]!r} reaches {peak[big[0]]:.3g} on the sample data "
                               f"(> {limit:g}; FP16 overflows at {FP16_MAX:g})")
    return kept


def _formal_types(schema, count: int, outputs: bool) -> list[str | None]:
    import onnx

    params = schema.outputs if outputs else schema.inputs
    variadic = onnx.defs.OpSchema.FormalParameterOption.Variadic
    result = []
    for i in range(count):
        if i < len(params):
            result.append(params[i].type_str)
        elif params and params[-1].option == variadic:
            result.append(params[-1].type_str)
        else:
            result.append(None)
    return result


def _roles(node, opset: int) -> tuple[list[str], list[str]]:
    """Per input and output: ``linked`` (its type follows the node's float type), ``free`` (any
    type the schema allows, e.g. Cast's input) or ``fixed`` (keeps its own type)."""
    import onnx

    try:
        schema = onnx.defs.get_schema(node.op_type, opset, node.domain)
    except onnx.defs.SchemaError:
        return ["fixed"] * len(node.input), ["fixed"] * len(node.output)
    allowed = {c.type_param_str: set(c.allowed_type_strs) for c in schema.type_constraints}
    ins = _formal_types(schema, len(node.input), outputs=False)
    outs = _formal_types(schema, len(node.output), outputs=True)
    fp16_ok = {t for t, types in allowed.items() if _ANY_INPUT in types}
    linked = {t for t in outs if t in fp16_ok} & set(ins)
    if node.op_type in _PARAMS_FOLLOW_DATA:
        linked |= {t for t in ins if t in fp16_ok}

    def role(t: str | None, is_input: bool) -> str:
        if t in linked:
            return "linked"
        # Free only when no other input shares the constraint (Cast, Shape); Equal's two T inputs
        # must agree, so they keep their own type.
        if is_input and t in fp16_ok and t not in outs and ins.count(t) == 1:
            return "free"
        return "fixed"

    return [role(t, True) for t in ins], [role(t, False) for t in outs]


def _rewrite_fp16(graph, types: dict[str, int], kept: Mapping[str, str], opset: int
                  ) -> tuple[int, int]:
    """Retype linked float tensors of the FP16 nodes and insert the Casts at the boundaries."""
    import onnx

    f16 = onnx.TensorProto.FLOAT16
    new_type = dict(types)
    plan = [_required_types(node, types, new_type, kept, opset) for node in graph.node]
    renamed = _rename_fp16_outputs(graph, new_type, f16)
    nodes, casts = _insert_casts(graph, plan, new_type)
    for original, internal in renamed:
        nodes.append(onnx.helper.make_node("Cast", [internal], [original],
                                           to=onnx.TensorProto.FLOAT, name=f"{original}/Cast"))
    del graph.node[:]
    graph.node.extend(nodes)
    used = {i for n in graph.node for i in n.input}
    graph_inputs = {i.name for i in graph.input}
    unused = [t for t in graph.initializer if t.name not in used and t.name not in graph_inputs]
    for tensor in unused:
        graph.initializer.remove(tensor)
    return casts + len(renamed), sum(converted for _, _, converted in plan)


def _required_types(node, types: Mapping[str, int], new_type: dict[str, int],
                    kept: Mapping[str, str], opset: int) -> tuple[object, list, bool]:
    """The type each input of ``node`` must have (None: any); retypes its FP16 outputs."""
    import onnx

    f32, f16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    in_roles, out_roles = _roles(node, opset)
    pairs = zip(in_roles, node.input, strict=True)
    to16 = node.name not in kept and any(
        r == "linked" and t and types.get(t) == f32 for r, t in pairs)
    required = []
    for name, role in zip(node.input, in_roles, strict=True):
        if not name or role == "free":
            required.append(None)
        elif name not in types:
            raise ExportError(f"cannot type tensor {name!r} (input of {node.name}); run "
                              "onnx shape inference on the graph and retry")
        else:
            required.append(f16 if to16 and role == "linked" and types[name] == f32
                            else types[name])
    if to16:
        for name, role in zip(node.output, out_roles, strict=True):
            if role == "linked" and types.get(name) == f32:
                new_type[name] = f16
    return node, required, to16


def _insert_casts(graph, plan, new_type: Mapping[str, int]) -> tuple[list, int]:
    """Nodes in order with a Cast before each input of the wrong type (one Cast per tensor and
    type); float32 initializers read in FP16 get an FP16 copy instead of a Cast."""
    import onnx

    f16 = onnx.TensorProto.FLOAT16
    inits = {t.name: t for t in graph.initializer}
    graph_inputs = {i.name for i in graph.input}
    casts: dict[tuple[str, int], str] = {}
    copies: dict[str, str] = {}
    nodes = []
    for node, required, _ in plan:
        for i, want in enumerate(required):
            name = node.input[i]
            if want is None or new_type.get(name) == want:
                continue
            if name in inits and name not in graph_inputs and want == f16:
                if name not in copies:
                    copies[name] = _fp16_copy(graph, inits[name])
                node.input[i] = copies[name]
                continue
            if (name, want) not in casts:
                casts[(name, want)] = f"{name}__{'fp16' if want == f16 else 'fp32'}"
                nodes.append(onnx.helper.make_node("Cast", [name], [casts[(name, want)]], to=want,
                                                   name=f"{casts[(name, want)]}/Cast"))
            node.input[i] = casts[(name, want)]
        nodes.append(node)
    return nodes, len(casts)


def _rename_fp16_outputs(graph, new_type: dict[str, int], f16: int) -> list[tuple[str, str]]:
    """Graph outputs computed in FP16 are renamed inside the graph; a final Cast restores the name
    and float32 type, so the model's interface is unchanged (``keep_io_types``)."""
    renamed = []
    for output in graph.output:
        if new_type.get(output.name) != f16:
            continue
        internal = f"{output.name}__fp16"
        for node in graph.node:
            for seq in (node.input, node.output):
                for i, name in enumerate(seq):
                    if name == output.name:
                        seq[i] = internal
        new_type[internal] = f16
        renamed.append((output.name, internal))
    return renamed


def _fp16_copy(graph, tensor) -> str:
    import onnx

    values = onnx.numpy_helper.to_array(tensor)
    copy = onnx.numpy_helper.from_array(
        np.clip(values, -FP16_MAX, FP16_MAX).astype(np.float16), f"{tensor.name}__fp16")
    graph.initializer.append(copy)
    return copy.name
