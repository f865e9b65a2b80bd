"""Multi-node patterns the per-operator table cannot see: Q/DQ placement, and the precision
hazards that bite at build time (H9 LayerNorm in FP16, F1 sums of squares, F2 quantized gates)."""

from __future__ import annotations

from attn_export.export.lint.facts import GraphFacts, node_attr, node_input, type_name
from attn_export.export.lint.report import Finding

_FLOAT = ("FP32", "FP16", "BF16")


def _qdq_findings(node, table: dict, g: GraphFacts) -> list[tuple[str, str]]:
    """Q/DQ placement: float paths only, symmetric signed types, paired, per-channel on weights."""
    found = []
    quantize = node.op_type == "QuantizeLinear"
    x, scale = node_input(node, 0), node_input(node, 1)
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


def _quant_type(node, g: GraphFacts) -> str | None:
    zp = node_input(node, 2)
    if zp:
        return g.dtype(zp)
    if node.op_type == "DequantizeLinear":
        return g.dtype(node_input(node, 0))
    output_dtype = node_attr(node, "output_dtype", 0)
    return type_name(output_dtype) if output_dtype else None


def _weight_axis(node, g: GraphFacts) -> list[tuple[str, str]]:
    rank = len(g.shapes.get(node.input[0], ())) or 1
    axis = node_attr(node, "axis", 1) % rank
    found = []
    for user in g.consumers.get(node.output[0], []):
        if len(user.input) < 2 or user.input[1] != node.output[0]:
            continue
        expected = {"Conv": 0, "ConvTranspose": 1, "MatMul": rank - 1,
                    "Gemm": 0 if node_attr(user, "transB", 0) else 1}.get(user.op_type)
        if expected is not None and axis != expected:
            found.append(("error", f"per-channel axis {axis} on {user.op_type} weights: TensorRT "
                                   f"quantizes them along the output-channel axis ({expected})"))
    return found


def _is_square(node, g: GraphFacts) -> bool:
    if node.op_type == "Mul":
        return len(node.input) == 2 and node.input[0] == node.input[1]
    if node.op_type == "Pow":
        exponent = g.values.get(node_input(node, 1))
        return exponent is not None and exponent.size == 1 and float(exponent.ravel()[0]) == 2.0
    return node.op_type in ("ReduceSumSquare", "ReduceL2")


def _norm_findings(node, table: dict, g: GraphFacts) -> list[tuple[str, str]]:
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
    mean = g.producer.get(node_input(base, 1)) if base is not None and base.op_type == "Sub" else None
    if mean is not None and mean.op_type in ("ReduceMean", "GlobalAveragePool"):
        return [("warning", f"H9: variance (x - mean)^2 -> mean, as in LayerNorm; {when} and "
                            "overflow (NVIDIA/TensorRT#2564); use opset >= 17 "
                            "LayerNormalization or keep these layers in FP32")]
    return [("warning", f"F1: sum of squares over a reduction can exceed FP16's 65504; {when}; "
                        "use a mean-based form or keep it in FP32")]


def _is_attention_gate(node, g: GraphFacts) -> bool:
    """A gate, not an activation (SiLU's ``x * sigmoid(x)``): see ``export.onnx_gates``."""
    from attn_export.export.onnx_gates import GateGraph

    return GateGraph(g.producer, g.consumers, g.is_constant).is_gate(node)


def _gate_findings(node, g: GraphFacts) -> list[tuple[str, str]]:
    """F2: a quantized sigmoid gate loses the gate."""
    if node.op_type not in ("Sigmoid", "HardSigmoid") or not _is_attention_gate(node, g):
        return []
    source = g.producer.get(node_input(node, 0))
    users = g.consumers.get(node.output[0], []) if node.output else []
    if (source is not None and source.op_type == "DequantizeLinear") or \
            any(u.op_type == "QuantizeLinear" for u in users):
        return [("warning", "F2: the gate sits on a Q/DQ path; INT8 on a sigmoid gate destroys "
                            "it: keep gates and the gating multiply in float")]
    return []


def pattern_findings(label: str, node, table: dict, g: GraphFacts) -> list[Finding]:
    found = _norm_findings(node, table, g) + _gate_findings(node, g)
    if node.op_type in ("QuantizeLinear", "DequantizeLinear") and node.op_type in table["ops"]:
        found += _qdq_findings(node, table, g)
    rule = {"F2": "f2_gate", "H9": "h9_layernorm", "F1": "f1_fp16_range"}
    return [Finding(label, node.op_type, level, reason, rule.get(reason[:2], "qdq"))
            for level, reason in found]
