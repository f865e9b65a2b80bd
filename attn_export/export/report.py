"""report.json of an export folder: what was written, each file's sha256, and every verdict.

Later stages (a precision graph, an engine) add a section and their file's hash to the same
report, inside the same :class:`~attn_export.atomic.ArtefactSet` as the file itself, so the report
never lists a file that is not there or describes a file that was replaced.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

REPORT_NAME = "report.json"


def read_report(folder: str | Path) -> dict:
    """The folder's report, or {} when there is none or it is unreadable (it is then rewritten)."""
    path = Path(folder) / REPORT_NAME
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


def report_with(report: dict, key: str, value: dict[str, Any],
                hashes: dict[str, str] | None = None) -> dict:
    """A copy of ``report`` with section ``key`` and the given file hashes; ``passed`` is the
    conjunction of every verdict recorded."""
    report = dict(report)
    report[key] = value
    report["sha256"] = dict(report.get("sha256", {})) | dict(hashes or {})
    report["passed"] = report.get("passed", True) and value.get("passed", True)
    return report


def report_text(report: dict) -> str:
    return json.dumps(report, indent=2) + "\n"


def build_report(req, label: str, rows: list, timings: dict[str, float], raw_ops: dict[str, int],
                 final_ops: dict[str, int], onnx_path: Path, golden_path: Path) -> dict:
    """The report of a fresh export set: the request, the graph before and after simplification,
    every validation row and the stage timings (the source adds its own sections)."""
    from attn_export.export.onnx_from_torch import exporter_versions
    from attn_export.runtime.floor import inputs_used

    return {
        "block": label,
        "variant": req.variant,
        "channels": req.channels,
        "seed": req.seed,
        "kwargs": {k: list(v) if isinstance(v, tuple) else v for k, v in req.kwargs.items()},
        "opset": req.opset,
        "exporter": req.exporter,
        "dynamic": req.dynamic,
        "simplifier": req.simplifier,
        "input_shape": list(req.input_shape),
        "validated_shapes": sorted({r.case.split("@")[1] for r in rows}),
        "versions": exporter_versions() | {"platform": platform.platform()},
        "files": {"onnx": onnx_path.name, "golden": golden_path.name},
        "graph": {"ops_exported": raw_ops, "ops_simplified": final_ops,
                  "nodes_exported": sum(raw_ops.values()),
                  "nodes_simplified": sum(final_ops.values())},
        "tolerance": rows[0].comparison.tolerance.__dict__ if rows else {},
        "metrics": [r.to_dict() for r in rows],
        "inputs_used": inputs_used(rows),
        "timings_s": timings,
        "passed": all(r.comparison.passed for r in rows),
    }


def add_to_report(report_path: str | Path, key: str, value: Any,
                  hashes: dict[str, str] | None = None) -> dict:
    """Record a later stage (a reduced-precision graph, an engine) in an export's report.json,
    under the folder's lock, in one artefact set with nothing else."""
    from attn_export.atomic import ArtefactSet

    report_path = Path(report_path)
    with ArtefactSet(report_path.parent) as txn:
        report = report_with(read_report(report_path.parent), key, value, hashes)
        txn.write_text(report_path.name, report_text(report))
    return report
