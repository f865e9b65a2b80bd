"""``attn-export BLOCK`` and ``attn-export model``: one stage sequence for blocks and networks.

build -> golden -> export -> check -> simplify -> re-check -> validate -> write the set (and keep
the derived precision graphs that still derive from it). Blocks, registered networks and a user's
``FILE.py:FUNCTION`` differ only in their source (how the module is built, which judge applies:
:mod:`attn_export.export.sources`). Each stage is a plain function elsewhere; this module only
orders them, timing each on one clock with a fault point after it.
"""

from __future__ import annotations

import json

from attn_export.atomic import ArtefactSet, fault_point, sha256_file
from attn_export.errors import ExportError
from attn_export.export.check import checked_onnx, op_types
from attn_export.export.network_source import NetworkSource
from attn_export.export.onnx_from_torch import onnx_from_torch
from attn_export.export.report import build_report
from attn_export.export.request import (
    Clock,
    ExportRequest,
    ExportResult,
    Progress,
    derived_names,
    prepare_output_dir,
)
from attn_export.export.simplified_onnx import simplified_onnx
from attn_export.export.sources import BlockSource, Source
from attn_export.export.stages import (
    check_simplification,
    golden_from_torch,
    keep_derived,
    stamp_onnx,
)
from attn_export.runtime.golden import save_golden
from attn_export.runtime.validate import validate_runner


def source_for(req: ExportRequest) -> Source:
    """The source that builds ``req``'s module: a catalog block, or a network (registered or a
    user's file)."""
    if req.kind == "block":
        return BlockSource()
    if req.kind == "network":
        return NetworkSource()
    raise ExportError(f"unknown export kind {req.kind!r}; expected block or network")


def resolve(req: ExportRequest) -> ExportRequest:
    """Fill the defaults and refuse what cannot work, before any work is done."""
    return source_for(req).resolve(req)


def export(req: ExportRequest, on_wait: Progress | None = None,
           progress: Progress | None = None) -> ExportResult:
    """Run the whole job as one :class:`~attn_export.atomic.ArtefactSet`: LABEL.onnx,
    LABEL.golden.npz and report.json are staged inside the output folder, validated there, and
    moved into place together, so an interruption leaves the previous set or nothing new.

    Args:
        req: the request; see :class:`~attn_export.export.request.ExportRequest`.
        on_wait: called with a message when another process is writing into the same folder.
        progress: called with a message as each stage starts.
    """
    source = source_for(req)
    req = source.resolve(req)
    source.check(req)
    out = prepare_output_dir(req.output_dir)
    with ArtefactSet(out, remove=derived_names(source.label(req)), on_wait=on_wait) as txn:
        result = _export_into(req, source, txn, Clock(progress))
    fault_point("committed")
    return result


export_block = export
"""The name the block verb and the Python API have always used."""


def _export_into(req: ExportRequest, source: Source, txn: ArtefactSet,
                 clock: Clock) -> ExportResult:
    from attn_export.runtime.onnxruntime_runner import OnnxRuntimeRunner

    label = source.label(req)
    built = source.build(req, clock)
    clock.lap("build")
    clock.say("running PyTorch on the validation inputs (golden outputs)")
    golden = golden_from_torch(built.module, req, label, source.judged_as)
    clock.lap("torch")
    scratch = txn.scratch()
    clock.say(f"exporting to ONNX (opset {req.opset}, {req.exporter})")
    raw = onnx_from_torch(built.module, req.input_shape, scratch / "raw.onnx", req.opset,
                          req.exporter, req.dynamic)
    raw_ops = op_types(checked_onnx(raw))
    clock.lap("export")
    clock.say(f"simplifying ({req.simplifier}) and checking the simplified graph")
    simplified = simplified_onnx(raw, scratch / "simplified.onnx", req.simplifier)
    final_ops = op_types(checked_onnx(simplified))
    check_simplification(raw, simplified, golden)
    clock.lap("simplify")
    onnx_name, golden_name = f"{label}.onnx", f"{label}.golden.npz"
    staged_onnx = txn.write(onnx_name, lambda tmp: stamp_onnx(simplified, tmp,
                                                              source.metadata(req)))
    clock.say(f"validating ONNX Runtime against PyTorch on {len(golden.cases)} inputs")
    with OnnxRuntimeRunner(staged_onnx) as ort_runner:
        rows = validate_runner(ort_runner, golden, "fp32")  # the golden file names its judge
    clock.lap("validate")
    golden.meta["model_sha256"] = sha256_file(staged_onnx)
    staged_golden = txn.write(golden_name, lambda tmp: save_golden(tmp, golden))
    report = build_report(req, label, rows, clock.laps, raw_ops, final_ops,
                          txn.final_path(onnx_name), txn.final_path(golden_name))
    for key in built.drop:
        report.pop(key, None)
    report |= built.report
    report["sha256"] = {onnx_name: golden.meta["model_sha256"],
                        golden_name: sha256_file(staged_golden)}
    keep_derived(report, txn, onnx_name)
    txn.write_text("report.json", json.dumps(report, indent=2) + "\n")
    clock.lap("write")
    return ExportResult(txn.final_path(onnx_name), txn.final_path(golden_name),
                        txn.final_path("report.json"), rows, report, built.swaps, built.task)
