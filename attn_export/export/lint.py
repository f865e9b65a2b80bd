"""Offline TensorRT lint: would this TensorRT version's ONNX parser accept the graph, node by node?

Runs anywhere, with or without TensorRT: it reads ``trt_support.json`` (kept beside this module,
with the sources of every version cited there) and checks each node against that version's
operator table, opset range, data types and the restrictions the parser documents (inputs it needs
as constants, attributes it cannot honour, static shapes, Q/DQ placement), plus the precision
hazards of BLOCKS.md that bite at build time (H9 LayerNorm in FP16, F1 sums of squares, F2
quantized gates). Only ``onnx`` and ``numpy`` are imported: no torch, no TensorRT.

Rule kinds used in the table (``rules`` of an operator):
    const_input       input ``input`` must be an initializer (``strict``) or fold to a constant
    const_input_max   a constant input must not exceed ``max``
    attr_in           attribute value (or its ONNX default) must be one of ``allowed``
    attr_equals       attribute value (or default) must equal ``value``
    attr_all_ones     attribute, when present, must be all ones
    attr_absent       none of ``attrs`` may be present
    attr_ignored      ``attr`` is accepted but ignored (warning)
    outputs_max       at most ``count`` outputs;  inputs_max: at most ``count`` inputs
    input_rank        input ``input`` must have one of ``ranks``
    static_input      input ``input`` needs static dims (static_axis: its ``axis`` dim does)
    requires_axes     Squeeze must name its axes
    einsum_equation   no ellipsis, no repeated index within an operand (diagonal)
    resize_axes       with runtime scales, ``axes`` must be absent or 0..rank-1
    zero_point_zero   Q/DQ zero point (input ``input``) must be a constant 0
    note              text shown with an accepted node
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from attn_export.errors import AttnExportError, ModelFileError

if TYPE_CHECKING:
    import onnx

LEVELS = ("ok", "warning", "error")
GRAPH = "<graph>"
_DEFAULT_DOMAINS = ("", "ai.onnx")
_FLOAT = ("FP32", "FP16", "BF16")
_FOLDABLE_EXCLUDED = {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike",
                      "Bernoulli", "Multinomial", "QuantizeLinear", "DequantizeLinear"}


class UnknownTrtVersionError(AttnExportError, ValueError):
    """A TensorRT version the support table does not describe."""


@dataclass(frozen=True)
class Finding:
    """One verdict: ``node`` (name, or ``<graph>``), its op type, ok/warning/error and why."""

    node: str
    op_type: str
    level: str
    reason: str
    rule: str = ""


@dataclass
class LintReport:
    """Every finding for one graph against one TensorRT version, plus graph-level notes."""

    model: str
    trt_version: str
    title: str
    opset: int | None
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sources: list[dict[str, str]] = field(default_factory=list)
    derived: str = ""

    def count(self, level: str) -> int:
        return sum(f.level == level for f in self.findings)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "warning"]

    @property
    def passed(self) -> bool:
        """True when the parser should accept the graph (warnings allowed)."""
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "trt_version": self.trt_version, "title": self.title,
            "opset": self.opset, "passed": self.passed,
            "counts": {level: self.count(level) for level in LEVELS},
            "findings": [asdict(f) for f in self.findings], "notes": self.notes,
            "derived": self.derived, "sources": self.sources,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def table(self) -> str:
        """Fixed-width node / op / level / reason table, one row per finding."""
        rows = [(f.node, f.op_type, f.level, f.reason) for f in self.findings]
        head = ("node", "op", "level", "reason")
        w0 = min(max([len(head[0])] + [len(r[0]) for r in rows]), 48)
        w1 = max([len(head[1])] + [len(r[1]) for r in rows])
        lines = [f"{head[0]:<{w0}}  {head[1]:<{w1}}  {head[2]:<7}  {head[3]}"]
        lines += [f"{_clip(r[0], w0):<{w0}}  {r[1]:<{w1}}  {r[2]:<7}  {r[3]}" for r in rows]
        return "\n".join(lines)

    def summary(self) -> str:
        verdict = "accept" if self.passed else "reject"
        return (f"{self.title}, opset {self.opset}: {self.count('ok')} ok, "
                f"{self.count('warning')} warning(s), {self.count('error')} error(s): "
                f"the parser should {verdict} {self.model}")


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else "..." + text[-(width - 3):]


# --------------------------------------------------------------------------- support table


@functools.lru_cache(maxsize=1)
def _data() -> dict[str, Any]:
    text = (resources.files("attn_export") / "export" / "trt_support.json").read_text("utf-8")
    return json.loads(text)


def known_versions() -> list[str]:
    """Version keys of the table plus their aliases (``10`` = latest 10.x), oldest first."""
    keys = sorted(_data()["versions"], key=_version_tuple)
    return keys + sorted(_data()["aliases"])


def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.split(".") if p.isdigit())


def resolve_trt_version(version: str) -> str:
    """Map ``10.3``, ``10.3.0.26``, ``10``, ``10.x``, ``11`` ... to a key of the table.

    Raises:
        UnknownTrtVersionError: the table does not describe that version.
    """
    data = _data()
    v = str(version).strip().lower().removeprefix("tensorrt").removeprefix("trt").strip(" -_v")
    if v in data["aliases"]:
        return data["aliases"][v]
    if v in data["versions"]:
        return v
    parts = v.split(".")
    if len(parts) > 2 and all(p.isdigit() for p in parts) and ".".join(parts[:2]) in \
            data["versions"]:
        return ".".join(parts[:2])
    raise UnknownTrtVersionError(
        f"no support table for TensorRT {version!r}; expected one of: "
        f"{', '.join(known_versions())} ('10' and '10.x' mean the latest 10.x, '11' and "
        "'11.x' the latest 11.x); add the version to attn_export/export/trt_support.json"
    )


@functools.cache
def support_table(trt_version: str) -> dict[str, Any]:
    """The merged entry for a version: inherited keys resolved, ``ops`` merged per operator."""
    key = resolve_trt_version(trt_version)
    entry = _data()["versions"][key]
    if "inherits" not in entry:
        return {**entry, "key": key}
    parent = support_table(entry["inherits"])
    merged = {**parent, **{k: v for k, v in entry.items() if k != "ops"}, "key": key}
    merged["ops"] = {**parent["ops"], **entry.get("ops", {})}
    merged["sources"] = entry.get("sources", []) + parent.get("sources", [])
    merged["derived"] = " ".join(filter(None, (entry.get("derived"), parent.get("derived"))))
    return merged


# --------------------------------------------------------------------------- graph facts


@dataclass
class _Graph:
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


def _type_name(elem_type: int) -> str:
    import onnx

    onnx_name = onnx.TensorProto.DataType.Name(elem_type)
    return _data()["type_names"].get(onnx_name, onnx_name)


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


def _graph_facts(model) -> _Graph:
    from onnx import numpy_helper

    nodes = [(label, node) for label, node, _ in _walk(model.graph)]
    g = _Graph({}, {}, {}, set(), set(), {}, {}, {i.name for i in model.graph.input},
               {o.name for o in model.graph.output}, nodes)
    for vi in _value_infos(model):
        t = vi.type.tensor_type
        if t.elem_type:
            g.dtypes[vi.name] = _type_name(t.elem_type)
        if t.HasField("shape"):
            g.shapes[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else
                                      (d.dim_param or None) for d in t.shape.dim)
    for sub in _all_graphs(model.graph):
        for init in sub.initializer:
            g.initializers.add(init.name)
            g.values[init.name] = numpy_helper.to_array(init)
            g.dtypes[init.name] = _type_name(init.data_type)
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


def _index_nodes(g: _Graph) -> None:
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
        static_shape = node.op_type == "Shape" and ins and _is_static(g.shapes.get(ins[0]))
        if node.op_type not in _FOLDABLE_EXCLUDED and node.op_type != "Constant" and (
                static_shape or (ins and all(g.is_constant(i) for i in ins))):
            g.folded.update(o for o in node.output if o)


def _np_type(value: np.ndarray) -> str:
    from onnx import helper

    return _type_name(helper.np_dtype_to_tensor_dtype(value.dtype))


def _is_static(shape: tuple | None) -> bool:
    return shape is not None and all(isinstance(d, int) and d > 0 for d in shape)


# --------------------------------------------------------------------------- per-operator rules


def _attr(node, name: str, default: Any = None) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            value = helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


def _input(node, index: int) -> str:
    return node.input[index] if index < len(node.input) else ""


def _rule_const_input(node, rule, g: _Graph) -> str | None:
    name = _input(node, rule["input"])
    if not name or (g.is_initializer(name) if rule.get("strict") else g.is_constant(name)):
        return None
    kind = "is not an initializer" if rule.get("strict") else "is computed at runtime"
    return f"input {rule['input']} ({rule['name']}) {kind}: {rule['reason']}"


def _rule_const_input_max(node, rule, g: _Graph) -> str | None:
    value = g.values.get(_input(node, rule["input"]))
    if value is None or value.size == 0 or float(np.max(value)) <= rule["max"]:
        return None
    return f"input {rule['input']} is {int(np.max(value))}: {rule['reason']}"


def _rule_attr_in(node, rule, g: _Graph) -> str | None:
    value = _attr(node, rule["attr"], rule["default"])
    return None if value in rule["allowed"] else f"{rule['attr']}={value!r}: {rule['reason']}"


def _rule_attr_equals(node, rule, g: _Graph) -> str | None:
    value = _attr(node, rule["attr"], rule["default"])
    return None if value == rule["value"] else f"{rule['attr']}={value!r}: {rule['reason']}"


def _rule_attr_all_ones(node, rule, g: _Graph) -> str | None:
    value = _attr(node, rule["attr"])
    return None if not value or all(v == 1 for v in value) else \
        f"{rule['attr']}={list(value)}: {rule['reason']}"


def _rule_attr_absent(node, rule, g: _Graph) -> str | None:
    present = [a for a in rule["attrs"] if _attr(node, a) is not None]
    return f"{', '.join(present)} set: {rule['reason']}" if present else None


def _rule_outputs_max(node, rule, g: _Graph) -> str | None:
    used = [o for o in node.output if o]
    return f"{len(used)} outputs: {rule['reason']}" if len(used) > rule["count"] else None


def _rule_inputs_max(node, rule, g: _Graph) -> str | None:
    used = [i for i in node.input if i]
    return f"{len(used)} inputs: {rule['reason']}" if len(used) > rule["count"] else None


def _rule_input_rank(node, rule, g: _Graph) -> str | None:
    shape = g.shapes.get(_input(node, rule["input"]))
    if shape is None or len(shape) in rule["ranks"]:
        return None
    return f"input {rule['input']} has rank {len(shape)}: {rule['reason']}"


def _rule_static_input(node, rule, g: _Graph) -> str | None:
    shape = g.shapes.get(_input(node, rule["input"]))
    if shape is None or _is_static(shape):
        return None
    return f"input {rule['input']} has dynamic dims {list(shape)}: {rule['reason']}"


def _rule_static_axis(node, rule, g: _Graph) -> str | None:
    shape = g.shapes.get(_input(node, rule["input"]))
    if not shape:
        return None
    axis = _attr(node, "axis", -1)
    dim = shape[axis] if -len(shape) <= axis < len(shape) else None
    return None if isinstance(dim, int) and dim > 0 else f"axis {axis} is dynamic: {rule['reason']}"


def _rule_requires_axes(node, rule, g: _Graph) -> str | None:
    if _attr(node, "axes") is not None or _input(node, 1):
        return None
    return f"no axes given: {rule['reason']}"


def _rule_einsum_equation(node, rule, g: _Graph) -> str | None:
    equation = str(_attr(node, "equation", "")).replace(" ", "")
    terms = equation.split("->")[0].split(",")
    diagonal = any(len(set(t)) != len(t) for t in (t.replace("...", "") for t in terms))
    if "..." in equation or diagonal:
        return f"equation {equation!r}: {rule['reason']}"
    return None


def _rule_resize_axes(node, rule, g: _Graph) -> str | None:
    axes, scales = _attr(node, "axes"), _input(node, 2)
    if axes is None or not scales or g.is_constant(scales):
        return None
    rank = len(g.shapes.get(node.input[0], ())) or len(axes)
    return None if list(axes) == list(range(rank)) else f"axes={list(axes)}: {rule['reason']}"


def _rule_zero_point_zero(node, rule, g: _Graph) -> str | None:
    name = _input(node, rule["input"])
    if not name:
        return None
    if not g.is_constant(name):
        return "the zero point is computed at runtime: TensorRT needs a constant zero point of 0"
    value = g.values.get(name)
    if value is not None and np.any(value != 0):
        return "zero point is not 0: TensorRT quantizes symmetrically (zero point must be 0)"
    return None


def _rule_attr_ignored(node, rule, g: _Graph) -> str | None:
    return f"{rule['attr']} is set: {rule['reason']}" if _attr(node, rule["attr"]) is not None \
        else None


_RULES = {
    "const_input": _rule_const_input, "const_input_max": _rule_const_input_max,
    "attr_in": _rule_attr_in, "attr_equals": _rule_attr_equals,
    "attr_all_ones": _rule_attr_all_ones, "attr_absent": _rule_attr_absent,
    "attr_ignored": _rule_attr_ignored, "outputs_max": _rule_outputs_max,
    "inputs_max": _rule_inputs_max, "input_rank": _rule_input_rank,
    "static_input": _rule_static_input, "static_axis": _rule_static_axis,
    "requires_axes": _rule_requires_axes, "einsum_equation": _rule_einsum_equation,
    "resize_axes": _rule_resize_axes, "zero_point_zero": _rule_zero_point_zero,
}
_RULE_LEVEL = {"attr_ignored": "warning"}


# --------------------------------------------------------------------------- node checks


def _operator_findings(label: str, node, table: dict, g: _Graph) -> list[Finding]:
    """Is the operator in this version's table, and does the node meet its restrictions?"""
    if node.domain not in _DEFAULT_DOMAINS:
        return [_plugin_finding(label, node, table)]
    spec = table["ops"].get(node.op_type)
    title = table["title"]
    if spec is None:
        return [Finding(label, node.op_type, "error",
                        f"{node.op_type} is not in the ONNX operator table of {title}: the parser "
                        "has no importer for it; rewrite it with supported ops or a plugin",
                        "operator")]
    if spec.get("supported") is False:
        why = spec.get("reason", "its operator table marks it unsupported")
        return [Finding(label, node.op_type, "error",
                        f"{node.op_type} is not supported by {title}: {why}", "operator")]
    found = []
    for rule in spec.get("rules", []):
        check = _RULES.get(rule["rule"])
        reason = check(node, rule, g) if check else None
        if reason:
            level = rule.get("level", _RULE_LEVEL.get(rule["rule"], "error"))
            found.append(Finding(label, node.op_type, level, reason, rule["rule"]))
    return found + _op_type_findings(label, node, spec, table, g)


def _plugin_finding(label: str, node, table: dict) -> Finding:
    removed = _data()["removed_plugins"]
    op = f"{node.domain}::{node.op_type}"
    if node.op_type in removed["names"] and \
            _version_tuple(table["key"]) >= _version_tuple(removed["since"]):
        return Finding(label, op, "error",
                       f"plugin {node.op_type} was removed in TensorRT {removed['since']}: "
                       "replace the node with ONNX operators or register your own IPluginV3",
                       "plugin")
    return Finding(label, op, "warning",
                   f"custom operator: the parser looks for a plugin named {node.op_type!r} in "
                   "the plugin registry; it must be registered when the engine is built",
                   "plugin")


def _op_type_findings(label: str, node, spec: dict, table: dict, g: _Graph) -> list[Finding]:
    """The table's 'supported types' for the node's data tensor (others are reported where made)."""
    which = spec.get("type_of", 0)
    name = (node.output[0] if node.output else "") if which == "output" else _input(node, which)
    dtypes = table["dtypes"]
    t = g.dtype(name) if name else None
    t = dtypes.get("narrowed", {}).get(t, t)
    if t is None or t in spec["types"] or t not in dtypes["ok"]:
        return []
    why = spec.get("types_reason", f"{table['title']} lists {', '.join(spec['types'])} only")
    return [Finding(label, node.op_type, spec.get("types_level", "warning"),
                    f"{node.op_type} on {t} data: {why}", "dtype")]


def _dtype_findings(label: str, node, table: dict, g: _Graph) -> list[Finding]:
    """Data types TensorRT lacks, narrows or allows only at the edges, on what the node makes."""
    found = []
    inits = [(i, n) for i, n in enumerate(node.input) if n and n in g.values]
    weights = [n for _, n in inits if n not in g.producer]  # Constant outputs are checked there
    for name in [o for o in node.output if o] + weights:
        verdict = _dtype_verdict(name, node, table, g)
        if verdict:
            found.append(Finding(label, node.op_type, verdict[0], verdict[1], "dtype"))
    if "INT64" in table["dtypes"].get("narrowed", {}):
        for index, name in inits:
            found += _int64_range(label, node, index, name, table, g)
    return found


def _dtype_verdict(name: str, node, table: dict, g: _Graph) -> tuple[str, str] | None:
    t, d, title = g.dtype(name), table["dtypes"], table["title"]
    if t is None or t in d["ok"]:
        return None
    if t == "DOUBLE":
        return "warning", f"{name} is DOUBLE: {title} casts it to FP32, clamping to +-FLT_MAX"
    if t in d.get("narrowed", {}):
        return None
    if t in d.get("io_only", []):
        if name in g.graph_inputs | g.graph_outputs or node.op_type == "Cast":
            return None
        return "error", (f"{name} is {t}: {title} takes it only as a network input or output; "
                         "cast it to a float type first")
    if t in d.get("quantized", []):
        users = g.consumers.get(name, [])
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") or (
                users and all(u.op_type == "DequantizeLinear" for u in users)):
            return None
        return "error", (f"{name} is {t}, a quantized type: {title} allows it only between "
                         "QuantizeLinear and DequantizeLinear")
    return "error", f"{name} is {t}: {title} has no such data type"


def _int64_range(label: str, node, index: int, name: str, table: dict,
                 g: _Graph) -> list[Finding]:
    value = g.values[name]
    if g.dtype(name) != "INT64" or value.size == 0 or (node.op_type == "Slice" and index in (1, 2)):
        return []  # Slice clamps its starts/ends anyway: INT64_MAX there means "to the end"
    info = np.iinfo(np.int32)
    if value.min() >= info.min and value.max() <= info.max:
        return []
    return [Finding(label, node.op_type, "warning",
                    f"INT64 initializer {name} holds values beyond INT32: {table['title']} "
                    "narrows INT64 to INT32 and clamps them to +-2^31-1", "int64")]


def _ok(label: str, node, table: dict) -> Finding:
    spec = table["ops"].get(node.op_type, {})
    notes = [r["text"] for r in spec.get("rules", []) if r["rule"] == "note"]
    return Finding(label, node.op_type, "ok", "; ".join(["supported"] + notes))


# --------------------------------------------------------------------------- patterns


def _qdq_findings(node, table: dict, g: _Graph) -> list[tuple[str, str]]:
    """Q/DQ placement: float paths only, symmetric signed types, paired, per-channel on weights."""
    found = []
    quantize = node.op_type == "QuantizeLinear"
    x, scale = _input(node, 0), _input(node, 1)
    zt = _quant_type(node, g)
    if quantize and g.dtype(x) not in (None, *_FLOAT):
        found.append(("error", f"QuantizeLinear on a {g.dtype(x)} tensor: Q/DQ belong on float "
                               "activations and weights, not on integer or bool paths"))
    if zt is None and quantize:
        found.append(("warning", "no zero point: ONNX then quantizes to UINT8; give an INT8 "
                                 "zero point of 0 so TensorRT and ONNX Runtime agree"))
    elif zt and zt not in table["quant_types"]:
        found.append(("error", f"quantizes to {zt}: {table['title']} quantizes symmetrically to "
                               f"{', '.join(table['quant_types'])} only"))
    if scale and not g.is_constant(scale):
        found.append(("warning", "the scale is computed at runtime: TensorRT expects a "
                                 "build-time constant scale"))
    per_channel = scale in g.values and g.values[scale].size > 1
    if per_channel and not g.is_constant(x):
        found.append((table["activation_per_channel"], "per-channel scale on an activation: "
                       "TensorRT quantizes activations per tensor, weights per output channel"))
    if quantize:
        users = g.consumers.get(node.output[0], []) if node.output else []
        if node.output and (node.output[0] in g.graph_outputs or
                            any(u.op_type != "DequantizeLinear" for u in users)):
            found.append(("error", "QuantizeLinear output must feed DequantizeLinear: TensorRT "
                                   "runs Q/DQ pairs and fuses them into the quantized layer"))
    elif per_channel:
        found += _weight_axis(node, g)
    return found


def _quant_type(node, g: _Graph) -> str | None:
    zp = _input(node, 2)
    if zp:
        return g.dtype(zp)
    if node.op_type == "DequantizeLinear":
        return g.dtype(_input(node, 0))
    output_dtype = _attr(node, "output_dtype", 0)
    return _type_name(output_dtype) if output_dtype else None


def _weight_axis(node, g: _Graph) -> list[tuple[str, str]]:
    rank = len(g.shapes.get(node.input[0], ())) or 1
    axis = _attr(node, "axis", 1) % rank
    found = []
    for user in g.consumers.get(node.output[0], []):
        if len(user.input) < 2 or user.input[1] != node.output[0]:
            continue
        expected = {"Conv": 0, "ConvTranspose": 1, "MatMul": rank - 1,
                    "Gemm": 0 if _attr(user, "transB", 0) else 1}.get(user.op_type)
        if expected is not None and axis != expected:
            found.append(("error", f"per-channel axis {axis} on {user.op_type} weights: TensorRT "
                                   f"quantizes them along the output-channel axis ({expected})"))
    return found


def _is_square(node, g: _Graph) -> bool:
    if node.op_type == "Mul":
        return len(node.input) == 2 and node.input[0] == node.input[1]
    if node.op_type == "Pow":
        exponent = g.values.get(_input(node, 1))
        return exponent is not None and exponent.size == 1 and float(exponent.ravel()[0]) == 2.0
    return node.op_type in ("ReduceSumSquare", "ReduceL2")


def _norm_findings(node, table: dict, g: _Graph) -> list[tuple[str, str]]:
    """H9 / F1: variances and sums of squares that overflow FP16 when a build runs them in FP16."""
    fp16 = g.dtype(node.output[0]) == "FP16" if node.output else False
    when = "this graph computes it in FP16" if fp16 else \
        "a build with FP16 enabled may run it in FP16"
    if node.op_type == "LayerNormalization":
        return [("warning", "H9: LayerNormalization on FP16 data can overflow "
                            "(NVIDIA/TensorRT#2564); keep it in FP32")] if fp16 else []
    if not _is_square(node, g) or not (fp16 or table["weakly_typed"]):
        return []
    reductions = ("ReduceMean", "ReduceSum", "GlobalAveragePool")
    users = g.consumers.get(node.output[0], [])
    if node.op_type not in ("ReduceSumSquare", "ReduceL2") and \
            not any(u.op_type in reductions for u in users):
        return []
    base = g.producer.get(node.input[0])
    mean = g.producer.get(_input(base, 1)) if base is not None and base.op_type == "Sub" else None
    if mean is not None and mean.op_type in ("ReduceMean", "GlobalAveragePool"):
        return [("warning", f"H9: variance (x - mean)^2 -> mean, as in LayerNorm; {when} and "
                            "overflow (NVIDIA/TensorRT#2564); use opset >= 17 "
                            "LayerNormalization or keep these layers in FP32")]
    return [("warning", f"F1: sum of squares over a reduction can exceed FP16's 65504; {when}; "
                        "use a mean-based form or keep it in FP32")]


def _is_attention_gate(node, g: _Graph) -> bool:
    """A gate, not an activation (SiLU's ``x * sigmoid(x)``): see ``onnx_gates``."""
    from attn_export.export.onnx_gates import GateGraph

    return GateGraph(g.producer, g.consumers, g.is_constant).is_gate(node)


def _gate_findings(node, g: _Graph) -> list[tuple[str, str]]:
    """F2: a quantized sigmoid gate loses the gate."""
    if node.op_type not in ("Sigmoid", "HardSigmoid") or not _is_attention_gate(node, g):
        return []
    source = g.producer.get(_input(node, 0))
    users = g.consumers.get(node.output[0], []) if node.output else []
    if (source is not None and source.op_type == "DequantizeLinear") or \
            any(u.op_type == "QuantizeLinear" for u in users):
        return [("warning", "F2: the gate sits on a Q/DQ path; INT8 on a sigmoid gate destroys "
                            "it: keep gates and the gating multiply in float")]
    return []


def _pattern_findings(label: str, node, table: dict, g: _Graph) -> list[Finding]:
    found = _norm_findings(node, table, g) + _gate_findings(node, g)
    if node.op_type in ("QuantizeLinear", "DequantizeLinear") and node.op_type in table["ops"]:
        found += _qdq_findings(node, table, g)
    rule = {"F2": "f2_gate", "H9": "h9_layernorm", "F1": "f1_fp16_range"}
    return [Finding(label, node.op_type, level, reason, rule.get(reason[:2], "qdq"))
            for level, reason in found]


# --------------------------------------------------------------------------- graph level


def _default_opset(model) -> int | None:
    return next((o.version for o in model.opset_import if o.domain in _DEFAULT_DOMAINS), None)


def _graph_findings(model, g: _Graph, table: dict, opset: int | None) -> list[Finding]:
    """Opset range, IR version, and the data types of the network's inputs and outputs."""
    title, lo, hi = table["title"], table["opset"]["min"], table["opset"]["max"]
    found = []
    if opset is None:
        found.append(Finding(GRAPH, "opset", "warning", "no ai.onnx opset import: the parser "
                             "cannot tell which operator versions the graph uses", "opset"))
    elif not lo <= opset <= hi:
        found.append(Finding(GRAPH, "opset", "error",
                             f"opset {opset} is outside the range {lo}..{hi} of {title}: "
                             f"re-export with --opset {min(max(opset, lo), hi)}", "opset"))
    if table.get("ir_max") and model.ir_version > table["ir_max"]:
        found.append(Finding(GRAPH, "ir_version", "warning",
                             f"IR version {model.ir_version} is newer than the IR "
                             f"{table['ir_max']} the parser was built against: it warns, and "
                             "newer IR features may not parse; lower ir_version or re-export",
                             "ir_version"))
    for name in [i.name for i in model.graph.input if i.name in g.graph_inputs] + \
            [o.name for o in model.graph.output]:
        verdict = _io_verdict(name, table, g)
        if verdict:
            found.append(Finding(GRAPH, "input" if name in g.graph_inputs else "output",
                                 verdict[0], verdict[1], "dtype"))
    return found


def _io_verdict(name: str, table: dict, g: _Graph) -> tuple[str, str] | None:
    t, d, title = g.dtype(name), table["dtypes"], table["title"]
    if t is None or t in d["ok"] or t in d.get("io_only", []):
        return None
    if d.get("narrowed", {}).get(t):
        narrow = d["narrowed"][t]
        return "warning", (f"network tensor {name} is {t}: {title} narrows it to {narrow} "
                           f"(bind {narrow} buffers; values are clamped)")
    if t in d.get("quantized", []):
        return "error", (f"network tensor {name} is {t}, a quantized type: {title} takes float "
                         "I/O; quantize inside the graph with QuantizeLinear")
    return "error", f"network tensor {name} is {t}: {title} has no such data type"


def _notes(g: _Graph, table: dict) -> list[str]:
    """Precision facts that are not per-node verdicts (how the engine will choose types)."""
    ops = {node.op_type for _, node in g.nodes}
    has_qdq = bool(ops & {"QuantizeLinear", "DequantizeLinear"})
    reduced = {"FP16", "BF16"} & set(g.dtypes.values())
    notes = []
    if not table["weakly_typed"]:
        notes.append("strongly typed build: layer precisions follow the graph's tensor types" +
                     ("" if reduced else "; this graph is FP32 throughout, so the engine runs "
                      "in FP32 (convert the ONNX to FP16, e.g. with ModelOpt AutoCast, for "
                      "reduced precision)"))
        if not has_qdq:
            notes.append("INT8/FP8 need QuantizeLinear/DequantizeLinear nodes in this version "
                         "(precision builder flags and the INT8 calibrator are removed)")
    elif has_qdq:
        notes.append("explicit quantization: TensorRT keeps the Q/DQ placement of the graph")
    elif table.get("implicit_int8"):
        later = ", deprecated since 10.1, removed in 11.0" if _version_tuple(table["key"]) >= (10,) \
            else ""
        notes.append(f"INT8 without Q/DQ nodes needs a calibrator (implicit quantization{later})")
    return notes


# --------------------------------------------------------------------------- entry point


def _load(model_or_path) -> tuple[Any, str]:
    import onnx
    from google.protobuf.message import DecodeError

    if isinstance(model_or_path, onnx.ModelProto):
        return model_or_path, model_or_path.graph.name or "<model>"
    if isinstance(model_or_path, (bytes, bytearray)):
        try:
            return onnx.load_from_string(bytes(model_or_path)), "<bytes>"
        except DecodeError as exc:
            raise ModelFileError(f"the given bytes are not an ONNX model ({exc}); expected a "
                                 "serialized ModelProto") from None
    from attn_export.export.check import load_onnx

    return load_onnx(model_or_path), str(Path(model_or_path))


def lint_onnx(model_or_path: str | Path | bytes | onnx.ModelProto,
              trt_version: str = "10.3") -> LintReport:
    """Check an ONNX graph against one TensorRT version's ONNX parser, node by node.

    Args:
        model_or_path: an ``.onnx`` path, an ``onnx.ModelProto`` or its serialized bytes.
        trt_version: ``8.5``, ``10.3``, ``10.15`` (also ``10``/``10.x``), ``11.0``, ``11.5``
            (also ``11``/``11.x``); a patch suffix such as ``10.3.0.26`` is accepted.

    Returns:
        The report: one finding per problem (or one ``ok`` per clean node), graph-level notes,
        and the sources of the table it used. ``report.passed`` is False when any error was found.

    Raises:
        UnknownTrtVersionError: no table for that version.
        ModelFileError: the file is missing, truncated or not ONNX.
    """
    table = support_table(trt_version)
    model, name = _load(model_or_path)
    g = _graph_facts(model)
    opset = _default_opset(model)
    findings = _graph_findings(model, g, table, opset)
    for label, node in g.nodes:
        found = (_operator_findings(label, node, table, g) + _dtype_findings(label, node, table, g)
                 + _pattern_findings(label, node, table, g))
        findings += found or [_ok(label, node, table)]
    return LintReport(model=name, trt_version=table["key"], title=table["title"], opset=opset,
                      findings=findings, notes=_notes(g, table), sources=table["sources"],
                      derived=table.get("derived", ""))
