"""Which Sigmoid nodes of an ONNX graph are attention gates, and which are activations.

A gate is a sigmoid computed from a different (pooled, projected) branch and multiplied into the
feature map: SE's ``x * sigmoid(fc(mean(x)))``, CBAM's spatial ``x * sigmoid(conv([mean, max]))``.
SiLU ``x * sigmoid(x)``, HardSwish ``x * hardsigmoid(x)`` and GLU ``a * sigmoid(b)`` (``a, b``
split from one tensor) multiply a tensor by a function of itself: activations, quantized or fused
as the host's layers are. The test: from both operands of the multiply, walk back through
shape-only and split ops (and elementwise ops with a constant, the ``+ 3``/``/ 6`` of a written-out
hard sigmoid); an activation reaches the same tensor on both sides, a gate does not. The torch-side
scan applies the same rule (``attn_export.modules.recognise.gates``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

GATE_OPS = ("Sigmoid", "HardSigmoid")
SHAPE_OPS = ("Unsqueeze", "Squeeze", "Reshape", "Expand", "Flatten", "Identity", "Transpose",
             "Tile", "Cast", "Split", "Slice", "Gather", "QuantizeLinear", "DequantizeLinear")
"""Ops that pass a tensor on reshaped, split or (Q/DQ) rounded: a gate seen through them is the
same gate, so a quantized graph is judged like its float graph."""
_CONSTANT_OPS = ("Add", "Sub", "Mul", "Div", "Clip", "Max", "Min")


class GateGraph:
    """Producers, consumers and constants of a graph, built once for many questions."""

    def __init__(self, producer: dict[str, Any], consumers: dict[str, list],
                 is_constant: Callable[[str], bool]) -> None:
        self.producer, self.consumers, self.is_constant = producer, consumers, is_constant

    @classmethod
    def of(cls, model) -> GateGraph:
        constants = {t.name for t in model.graph.initializer}
        constants |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
        producer: dict[str, Any] = {}
        consumers: dict[str, list] = {}
        for node in model.graph.node:
            for name in node.output:
                producer[name] = node
            for name in node.input:
                consumers.setdefault(name, []).append(node)
        return cls(producer, consumers, constants.__contains__)

    def root(self, tensor: str) -> str:
        """The tensor ``tensor`` is a reshaped / split / constant-shifted view of."""
        seen = set()
        while tensor not in seen:
            seen.add(tensor)
            node = self.producer.get(tensor)
            if node is None:
                return tensor
            variable = [i for i in node.input if i and not self.is_constant(i)]
            if node.op_type in SHAPE_OPS and variable:
                tensor = variable[0]
            elif node.op_type in _CONSTANT_OPS and len(variable) == 1:
                tensor = variable[0]
            else:
                return tensor
        return tensor

    def applied_by(self, gate) -> list[tuple[Any, str]]:
        """(Mul, its other operand) for each multiply the gate's output reaches through shape ops
        and sums (BAM's ``1 + sigmoid``, scSE's ``x * (cSE + sSE)``)."""
        found, frontier, seen = [], list(gate.output), set()
        while frontier:
            tensor = frontier.pop()
            if tensor in seen:
                continue
            seen.add(tensor)
            for user in self.consumers.get(tensor, []):
                if user.op_type == "Mul":
                    found.extend((user, other) for other in user.input if other != tensor)
                elif user.op_type in SHAPE_OPS or user.op_type in ("Add", "Sub"):
                    frontier.extend(user.output)
        return found

    def is_gate(self, node) -> bool:
        """A Sigmoid / HardSigmoid multiplied into a tensor other than the one it is computed
        from (see the module docstring)."""
        if node.op_type not in GATE_OPS or not node.input:
            return False
        source = self.root(node.input[0])
        return any(not self.is_constant(other) and self.root(other) != source
                   for _mul, other in self.applied_by(node))


def attention_gates(model) -> list:
    """The Sigmoid / HardSigmoid nodes of ``model`` that are attention gates."""
    graph = GateGraph.of(model)
    return [n for n in model.graph.node if graph.is_gate(n)]
