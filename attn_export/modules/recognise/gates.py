"""Is there an attention gate in this module? A sigmoid or softmax computed from a different
branch (pooled, projected) and multiplied into the feature map.

An activation is not a gate: SiLU ``x * sigmoid(x)``, HardSwish ``x * hardsigmoid(x)`` and GLU
``a * sigmoid(b)`` with ``a, b`` split from one tensor all multiply a tensor by a function of
itself. Walking back from both operands of the multiply through shape-only and split ops (and
elementwise ops with a constant: the ``+ 3``, ``/ 6`` of a written-out hard sigmoid), an
activation arrives at the same tensor on both sides; a gate does not. The same rule holds on the
ONNX graph (``attn_export.export.onnx_gates``), so the torch-side scan and the INT8 plan agree.

The module is traced with ``torch.fx`` (torch.nn layers are leaves: ``nn.SiLU`` and
``nn.Hardswish`` are activations by construction). A module that does not trace (Python control
flow on sizes) is answered ``None``: unknown, not "no gate".
"""

from __future__ import annotations

import operator

from torch import nn

GATE_NAMES = ("sigmoid", "hardsigmoid", "softmax")
_SHAPE_METHODS = {"view", "reshape", "expand", "expand_as", "unsqueeze", "squeeze", "permute",
                  "transpose", "flatten", "contiguous", "repeat", "chunk", "split", "float",
                  "to", "type_as", "view_as", "reshape_as"}
_SHAPE_FUNCS = {"reshape", "unsqueeze", "squeeze", "permute", "transpose", "flatten", "chunk",
                "split", "getitem", "narrow"}
_MUL_NAMES = {"mul", "matmul", "bmm", "mul_", "einsum"}


def _target_name(node) -> str:
    target = node.target
    if isinstance(target, str):
        return target.lower()
    return getattr(target, "__name__", str(target)).lower()


def _is_gate_op(node, modules: dict) -> bool:
    if node.op == "call_module":
        name = type(modules[node.target]).__name__.lower()
        return name in GATE_NAMES
    if node.op in ("call_function", "call_method"):
        return _target_name(node).rstrip("_") in GATE_NAMES
    return False


def _is_transparent(node, modules: dict, constant_ok: bool) -> bool:
    """Shape-only (and, with ``constant_ok``, elementwise-with-a-constant) nodes."""
    if node.op == "call_method":
        name = _target_name(node)
        if name in _SHAPE_METHODS:
            return True
        if constant_ok and name in {"add", "sub", "mul", "div", "clamp", "clamp_min", "clamp_max"}:
            return sum(hasattr(a, "op") for a in node.args) == 1
        return False
    if node.op == "call_function":
        name = _target_name(node)
        if node.target is operator.getitem or name in _SHAPE_FUNCS:
            return True
        if constant_ok and name in {"add", "sub", "mul", "truediv", "div", "clamp", "relu6",
                                    "hardtanh"}:
            return sum(hasattr(a, "op") for a in node.args) == 1
        return False
    if node.op == "call_module" and constant_ok:
        return isinstance(modules[node.target], (nn.Identity, nn.ReLU6, nn.Hardtanh))
    return node.op == "call_module" and isinstance(modules[node.target], (nn.Identity,
                                                                          nn.Flatten))


def _root(node, modules: dict, constant_ok: bool):
    while hasattr(node, "op") and node.args and _is_transparent(node, modules, constant_ok):
        node = next(a for a in node.args if hasattr(a, "op"))
    return node


def _applies(gate, modules: dict) -> list:
    """The multiplies a gate's output reaches through shape-only ops, with their other operand."""
    found, frontier = [], [gate]
    while frontier:
        current = frontier.pop()
        for user in current.users:
            name = _target_name(user)
            if user.op in ("call_function", "call_method") and name in _MUL_NAMES:
                others = [a for a in user.args if hasattr(a, "op") and a is not current]
                found.extend((user, other) for other in others)
            elif _is_transparent(user, modules, constant_ok=False) or (
                    user.op in ("call_function", "call_method") and name in ("add", "sub")):
                frontier.append(user)  # BAM's 1 + sigmoid(...), shapes
    return found


def gate_count(module: nn.Module) -> int | None:
    """How many attention gates ``module``'s forward applies; ``None`` when it does not trace."""
    import torch.fx

    try:
        graph = torch.fx.symbolic_trace(module).graph
    except Exception:  # any user code: control flow on sizes, unsupported ops
        return None
    modules = dict(module.named_modules())
    count = 0
    for node in graph.nodes:
        if not _is_gate_op(node, modules):
            continue
        source = node.args[0] if node.args else None
        if source is None or not hasattr(source, "op"):
            continue
        gate_root = _root(source, modules, constant_ok=True)
        for _mul, other in _applies(node, modules):
            if _root(other, modules, constant_ok=True) is not gate_root:
                count += 1
                break
    return count


def mentions_gate(module: nn.Module) -> bool:
    """A cheap filter before tracing: a sigmoid/softmax layer in the subtree, or a forward that
    names one (functional calls leave no submodule)."""
    for sub in module.modules():
        name = type(sub).__name__.lower()
        if name in GATE_NAMES:
            return True
        if not type(sub).__module__.startswith("torch.") and _source_mentions(type(sub)):
            return True
    return False


_SOURCES: dict[type, bool] = {}


def _source_mentions(cls: type) -> bool:
    if cls not in _SOURCES:
        import inspect

        try:
            text = inspect.getsource(cls.forward).lower()
        except (OSError, TypeError):
            text = ""
        _SOURCES[cls] = any(word in text for word in GATE_NAMES)
    return _SOURCES[cls]
