"""Graph-level verdicts (opset range, IR version, network I/O types) and the precision notes."""

from __future__ import annotations

from attn_export.export.lint.facts import GraphFacts
from attn_export.export.lint.report import GRAPH, Finding
from attn_export.runtime.trt_version import TrtVersion


def graph_findings(model, g: GraphFacts, table: dict, opset: int | None) -> list[Finding]:
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


def _io_verdict(name: str, table: dict, g: GraphFacts) -> tuple[str, str] | None:
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


def precision_notes(g: GraphFacts, table: dict) -> list[str]:
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
        later = ", deprecated since 10.1, removed in 11.0" if TrtVersion.parse(table["key"]).major >= 10 \
            else ""
        notes.append(f"INT8 without Q/DQ nodes needs a calibrator (implicit quantization{later})")
    return notes
