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

from pathlib import Path
from typing import TYPE_CHECKING, Any

from attn_export.errors import ModelFileError
from attn_export.export.lint.facts import graph_facts
from attn_export.export.lint.graph_level import graph_findings, precision_notes
from attn_export.export.lint.nodes import dtype_findings, ok_finding, operator_findings
from attn_export.export.lint.patterns import pattern_findings
from attn_export.export.lint.report import GRAPH, LEVELS, Finding, LintReport
from attn_export.export.lint.table import (
    UnknownTrtVersionError,
    alias_note,
    known_versions,
    resolve_trt_version,
    support_table,
)
from attn_export.runtime.onnx_file import default_opset

if TYPE_CHECKING:
    import onnx

__all__ = ["GRAPH", "LEVELS", "Finding", "LintReport", "UnknownTrtVersionError", "known_versions",
           "lint_onnx", "resolve_trt_version", "support_table"]


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
        trt_version: ``8.5``, ``10.3``, ``10.15`` (also ``10``/``10.x``), ``10.16`` (read with
            10.15's table), ``11.0``, ``11.5`` (also ``11``/``11.x``); a patch suffix such as
            ``10.3.0.26`` is accepted.

    Returns:
        The report: one finding per problem (or one ``ok`` per clean node), graph-level notes,
        and the sources of the table it used. ``report.passed`` is False when any error was found.

    Raises:
        UnknownTrtVersionError: no table for that version.
        ModelFileError: the file is missing, truncated or not ONNX.
    """
    table = support_table(trt_version)
    model, name = _load(model_or_path)
    g = graph_facts(model)
    opset = default_opset(model)
    findings = graph_findings(model, g, table, opset)
    for label, node in g.nodes:
        found = (operator_findings(label, node, table, g) + dtype_findings(label, node, table, g)
                 + pattern_findings(label, node, table, g))
        findings += found or [ok_finding(label, node, table)]
    notes = precision_notes(g, table)
    if (why := alias_note(trt_version)) is not None:
        notes.insert(0, why)
    return LintReport(model=name, trt_version=table["key"], title=table["title"], opset=opset,
                      findings=findings, notes=notes, sources=table["sources"],
                      derived=table.get("derived", ""))
