"""``validate --locate``: the first node of a graph whose output leaves its bound, against a
reference graph with the same node names (an FP16 or INT8 graph against its FP32 sibling).

Two errors are measured for every node the two graphs share, on one golden input:

- the **accumulated** error: the node's output in the tested graph against the same node's output
  in the reference graph, both run from the input. It grows along the network; printed along the
  path it shows where the error jumps.
- the **local** error: the node's output against the *reference's* node (its own weights and
  constants) run on the tested graph's inputs to that node. Upstream error cancels out, so what
  remains is the node's own doing: rounding its output (FP16: ~2**-12 relative), quantizing its
  weights (INT8), or a fault (a changed constant, a wrong op). The first node, in graph order,
  whose local error exceeds :data:`LOCAL_BOUND` is where the graph starts going wrong.

Every local node runs in one ONNX Runtime session (the reference's nodes, their activation inputs
rewired to fed tensors), so a network of hundreds of nodes is located in about two runs' time.
Node names carry the module that made them: the TorchScript exporter names a node
``/decoder/blocks.1/attention1/attention/Mul``, i.e. ``decoder.blocks.1.attention1.attention``
(:func:`module_path`); the dynamo exporter's ``pkg.torch.onnx.name_scopes`` metadata is read too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from attn_export.errors import ValidationError

LOCAL_BOUND = {"fp32": 1e-4, "fp16": 1e-2, "int8": 6e-2}
"""Largest local error a healthy node shows. fp32: the same op on the same inputs differs by
kernel order only (~1e-7). fp16: one rounding of the output and of the weights, ~2**-12 relative
(measured <= 1e-3 on the catalog), so 1e-2 is 10x that. int8: per-channel weight quantization of
a Conv / Gemm, rel l2 up to ~2e-2 on seeded weights; 6e-2 keeps 3x of margin."""

SKIPPED_OPS = ("QuantizeLinear", "DequantizeLinear", "Cast", "Identity", "Constant", "If", "Loop",
               "Scan")
_EPS = 1e-12


@dataclass
class NodeError:
    """A node's error in the tested graph: accumulated from the input, and its own (local)."""

    node: str
    op: str
    module_path: str
    rel_l2: float
    max_abs: float
    local_rel_l2: float

    def to_dict(self) -> dict:
        return {"node": self.node, "op": self.op, "rel_l2": self.rel_l2, "max_abs": self.max_abs}


@dataclass
class Location:
    """Where the error starts (``report.json["locate"]``; keys in :meth:`to_dict`)."""

    first_bad_node: str | None
    op: str | None
    module_path: str | None
    input_ranges: dict[str, list[float]]
    path: list[NodeError]
    block: str | None
    pairing: str
    case: str
    bound: float
    local_rel_l2: float | None = None
    nodes: list[NodeError] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"first_bad_node": self.first_bad_node, "op": self.op,
                "module_path": self.module_path, "input_ranges": self.input_ranges,
                "path": [p.to_dict() for p in self.path], "block": self.block,
                "pairing": self.pairing, "case": self.case, "local_bound": self.bound,
                "local_rel_l2": self.local_rel_l2}

    def lines(self) -> list[str]:
        """What ``validate --locate`` prints."""
        head = f"locate ({self.pairing}, case {self.case}): "
        if self.first_bad_node is None:
            worst = max(self.nodes, key=lambda n: n.local_rel_l2, default=None)
            return [head + f"no node leaves its local bound {self.bound:g}" + (
                f" (largest: {worst.node}, {worst.local_rel_l2:.2e}); the error accumulates "
                "across the graph" if worst else "")]
        ranges = ", ".join(f"{k} [{lo:.3g}, {hi:.3g}]" for k, (lo, hi) in
                           self.input_ranges.items())
        lines = [head + f"first node out of bound: {self.first_bad_node} ({self.op})",
                 f"  module: {self.module_path or '-'}; block: {self.block or '-'}",
                 f"  its own error: rel l2 {self.local_rel_l2:.2e} (healthy nodes stay under "
                 f"{self.bound:g})",
                 f"  inputs: {ranges or '-'}",
                 "  error growth along the path (rel l2 from the input):"]
        for p in self.path:
            mark = "  <- starts here" if p.node == self.first_bad_node else ""
            lines.append(f"    {p.rel_l2:9.2e}  {p.op:<16} {p.node}{mark}")
        return lines


def module_path(node) -> str:
    """``decoder.blocks.1.attention1.attention`` from a node named
    ``/decoder/blocks.1/attention1/attention/Mul`` (or from the dynamo exporter's name scopes)."""
    for prop in getattr(node, "metadata_props", []):
        if prop.key == "pkg.torch.onnx.name_scopes":
            try:
                scopes = json.loads(prop.value)
            except ValueError:
                scopes = []
            return ".".join(s for s in scopes[1:] if s)
    parts = [p for p in node.name.split("/") if p][:-1]
    path: list[str] = []
    for part in parts:
        if path and part.startswith(path[-1] + "."):
            path[-1] = part  # Sequential / ModuleList children repeat the parent's name
        else:
            path.append(part)
    return ".".join(path)


def block_of(path: str, blocks: Sequence[str]) -> str | None:
    """The deepest attention block (a swap path from report.json) holding ``path``; else the host
    layer: the module path without its leaf."""
    inside = [b for b in blocks if path == b or path.startswith(b + ".")]
    if inside:
        return max(inside, key=len)
    return path.rsplit(".", 1)[0] if "." in path else (path or None)


def _rel_l2(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.shape != b.shape:
        return float("inf"), float("inf")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return float("inf"), float("inf")
    diff = float(np.linalg.norm(a - b))
    return diff / max(float(np.linalg.norm(b)), _EPS * np.sqrt(max(a.size, 1))), \
        float(np.abs(a - b).max(initial=0.0))


def _session(model):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), sess_options=options,
                                providers=["CPUExecutionProvider"])


def run_all_tensors(model, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every tensor a graph computes on ``feed`` (its inputs included), by name."""
    import onnx

    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    have = {o.name for o in exposed.graph.output}
    for node in exposed.graph.node:
        for name in node.output:
            if name and name not in have:
                exposed.graph.output.append(onnx.ValueInfoProto(name=name))
                have.add(name)
    session = _session(exposed)
    names = [o.name for o in session.get_outputs()]
    values = dict(zip(names, session.run(names, dict(feed))))
    return {**{k: np.asarray(v) for k, v in feed.items()}, **values}


def _constants(model) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    found = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            found[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return found


def _value_of(name: str, values: Mapping[str, np.ndarray], constants: Mapping[str, np.ndarray]):
    """A tensor of the tested graph; FP16 rounding barriers keep the rounded value."""
    if name in values:
        return values[name]
    return constants.get(name)


def local_outputs(reference, tested, tested_values: Mapping[str, np.ndarray],
                  tested_constants: Mapping[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """For each node both graphs name alike, the reference's node run on the tested graph's
    inputs to it, with the reference's own constants: ``{node name: outputs}``."""
    import onnx
    from onnx import helper

    ref_constants = _constants(reference)
    by_name = {n.name: n for n in tested.graph.node}
    graph_inputs, feeds, nodes, outputs, owners = [], {}, [], [], {}
    inits = {}
    for idx, node in enumerate(reference.graph.node):
        twin = by_name.get(node.name)
        if node.op_type in SKIPPED_OPS or twin is None or twin.op_type != node.op_type \
                or len(twin.input) != len(node.input):
            continue
        local = onnx.NodeProto()
        local.CopyFrom(node)
        ok = True
        for i, (r_in, t_in) in enumerate(zip(node.input, twin.input)):
            if not r_in:
                continue
            if r_in in ref_constants:
                inits[r_in] = ref_constants[r_in]
                continue
            value = _value_of(t_in, tested_values, tested_constants)
            if value is None:
                ok = False
                break
            value = np.asarray(value)
            if value.dtype == np.float16:
                value = value.astype(np.float32)
            fed = f"locate/{idx}/in{i}"
            local.input[i] = fed
            feeds[fed] = value
            graph_inputs.append(helper.make_tensor_value_info(
                fed, helper.np_dtype_to_tensor_dtype(value.dtype), value.shape))
        if not ok:
            continue
        for k, name in enumerate(node.output):
            if name:
                local.output[k] = f"locate/{idx}/out{k}"
                outputs.append(onnx.ValueInfoProto(name=local.output[k]))
                owners[local.output[k]] = (node.name, k)
        nodes.append(local)
    if not nodes:
        return {}
    initializers = [onnx.numpy_helper.from_array(v, k) for k, v in inits.items()]
    graph = helper.make_graph(nodes, "locate", graph_inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=list(reference.opset_import))
    model.ir_version = reference.ir_version
    try:
        session = _session(model)
    except Exception as exc:  # noqa: BLE001 - ORT's own exception types
        raise ValidationError(f"cannot run the reference's nodes one by one: "
                              f"{str(exc).splitlines()[0][:200]}") from None
    names = [o.name for o in session.get_outputs()]
    found: dict[str, list[np.ndarray]] = {}
    for name, value in zip(names, session.run(names, feeds)):
        node_name, k = owners[name]
        found.setdefault(node_name, []).append(value)
    return found


def locate_against_onnx(tested_path: str | Path, reference_path: str | Path,
                        feed: Mapping[str, np.ndarray], precision: str, case: str = "",
                        prepare: Callable | None = None, blocks: Sequence[str] = (),
                        pairing: str = "") -> Location:
    """Find the first node of ``tested_path`` whose own error leaves :data:`LOCAL_BOUND`.

    Args:
        tested_path / reference_path: the graph judged and its reference (same node names).
        feed: one golden input.
        precision: the tested graph's precision (its local bound).
        case: the golden case's name (printed).
        prepare: applied to the tested model before it runs (FP16 rounding, see
            ``fp16_rounding_model``).
        blocks: attention block paths (report.json's swaps) to name the block.
        pairing: how the two were paired, printed.
    """
    tested = _load(tested_path)
    reference = _load(reference_path)
    run_tested = prepare(tested) if prepare else tested
    t_values = _unrounded_aliases(run_all_tensors(run_tested, feed), run_tested)
    r_values = run_all_tensors(reference, {k: np.asarray(v, np.float32) for k, v in feed.items()})
    local = local_outputs(reference, tested, t_values, _constants(tested))
    errors = _node_errors(tested, reference, t_values, r_values, local)
    if not errors:
        raise ValidationError(f"{tested_path} and {reference_path} share no node names: pass the "
                              "FP32 graph this one was converted from with --reference")
    bound = LOCAL_BOUND.get(precision, LOCAL_BOUND["fp32"])
    bad = next((e for e in errors.values() if e.local_rel_l2 > bound), None)
    path = _path(tested, errors, bad)
    ranges = {}
    if bad is not None:
        node = next(n for n in tested.graph.node if n.name == bad.node)
        for name in node.input:
            value = _value_of(name, t_values, {}) if name else None
            if value is not None and np.asarray(value).dtype.kind == "f" and np.size(value):
                ranges[name] = [float(np.min(value)), float(np.max(value))]
    return Location(bad.node if bad else None, bad.op if bad else None,
                    bad.module_path if bad else None, ranges, path,
                    block_of(bad.module_path, blocks) if bad else None,
                    pairing or f"{Path(tested_path).name} vs {Path(reference_path).name}",
                    case, bound, bad.local_rel_l2 if bad else None, list(errors.values()))


def _unrounded_aliases(values: dict, model) -> dict:
    """FP16 rounding barriers rename a node's output ``x`` to ``x__unrounded`` and an Identity
    writes the rounded ``x``: the node's output is the rounded one."""
    for node in model.graph.node:
        for name in node.output:
            if name.endswith("__unrounded") and name[:-len("__unrounded")] in values:
                values[name] = values[name[:-len("__unrounded")]]
    return values


def _node_errors(tested, reference, t_values, r_values, local) -> dict[str, NodeError]:
    ref_nodes = {n.name: n for n in reference.graph.node}
    errors: dict[str, NodeError] = {}
    for node in tested.graph.node:
        ref = ref_nodes.get(node.name)
        if ref is None or node.name not in local or not node.output:
            continue
        t_out = t_values.get(node.output[0])
        r_out = r_values.get(ref.output[0])
        if t_out is None or r_out is None or np.asarray(r_out).dtype.kind != "f":
            continue
        acc, max_abs = _rel_l2(t_out, r_out)
        own, _ = _rel_l2(t_out, local[node.name][0])
        errors[node.name] = NodeError(node.name, node.op_type, module_path(node), acc, max_abs,
                                      own)
    return errors


def _path(model, errors: Mapping[str, NodeError], bad: NodeError | None) -> list[NodeError]:
    """Input -> the first bad node -> an output, following the larger error at each step (the
    whole graph's compared nodes in order when nothing is out of bound)."""
    if bad is None:
        return list(errors.values())
    producer = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in model.graph.node:
        for name in n.input:
            consumers.setdefault(name, []).append(n)

    def score(n) -> float:
        return errors[n.name].rel_l2 if n.name in errors else -1.0

    start = next(n for n in model.graph.node if n.name == bad.node)
    back, node = [], start
    while node is not None:
        if node.name in errors:
            back.append(errors[node.name])
        node = max((producer[i] for i in node.input if i in producer), key=score, default=None)
    outputs, forward, node, seen = {o.name for o in model.graph.output}, [], start, {start.name}
    while node is not None and not set(node.output) & outputs:
        node = max((c for o in node.output for c in consumers.get(o, []) if c.name not in seen),
                   key=score, default=None)
        if node is not None:
            seen.add(node.name)
            if node.name in errors:
                forward.append(errors[node.name])
    return [*reversed(back), *forward]


def _load(path: str | Path):
    """An ONNX model, or one line saying why it cannot be read."""
    import onnx

    from attn_export.errors import ModelFileError

    if not Path(path).is_file():
        raise ModelFileError(f"ONNX file {path} does not exist")
    try:
        return onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and onnx's own
        raise ModelFileError(f"{path} is not a readable ONNX model "
                             f"({str(exc).splitlines()[0][:200]})") from None
