"""Per-operator restrictions, one function per rule kind of the support table (see the package
docstring); each returns the reason a node breaks the rule, or None."""

from __future__ import annotations

import numpy as np

from attn_export.export.lint.facts import GraphFacts, is_static, node_attr, node_input


def _rule_const_input(node, rule, g: GraphFacts) -> str | None:
    name = node_input(node, rule["input"])
    if not name or (g.is_initializer(name) if rule.get("strict") else g.is_constant(name)):
        return None
    kind = "is not an initializer" if rule.get("strict") else "is computed at runtime"
    return f"input {rule['input']} ({rule['name']}) {kind}: {rule['reason']}"


def _rule_const_input_max(node, rule, g: GraphFacts) -> str | None:
    value = g.values.get(node_input(node, rule["input"]))
    if value is None or value.size == 0 or float(np.max(value)) <= rule["max"]:
        return None
    return f"input {rule['input']} is {int(np.max(value))}: {rule['reason']}"


def _rule_attr_in(node, rule, g: GraphFacts) -> str | None:
    value = node_attr(node, rule["attr"], rule["default"])
    return None if value in rule["allowed"] else f"{rule['attr']}={value!r}: {rule['reason']}"


def _rule_attr_equals(node, rule, g: GraphFacts) -> str | None:
    value = node_attr(node, rule["attr"], rule["default"])
    return None if value == rule["value"] else f"{rule['attr']}={value!r}: {rule['reason']}"


def _rule_attr_all_ones(node, rule, g: GraphFacts) -> str | None:
    value = node_attr(node, rule["attr"])
    return None if not value or all(v == 1 for v in value) else \
        f"{rule['attr']}={list(value)}: {rule['reason']}"


def _rule_attr_absent(node, rule, g: GraphFacts) -> str | None:
    present = [a for a in rule["attrs"] if node_attr(node, a) is not None]
    return f"{', '.join(present)} set: {rule['reason']}" if present else None


def _rule_outputs_max(node, rule, g: GraphFacts) -> str | None:
    used = [o for o in node.output if o]
    return f"{len(used)} outputs: {rule['reason']}" if len(used) > rule["count"] else None


def _rule_inputs_max(node, rule, g: GraphFacts) -> str | None:
    used = [i for i in node.input if i]
    return f"{len(used)} inputs: {rule['reason']}" if len(used) > rule["count"] else None


def _rule_input_rank(node, rule, g: GraphFacts) -> str | None:
    shape = g.shapes.get(node_input(node, rule["input"]))
    if shape is None or len(shape) in rule["ranks"]:
        return None
    return f"input {rule['input']} has rank {len(shape)}: {rule['reason']}"


def _rule_static_input(node, rule, g: GraphFacts) -> str | None:
    shape = g.shapes.get(node_input(node, rule["input"]))
    if shape is None or is_static(shape):
        return None
    return f"input {rule['input']} has dynamic dims {list(shape)}: {rule['reason']}"


def _rule_static_axis(node, rule, g: GraphFacts) -> str | None:
    shape = g.shapes.get(node_input(node, rule["input"]))
    if not shape:
        return None
    axis = node_attr(node, "axis", -1)
    dim = shape[axis] if -len(shape) <= axis < len(shape) else None
    return None if isinstance(dim, int) and dim > 0 else f"axis {axis} is dynamic: {rule['reason']}"


def _rule_requires_axes(node, rule, g: GraphFacts) -> str | None:
    if node_attr(node, "axes") is not None or node_input(node, 1):
        return None
    return f"no axes given: {rule['reason']}"


def _rule_einsum_equation(node, rule, g: GraphFacts) -> str | None:
    equation = str(node_attr(node, "equation", "")).replace(" ", "")
    terms = equation.split("->")[0].split(",")
    diagonal = any(len(set(t)) != len(t) for t in (t.replace("...", "") for t in terms))
    if "..." in equation or diagonal:
        return f"equation {equation!r}: {rule['reason']}"
    return None


def _rule_resize_axes(node, rule, g: GraphFacts) -> str | None:
    axes, scales = node_attr(node, "axes"), node_input(node, 2)
    if axes is None or not scales or g.is_constant(scales):
        return None
    rank = len(g.shapes.get(node.input[0], ())) or len(axes)
    return None if list(axes) == list(range(rank)) else f"axes={list(axes)}: {rule['reason']}"


def _rule_zero_point_zero(node, rule, g: GraphFacts) -> str | None:
    name = node_input(node, rule["input"])
    if not name:
        return None
    if not g.is_constant(name):
        return "the zero point is computed at runtime: TensorRT needs a constant zero point of 0"
    value = g.values.get(name)
    if value is not None and np.any(value != 0):
        return "zero point is not 0: TensorRT quantizes symmetrically (zero point must be 0)"
    return None


def _rule_attr_ignored(node, rule, g: GraphFacts) -> str | None:
    return f"{rule['attr']} is set: {rule['reason']}" if node_attr(node, rule["attr"]) is not None \
        else None


RULES = {
    "const_input": _rule_const_input, "const_input_max": _rule_const_input_max,
    "attr_in": _rule_attr_in, "attr_equals": _rule_attr_equals,
    "attr_all_ones": _rule_attr_all_ones, "attr_absent": _rule_attr_absent,
    "attr_ignored": _rule_attr_ignored, "outputs_max": _rule_outputs_max,
    "inputs_max": _rule_inputs_max, "input_rank": _rule_input_rank,
    "static_input": _rule_static_input, "static_axis": _rule_static_axis,
    "requires_axes": _rule_requires_axes, "einsum_equation": _rule_einsum_equation,
    "resize_axes": _rule_resize_axes, "zero_point_zero": _rule_zero_point_zero,
}
RULE_LEVEL = {"attr_ignored": "warning"}
