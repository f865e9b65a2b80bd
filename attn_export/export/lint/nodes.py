"""Node-level verdicts: is the operator in the version's table, does the node meet its rules,
and are the data types it makes ones TensorRT has."""

from __future__ import annotations

import numpy as np

from attn_export.export.lint.facts import DEFAULT_DOMAINS, GraphFacts, node_input
from attn_export.export.lint.report import Finding
from attn_export.export.lint.rules import RULE_LEVEL, RULES
from attn_export.export.lint.table import table_data
from attn_export.runtime.trt_version import TrtVersion


def operator_findings(label: str, node, table: dict, g: GraphFacts) -> list[Finding]:
    """Is the operator in this version's table, and does the node meet its restrictions?"""
    if node.domain not in DEFAULT_DOMAINS:
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
        check = RULES.get(rule["rule"])
        reason = check(node, rule, g) if check else None
        if reason:
            level = rule.get("level", RULE_LEVEL.get(rule["rule"], "error"))
            found.append(Finding(label, node.op_type, level, reason, rule["rule"]))
    return found + _op_type_findings(label, node, spec, table, g)


def _plugin_finding(label: str, node, table: dict) -> Finding:
    removed = table_data()["removed_plugins"]
    op = f"{node.domain}::{node.op_type}"
    if node.op_type in removed["names"] and \
            TrtVersion.parse(table["key"]).at_least(removed["since"]):
        return Finding(label, op, "error",
                       f"plugin {node.op_type} was removed in TensorRT {removed['since']}: "
                       "replace the node with ONNX operators or register your own IPluginV3",
                       "plugin")
    return Finding(label, op, "warning",
                   f"custom operator: the parser looks for a plugin named {node.op_type!r} in "
                   "the plugin registry; it must be registered when the engine is built",
                   "plugin")


def _op_type_findings(label: str, node, spec: dict, table: dict, g: GraphFacts) -> list[Finding]:
    """The table's 'supported types' for the node's data tensor (others are reported where made)."""
    which = spec.get("type_of", 0)
    name = (node.output[0] if node.output else "") if which == "output" else node_input(node, which)
    dtypes = table["dtypes"]
    t = g.dtype(name) if name else None
    t = dtypes.get("narrowed", {}).get(t, t)
    if t is None or t in spec["types"] or t not in dtypes["ok"]:
        return []
    why = spec.get("types_reason", f"{table['title']} lists {', '.join(spec['types'])} only")
    return [Finding(label, node.op_type, spec.get("types_level", "warning"),
                    f"{node.op_type} on {t} data: {why}", "dtype")]


def dtype_findings(label: str, node, table: dict, g: GraphFacts) -> list[Finding]:
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


def _dtype_verdict(name: str, node, table: dict, g: GraphFacts) -> tuple[str, str] | None:
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
                 g: GraphFacts) -> list[Finding]:
    value = g.values[name]
    if g.dtype(name) != "INT64" or value.size == 0 or (node.op_type == "Slice" and index in (1, 2)):
        return []  # Slice clamps its starts/ends anyway: INT64_MAX there means "to the end"
    info = np.iinfo(np.int32)
    if value.min() >= info.min and value.max() <= info.max:
        return []
    return [Finding(label, node.op_type, "warning",
                    f"INT64 initializer {name} holds values beyond INT32: {table['title']} "
                    "narrows INT64 to INT32 and clamps them to +-2^31-1", "int64")]


def ok_finding(label: str, node, table: dict) -> Finding:
    spec = table["ops"].get(node.op_type, {})
    notes = [r["text"] for r in spec.get("rules", []) if r["rule"] == "note"]
    return Finding(label, node.op_type, "ok", "; ".join(["supported"] + notes))
