"""Which ONNX file a build parses and where its engine goes.

The precision plan decides the graph: the float32 export itself, or the float16 / Q/DQ graph the
export wrote beside it (reused when fresh, written now when missing or stale).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from attn_export.errors import ValidationError
from attn_export.export.precision import graph_kind
from attn_export.export.precision_plan import PrecisionPlan
from attn_export.export.trt_build.settings import BuildOptions


def export_shapes_near(onnx_path: Path) -> dict[str, tuple[int, ...]]:
    """The export shape recorded beside an exported ONNX (``report.json`` of the export folder),
    keyed by the graph's input name; empty when there is no report."""
    report = onnx_path.parent / "report.json"
    try:
        data = json.loads(report.read_text())
    except (OSError, ValueError):
        return {}
    shape = data.get("input_shape")
    return {"input": tuple(int(d) for d in shape)} if isinstance(shape, list) else {}


def engine_path_for(onnx_path: Path, precision: str) -> Path:
    """``exports/cbam/cbam.onnx`` (or ``cbam.fp16.onnx``) -> ``exports/cbam/cbam.fp16.engine``."""
    stem = onnx_path.name.removesuffix(".onnx")
    for suffix in (".fp16", ".int8", ".fp32"):
        stem = stem.removesuffix(suffix)
    return onnx_path.with_name(f"{stem}.{precision}.engine")


def prepare_graph(onnx_path: Path, plan: PrecisionPlan, options: BuildOptions,
                  shapes: dict[str, tuple[int, ...]]) -> Path:
    """The ONNX file the plan parses: the given one when it already has the plan's precision;
    BLOCK.fp16.onnx / BLOCK.int8.onnx when the export wrote (and validated) it after BLOCK.onnx
    (INT8 is re-quantized when --calib-data is given); else written now from the float32 graph."""
    from attn_export.export.check import load_onnx
    from attn_export.export.precision import write_fp16_onnx, write_int8_onnx
    from attn_export.export.precision_plan import precision_onnx_path

    kind = graph_kind(load_onnx(onnx_path))
    if kind == plan.graph:
        return onnx_path
    if kind != "fp32":
        raise ValidationError(f"{onnx_path.name} is a {kind} graph but the {plan.precision} plan "
                              f"parses a {plan.graph} graph; pass the float32 BLOCK.onnx")
    target = precision_onnx_path(onnx_path, plan.precision)
    fresh = target.is_file() and target.stat().st_mtime >= onnx_path.stat().st_mtime
    if fresh and (plan.graph == "fp16" or options.calib_data is None) \
            and graph_kind(load_onnx(target)) == plan.graph:
        return target
    if plan.graph == "fp16":
        return write_fp16_onnx(onnx_path, target, _golden_inputs(onnx_path)).path  # type: ignore
    write_int8_onnx(onnx_path, target, options.calib_data, shapes,
                    quantize_gates=options.quantize_gates)
    return target


def _golden_inputs(onnx_path: Path) -> list | None:
    """The export's golden inputs (BLOCK.golden.npz beside BLOCK.onnx): the FP16 range-check data
    the export itself used, so a rebuilt float16 graph is the one validated at export."""
    from attn_export.errors import ModelFileError
    from attn_export.runtime.golden import load_golden

    golden = onnx_path.with_name(f"{onnx_path.name.split('.')[0]}.golden.npz")
    try:
        return [case.inputs for case in load_golden(golden).cases] if golden.is_file() else None
    except ModelFileError:
        return None


def int8_notes(graph: Path, plan: PrecisionPlan) -> list[str]:
    """An INT8 engine of a Q/DQ graph that quantizes nothing is a float engine: say so."""
    if plan.graph != "qdq":
        return []
    from attn_export.export.check import load_onnx
    from attn_export.export.macs import quantized_nodes

    if quantized_nodes(load_onnx(graph)):
        return []
    message = (f"{graph.name} quantizes nothing (every weighted op stays float, F2): this INT8 "
               "engine computes in float; build --precision fp16 instead")
    warnings.warn(message, UserWarning, stacklevel=3)
    return [message]
