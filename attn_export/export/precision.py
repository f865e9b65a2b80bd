"""Reduced-precision graphs (FP16, INT8) and the plan that tells TensorRT how to build each one.

TensorRT 10.x still accepts precision as builder flags on an FP32 graph ("weak typing"); TensorRT
11.x removed weak typing, so there the precision must be in the ONNX itself. We therefore put it in
the ONNX for every target and validate that very graph on ONNX Runtime CPU here:

- FP16: :func:`fp16_from_onnx` converts the graph to float16 with float32 I/O, keeping in float32
  the nodes FP16 cannot hold (reductions over H*W, normalisations, shape arithmetic, tensors out of
  FP16 range on sample data, constants FP16 flushes to zero). Our own converter over the ONNX graph,
  driven by the op schemas, so no extra dependency and every decision is recorded.
- INT8: :func:`int8_from_onnx` inserts explicit Q/DQ nodes with ONNX Runtime's static quantization
  (symmetric INT8, per-channel weights, float biases), the form TensorRT's explicit quantization
  reads. Sigmoid gates and the multiply that applies them stay float (F2).

:func:`plan_precision` then says, per TensorRT version, which graph to parse and which network and
builder flags to use (see ``engine_from_onnx``).
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from attn_export.errors import ExportError, MissingDependencyError, ValidationError
from attn_export.runtime.base import Feed, TensorSpec
from attn_export.runtime.onnxruntime_runner import OnnxRuntimeRunner

PRECISIONS = ("fp32", "fp16", "int8")

# --------------------------------------------------------------------------------------------------
# The plan: which graph, network flags and builder flags each TensorRT version needs
# --------------------------------------------------------------------------------------------------

FP16_MODES = ("typed", "flag")
"""``typed``: build the float16 ONNX as a strongly typed network (TensorRT 10.x and 11.x).
``flag``: build the float32 ONNX with ``BuilderFlag.FP16`` (weak typing, TensorRT 10.x only)."""


@dataclass(frozen=True)
class PrecisionPlan:
    """How one precision is built for one TensorRT version; pure data, recorded in the sidecar.

    Attributes:
        precision: fp32, fp16 or int8 (also the tolerance row the engine is judged by).
        trt_version: the target TensorRT version, (major, minor, patch).
        graph: which ONNX to parse: ``fp32`` (BLOCK.onnx), ``fp16`` (BLOCK.fp16.onnx) or ``qdq``
            (BLOCK.int8.onnx).
        strongly_typed: create the network with ``NetworkDefinitionCreationFlag.STRONGLY_TYPED``
            (10.x; on 11.x every network is strongly typed and the flag is not passed).
        builder_flags: ``trt.BuilderFlag`` names to set.
        cleared_flags: ``trt.BuilderFlag`` names to clear (TF32 for FP32 engines: TF32 keeps 10
            mantissa bits and would fail the FP32 tolerance).
        pin_fp32_layers: (weak typing only) pin reduction and normalisation layers to FP32 with
            precision constraints, what the float16 ONNX does for ``typed`` builds (F1, H9).
        notes: why the plan is what it is, printed by the CLI.
    """

    precision: str
    trt_version: tuple[int, int, int]
    graph: str
    strongly_typed: bool
    builder_flags: tuple[str, ...] = ()
    cleared_flags: tuple[str, ...] = ()
    pin_fp32_layers: bool = False
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {
            "precision": self.precision, "trt_version": ".".join(map(str, self.trt_version)),
            "graph": self.graph, "strongly_typed": self.strongly_typed,
            "builder_flags": list(self.builder_flags), "cleared_flags": list(self.cleared_flags),
            "pin_fp32_layers": self.pin_fp32_layers, "notes": list(self.notes),
        }


def parse_trt_version(version: str | Sequence[int]) -> tuple[int, int, int]:
    """``"10.3"`` / ``"10.3.0.30"`` / ``(11, 0)`` -> ``(10, 3, 0)``."""
    if isinstance(version, str):
        parts = re.findall(r"\d+", version)
        if not parts or not re.fullmatch(r"\s*\d+(\.\d+)*\S*\s*", version):
            raise ValidationError(
                f"cannot read TensorRT version {version!r}; expected MAJOR[.MINOR[.PATCH]], "
                "e.g. 10.3 (JetPack 6) or 11.0"
            )
        numbers = [int(p) for p in parts]
    else:
        numbers = [int(p) for p in version]
    numbers = (numbers + [0, 0, 0])[:3]
    return numbers[0], numbers[1], numbers[2]


def plan_precision(
    precision: str, trt_version: str | Sequence[int], fp16_mode: str = "typed"
) -> PrecisionPlan:
    """Choose how to build ``precision`` for TensorRT ``trt_version`` (10.x or 11.x).

    Args:
        precision: fp32, fp16 or int8.
        trt_version: target TensorRT version (the installed one, or ``--trt-version``).
        fp16_mode: ``typed`` (default: the float16 ONNX that was validated on ONNX Runtime) or
            ``flag`` (``BuilderFlag.FP16`` on the float32 graph; TensorRT 10.x only). Also used for
            the float layers of INT8 engines on 10.x.

    Raises:
        ValidationError: unknown precision or mode, TensorRT older than 10, or ``flag`` on 11.x.
    """
    version = parse_trt_version(trt_version)
    if precision not in PRECISIONS:
        raise ValidationError(f"unknown precision {precision!r}; expected one of "
                              f"{', '.join(PRECISIONS)}")
    if fp16_mode not in FP16_MODES:
        raise ValidationError(f"unknown fp16 mode {fp16_mode!r}; expected one of "
                              f"{', '.join(FP16_MODES)}")
    if version[0] < 10:
        raise ValidationError(
            f"TensorRT {'.'.join(map(str, version))} is not supported: attn-export builds with the "
            "TensorRT 10 tensor API (JetPack 6 ships 10.3); upgrade TensorRT or export ONNX only"
        )
    weak_allowed = version[0] == 10
    if fp16_mode == "flag" and not weak_allowed:
        raise ValidationError(
            f"--fp16-mode flag needs weak typing, which TensorRT {version[0]}.x removed "
            "(BuilderFlag.FP16 is gone); use the default --fp16-mode typed"
        )
    if precision == "fp32":
        return PrecisionPlan("fp32", version, "fp32", strongly_typed=not weak_allowed,
                             cleared_flags=("TF32",),
                             notes=("TF32 cleared so FP32 layers keep FP32 accuracy",))
    if precision == "fp16" and fp16_mode == "flag":
        return PrecisionPlan(
            "fp16", version, "fp32", strongly_typed=False,
            builder_flags=("FP16", "PREFER_PRECISION_CONSTRAINTS"), pin_fp32_layers=True,
            notes=("weak typing: BuilderFlag.FP16 on the FP32 graph, reductions and "
                   "normalisations pinned to FP32 (F1, H9)",))
    if precision == "fp16":
        return PrecisionPlan(
            "fp16", version, "fp16", strongly_typed=True,
            notes=("strongly typed: the float16 ONNX validated on ONNX Runtime is built as is",))
    if weak_allowed and fp16_mode == "flag":
        return PrecisionPlan(
            "int8", version, "qdq", strongly_typed=False, builder_flags=("INT8", "FP16"),
            notes=("weak typing: Q/DQ graph with BuilderFlag.INT8, float layers free to use "
                   "FP16 (BuilderFlag.FP16)",))
    return PrecisionPlan(
        "int8", version, "qdq", strongly_typed=True,
        notes=("strongly typed explicit quantization: INT8 where the Q/DQ nodes are, FP32 "
               "elsewhere (gates included, F2)",))


def precision_onnx_path(onnx_path: str | Path, precision: str) -> Path:
    """``exports/cbam/cbam.onnx`` -> ``cbam.fp16.onnx`` / ``cbam.int8.onnx`` beside it."""
    path = Path(onnx_path)
    return path if precision == "fp32" else path.with_name(f"{path.stem}.{precision}.onnx")


# --------------------------------------------------------------------------------------------------
# FP16: our converter over the ONNX graph
# --------------------------------------------------------------------------------------------------

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
    _name_nodes(graph)
    _constants_to_initializers(graph)
    opset = _default_opset(converted)
    inferred = onnx.shape_inference.infer_shapes(converted)
    types = _elem_types(inferred)
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


def _name_nodes(graph) -> None:
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


def _default_opset(model) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)


def _elem_types(model) -> dict[str, int]:
    types: dict[str, int] = {}
    graph = model.graph
    for value in (*graph.input, *graph.value_info, *graph.output):
        if value.type.HasField("tensor_type") and value.type.tensor_type.elem_type:
            types[value.name] = value.type.tensor_type.elem_type
    for tensor in graph.initializer:
        types[tensor.name] = tensor.data_type
    return types


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
    types = _elem_types(onnx.shape_inference.infer_shapes(rounded))
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

        from attn_export.export.check import load_onnx

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


# --------------------------------------------------------------------------------------------------
# INT8: explicit Q/DQ with ONNX Runtime's static quantization
# --------------------------------------------------------------------------------------------------

GATE_OPS = ("Sigmoid", "HardSigmoid")
_TRANSPARENT_OPS = ("Unsqueeze", "Squeeze", "Reshape", "Expand", "Flatten", "Identity",
                    "Transpose", "Tile", "Cast")
QUANTIZED_OP_TYPES = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Mul", "AveragePool",
                      "GlobalAveragePool", "MaxPool", "Clip", "Sigmoid", "HardSigmoid")
"""Ops whose inputs get Q/DQ: NVIDIA ModelOpt's TensorRT-oriented INT8 set (weighted ops, the
elementwise and pooling ops TensorRT fuses with them), plus the gate activations so that
``quantize_gates=True`` has something to quantize. Reductions, norms and softmax stay float."""

TRT_QDQ_OPTIONS = {
    "ActivationSymmetric": True,  # TensorRT's INT8 is symmetric: zero point 0
    "WeightSymmetric": True,
    "QuantizeBias": False,  # TensorRT has no INT32 dequantize; it folds float biases itself
    "AddQDQPairToWeight": True,  # float weights + Q/DQ: TensorRT quantizes them at build time
    "DedicatedQDQPair": False,
    "ForceQuantizeNoInputCheck": True,
    "QDQOpTypePerChannelSupportToAxis": {"Conv": 0, "ConvTranspose": 1, "MatMul": 1},
}
"""ONNX Runtime ``quantize_static`` options for TensorRT, after NVIDIA ModelOpt's
``configure_ort`` (modelopt/onnx/quantization/ort_utils.py); the output-quantization exclusion is
added per graph (Q/DQ on op inputs only, as TensorRT's explicit quantization expects)."""

DEFAULT_CALIB_SAMPLES = 16
CALIB_METHODS = ("minmax", "entropy", "percentile")


def gate_nodes(model) -> list[str]:
    """Names of the nodes F2 keeps out of INT8: every Sigmoid / HardSigmoid, the shape-only ops
    between it and a Mul, and that Mul (the multiply that applies the gate)."""
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    found: list[str] = []
    for node in model.graph.node:
        if node.op_type not in GATE_OPS:
            continue
        found.append(node.name)
        frontier, path = list(node.output), []
        while frontier:
            for user in consumers.get(frontier.pop(), []):
                if user.op_type == "Mul":
                    found.extend([*path, user.name])
                elif user.op_type in _TRANSPARENT_OPS:
                    path.append(user.name)
                    frontier.extend(user.output)
    return list(dict.fromkeys(found))


def gemv_nodes(model) -> list[str]:
    """Gemm/MatMul/Conv nodes applied to a pooled vector (rank-2 input, or a 1x1 map): GEMVs, where
    INT8 buys nothing on TensorRT (no tensor-core tile at M = batch) and costs accuracy, so they
    stay float, as NVIDIA ModelOpt's GEMV rule does for MatMul."""
    import onnx

    shapes = {}
    for value in onnx.shape_inference.infer_shapes(model).graph.value_info:
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
    found = []
    for node in model.graph.node:
        shape = shapes.get(node.input[0]) if node.input else None
        if shape is None:
            continue
        if node.op_type in ("Gemm", "MatMul") and len(shape) == 2:
            found.append(node.name)
        elif node.op_type == "Conv" and len(shape) > 2 and all(d == 1 for d in shape[2:]):
            found.append(node.name)
    return found


def attention_matmuls(model) -> list[str]:
    """MatMuls of two activations (attention's Q @ K^T and softmax(...) @ V). Their operands are
    per-token scores and probabilities: one per-tensor INT8 scale flushes the small attention
    weights to zero, the failure F2 describes for sigmoid gates (measured on ``mhsa``: cosine 0.45
    to PyTorch when quantized). NVIDIA ModelOpt likewise leaves attention BMMs unquantized."""
    constant = _constant_tensors(model)
    return [n.name for n in model.graph.node
            if n.op_type == "MatMul" and not any(i in constant for i in n.input)]


def _constant_tensors(model) -> set[str]:
    constant = {t.name for t in model.graph.initializer}
    return constant | {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}


class FeedReader:
    """ONNX Runtime ``CalibrationDataReader`` over a list of feeds (duck-typed: ``get_next``)."""

    def __init__(self, feeds: Sequence[Feed]) -> None:
        self.feeds = list(feeds)
        self._next = 0

    def get_next(self) -> Feed | None:
        if self._next >= len(self.feeds):
            return None
        self._next += 1
        return self.feeds[self._next - 1]

    def rewind(self) -> None:
        self._next = 0

    def __len__(self) -> int:
        return len(self.feeds)


def seeded_calibration_feeds(inputs: Sequence[TensorSpec], shapes: Mapping[str, Sequence[int]],
                             count: int = DEFAULT_CALIB_SAMPLES, seed: int = 0) -> list[Feed]:
    """Synthetic calibration inputs, with a warning: half N(0, 1), half post-ReLU maps up to ~30
    (the kinds the golden files hold), so scales cover both. Real data gives better scales."""
    from attn_export.runtime.inputs import make_input

    warnings.warn(
        f"no --calib-data given: calibrating INT8 on {count} seeded synthetic samples; the "
        "activation scales will not match real data. Pass --calib-data DIR (a folder of .npy "
        "input maps) for a deployable INT8 graph",
        UserWarning, stacklevel=2,
    )
    feeds = []
    for i in range(count):
        kind = "normal" if i % 2 == 0 else "relu_large"
        feeds.append({s.name: make_input(kind, tuple(shapes[s.name]), seed + i).astype(s.dtype)
                      for s in inputs})
    return feeds


def calibration_feeds_from_dir(
    folder: str | Path, inputs: Sequence[TensorSpec], limit: int = 256
) -> list[Feed]:
    """Calibration feeds from a folder: ``.npy`` maps (one-input graphs) or ``.npz`` files keyed by
    input name. An array of rank R-1 is one sample; rank R is a batch, split to the graph's batch
    when the graph fixes it. At most ``limit`` feeds are read."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValidationError(f"--calib-data {folder} is not a folder; expected a folder of .npy "
                              "input maps (or .npz files keyed by input name)")
    files = sorted(p for p in folder.iterdir() if p.suffix in (".npy", ".npz"))
    if not files:
        raise ValidationError(f"--calib-data {folder} holds no .npy or .npz file")
    feeds: list[Feed] = []
    for path in files:
        arrays = _read_calib_file(path, inputs)
        batches = {s.name: _as_batches(arrays[s.name], s, path) for s in inputs}
        counts = {len(b) for b in batches.values()}
        if len(counts) != 1:
            raise ValidationError(f"{path}: inputs hold different sample counts {sorted(counts)}")
        feeds += [{name: b[i] for name, b in batches.items()} for i in range(counts.pop())]
        if len(feeds) >= limit:
            break
    return feeds[:limit]


def _read_calib_file(path: Path, inputs: Sequence[TensorSpec]) -> dict[str, np.ndarray]:
    try:
        if path.suffix == ".npz":
            with np.load(str(path), allow_pickle=False) as data:
                loaded = {k: data[k] for k in data.files}
        else:
            loaded = {"": np.load(str(path), allow_pickle=False)}
    except (OSError, ValueError, EOFError) as exc:
        raise ValidationError(f"cannot read calibration file {path}: {exc}") from None
    if "" in loaded:
        if len(inputs) != 1:
            raise ValidationError(
                f"{path}: a .npy holds one array but the graph has inputs "
                f"{[s.name for s in inputs]}; use .npz files keyed by input name")
        return {inputs[0].name: loaded[""]}
    missing = [s.name for s in inputs if s.name not in loaded]
    if missing:
        raise ValidationError(f"{path} lacks inputs {missing}; it holds {sorted(loaded)}")
    return loaded


def _as_batches(array: np.ndarray, spec: TensorSpec, path: Path) -> list[np.ndarray]:
    rank = len(spec.shape)
    if array.ndim == rank - 1:
        array = array[None]
    if array.ndim != rank or not np.issubdtype(array.dtype, np.number):
        raise ValidationError(f"{path}: array of shape {array.shape} ({array.dtype}) does not fit "
                              f"input {spec.describe()}; expected a numeric array of rank {rank} "
                              f"(a batch) or {rank - 1} (one sample)")
    for axis in range(1, rank):
        want = spec.shape[axis]
        if want is not None and array.shape[axis] != want:
            raise ValidationError(f"{path}: shape {array.shape} does not fit input "
                                  f"{spec.describe()} (dim {axis} must be {want})")
    array = array.astype(spec.dtype, copy=False)
    step = spec.shape[0] or array.shape[0]
    if array.shape[0] % step:
        raise ValidationError(f"{path}: batch of {array.shape[0]} is not a multiple of the "
                              f"graph's fixed batch {step}")
    return [np.ascontiguousarray(array[i:i + step]) for i in range(0, array.shape[0], step)]


@dataclass
class Int8Quantization:
    """Where the Q/DQ graph was written, what stayed float and on what it was calibrated."""

    path: Path
    excluded: list[str]
    calibration: str
    samples: int
    quantized_ops: dict[str, int] = field(default_factory=dict)


def int8_from_onnx(
    onnx_path: str | Path,
    output_path: str | Path,
    calib_feeds: Sequence[Feed],
    calibration: str = "given feeds",
    quantize_gates: bool = False,
    calibrate_method: str = "minmax",
    op_types: Sequence[str] = QUANTIZED_OP_TYPES,
    per_channel: bool = True,
) -> Int8Quantization:
    """Write an explicit-quantization (Q/DQ) copy of a float32 graph, calibrated on ``calib_feeds``.

    The quantization is what TensorRT's explicit quantization expects: signed INT8, symmetric
    (zero point 0) activations and weights, per-channel weights, float biases (TensorRT has no
    INT32 dequantize). The same graph runs on ONNX Runtime (CPU QDQ kernels) and TensorRT.

    Args:
        onnx_path: the float32 graph.
        output_path: where to write the Q/DQ graph (atomically).
        calib_feeds: calibration inputs (:func:`calibration_feeds_from_dir` or
            :func:`seeded_calibration_feeds`).
        calibration: a description of the feeds, recorded in the result.
        quantize_gates: quantize sigmoid gates and their multiply too (F2 says do not).
            GEMVs (:func:`gemv_nodes`) and attention BMMs (:func:`attention_matmuls`) stay
            float either way.
        calibrate_method: minmax, entropy or percentile.
        op_types: op types given Q/DQ.
        per_channel: per-output-channel weight scales.
    """
    import onnx

    from attn_export.atomic import write_atomic

    try:
        from onnxruntime.quantization import (
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
    except ImportError as exc:
        raise MissingDependencyError("INT8 quantization needs onnxruntime; install it with "
                                     "`pip install onnxruntime`") from exc
    if calibrate_method not in CALIB_METHODS:
        raise ValidationError(f"unknown calibration method {calibrate_method!r}; expected one of "
                              f"{', '.join(CALIB_METHODS)}")
    if not calib_feeds:
        raise ValidationError("no calibration samples; give --calib-data with at least one map")
    model = onnx.load(str(onnx_path))
    _name_nodes(model.graph)
    gates = [] if quantize_gates else gate_nodes(model)
    excluded = list(dict.fromkeys((*gemv_nodes(model), *attention_matmuls(model), *gates)))
    options = dict(TRT_QDQ_OPTIONS)
    options["OpTypesToExcludeOutputQuantization"] = sorted({n.op_type for n in model.graph.node})
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[calibrate_method]

    def write(tmp: Path) -> None:
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # ORT advises pre-processing on the root logger, every call
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _quantize(tmp)
        finally:
            root.setLevel(level)

    def _quantize(tmp: Path) -> None:
        quantize_static(
            model, tmp, FeedReader(calib_feeds), quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(op_types), per_channel=per_channel,
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
            nodes_to_exclude=excluded, calibrate_method=method, extra_options=options,
        )

    path = write_atomic(Path(output_path), write)
    quantized = onnx.load(str(path))
    counts: dict[str, int] = {}
    for node in quantized.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return Int8Quantization(path, excluded, calibration, len(calib_feeds), counts)


# --------------------------------------------------------------------------------------------------
# Files: BLOCK.fp16.onnx and BLOCK.int8.onnx beside BLOCK.onnx
# --------------------------------------------------------------------------------------------------


def graph_kind(model) -> str:
    """``qdq`` (has QuantizeLinear), ``fp16`` (computes in float16) or ``fp32``."""
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node):
        return "qdq"
    return "fp16" if is_fp16_graph(model) else "fp32"


def write_fp16_onnx(onnx_path: str | Path, output_path: str | Path | None = None,
                    sample_feeds: Sequence[Feed] | None = None, **options) -> Fp16Conversion:
    """Convert the float32 ONNX file to float16 (float32 I/O) and write it atomically.

    Args:
        onnx_path: BLOCK.onnx (float32).
        output_path: default BLOCK.fp16.onnx beside it.
        sample_feeds: inputs for the FP16 range check (the golden inputs or calibration data).
        **options: passed to :func:`fp16_from_onnx` (``keep_fp32_ops``, ``keep_fp32_nodes``,
            ``range_limit``).
    """
    import onnx

    from attn_export.atomic import write_atomic
    from attn_export.export.check import load_onnx

    model = load_onnx(onnx_path)
    if graph_kind(model) != "fp32":
        raise ValidationError(f"{onnx_path} is already a {graph_kind(model)} graph; convert the "
                              "float32 BLOCK.onnx")
    conversion = fp16_from_onnx(model, sample_feeds=sample_feeds, **options)
    path = Path(output_path or precision_onnx_path(onnx_path, "fp16"))
    write_atomic(path, lambda tmp: onnx.save(conversion.model, str(tmp)))
    conversion.path = path
    return conversion


def write_int8_onnx(
    onnx_path: str | Path,
    output_path: str | Path | None = None,
    calib_data: str | Path | None = None,
    shapes: Mapping[str, Sequence[int]] | None = None,
    quantize_gates: bool = False,
    calib_samples: int = DEFAULT_CALIB_SAMPLES,
    seed: int = 0,
    **options,
) -> Int8Quantization:
    """Quantize the float32 ONNX file to a Q/DQ graph (default BLOCK.int8.onnx beside it).

    Args:
        onnx_path: BLOCK.onnx (float32).
        output_path: where to write; default BLOCK.int8.onnx.
        calib_data: folder of .npy / .npz calibration inputs; None -> seeded samples, with a
            warning.
        shapes: input name -> shape of the seeded samples (needed for dynamic dims).
        quantize_gates: F2 override.
        calib_samples: how many seeded samples.
        seed: seed of the synthetic samples.
        **options: passed to :func:`int8_from_onnx`.
    """
    from attn_export.export.check import load_onnx
    from attn_export.export.profiles import onnx_input_specs

    model = load_onnx(onnx_path)
    if graph_kind(model) != "fp32":
        raise ValidationError(f"{onnx_path} is already a {graph_kind(model)} graph; quantize the "
                              "float32 BLOCK.onnx")
    inputs = onnx_input_specs(model)
    if calib_data is not None:
        feeds = calibration_feeds_from_dir(calib_data, inputs)
        source = f"{len(feeds)} samples from {calib_data}"
    else:
        shapes = dict(shapes or {})
        for spec in inputs:
            if spec.name not in shapes:
                if any(d is None for d in spec.shape):
                    raise ValidationError(
                        f"input {spec.describe()} has dynamic dims: give --calib-data or the "
                        "export shape to draw calibration samples at")
                shapes[spec.name] = spec.shape
        feeds = seeded_calibration_feeds(inputs, shapes, calib_samples, seed)
        source = f"{len(feeds)} seeded synthetic samples (seed {seed}); pass --calib-data"
    path = Path(output_path or precision_onnx_path(onnx_path, "int8"))
    return int8_from_onnx(onnx_path, path, feeds, source, quantize_gates=quantize_gates, **options)


# --------------------------------------------------------------------------------------------------
# The export path: write the reduced-precision graph and validate it on ONNX Runtime CPU
# --------------------------------------------------------------------------------------------------


@dataclass
class PrecisionExport:
    """A reduced-precision graph written beside BLOCK.onnx and its validation rows."""

    path: Path
    precision: str
    plan: PrecisionPlan
    rows: list = field(default_factory=list)
    kept_float: dict[str, str] = field(default_factory=dict)
    calibration: str = ""

    @property
    def passed(self) -> bool:
        return all(r.comparison.passed for r in self.rows)


def precision_onnx_from_export(
    onnx_path: str | Path,
    golden_path: str | Path,
    precision: str,
    calib_data: str | Path | None = None,
    quantize_gates: bool = False,
    trt_version: str = "10.3",
    fp16_mode: str = "typed",
    seed: int = 0,
) -> PrecisionExport:
    """Write BLOCK.fp16.onnx or BLOCK.int8.onnx from an export folder's float32 graph and judge it
    against the golden PyTorch outputs with the precision's tolerance, on ONNX Runtime CPU (FP16
    through :class:`Fp16RoundingRunner`, so FP16 rounding really happens).

    Args:
        onnx_path / golden_path: BLOCK.onnx and BLOCK.golden.npz of the export.
        precision: fp16 or int8.
        calib_data: INT8 calibration folder; also the FP16 range-check data when given.
        quantize_gates: F2 override for INT8.
        trt_version: the TensorRT the plan targets (recorded; the graph is the same for 10 and 11).
        fp16_mode: see :func:`plan_precision`.
        seed: seed of synthetic calibration samples.
    """
    from attn_export.runtime.golden import load_golden
    from attn_export.runtime.validate import validate_runner

    if precision not in ("fp16", "int8"):
        raise ValidationError(f"precision {precision!r} has no reduced graph; expected fp16 or "
                              "int8 (fp32 is BLOCK.onnx itself)")
    plan = plan_precision(precision, trt_version, fp16_mode)
    golden = load_golden(golden_path)
    if precision == "fp16":
        feeds = [case.inputs for case in golden.cases]
        if calib_data is not None:
            from attn_export.export.check import load_onnx
            from attn_export.export.profiles import onnx_input_specs

            feeds = calibration_feeds_from_dir(calib_data,
                                               onnx_input_specs(load_onnx(onnx_path)))
        conv = write_fp16_onnx(onnx_path, sample_feeds=feeds)
        result = PrecisionExport(conv.path, precision, plan, kept_float=conv.kept_fp32)
        runner = Fp16RoundingRunner(conv.path)
    else:
        shapes = {name: array.shape for name, array in golden.cases[0].inputs.items()}
        quant = write_int8_onnx(onnx_path, None, calib_data, shapes, quantize_gates, seed=seed)
        result = PrecisionExport(quant.path, precision, plan, calibration=quant.calibration,
                                 kept_float={n: "kept float (gate, GEMV or attention BMM)"
                                             for n in quant.excluded})
        runner = OnnxRuntimeRunner(quant.path, ["CPUExecutionProvider"])
    with runner:
        result.rows = validate_runner(runner, golden, precision)
    return result


def validation_runner(model_path: str | Path):
    """The runner that validates ``model_path`` faithfully, and the precision it was built for:
    an engine -> TensorRT (precision from its sidecar); a float16 ONNX -> ONNX Runtime with FP16
    rounding; a Q/DQ ONNX -> ONNX Runtime (int8); any other ONNX -> ONNX Runtime (fp32)."""
    from attn_export.export.check import load_onnx

    path = Path(model_path)
    if path.suffix in (".engine", ".plan", ".trt"):
        from attn_export.export.sidecar import read_sidecar
        from attn_export.runtime.tensorrt_runner import TensorRTRunner

        sidecar = read_sidecar(path)
        return TensorRTRunner(path), (sidecar.precision if sidecar else "fp32")
    kind = graph_kind(load_onnx(path))
    if kind == "fp16":
        return Fp16RoundingRunner(path), "fp16"
    return OnnxRuntimeRunner(path), ("int8" if kind == "qdq" else "fp32")
