"""Build the report page's content for one or several exports and render it with Jinja2."""

from __future__ import annotations

import datetime
import platform
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from attn_export.report import plots
from attn_export.report.collect import PRECISIONS, ExportView
from attn_export.report.elementwise import Measured, measure

VERDICT_CLASS = {"FAIL: the precision itself costs too much here": "bad",
                 "as good as the precision allows": "good", "pass": "good",
                 "worse than the precision explains": "bad", "FAIL": "bad", "broken": "broken",
                 "degenerate output": "warn"}


def environment():
    """The package's Jinja2 templates; autoescaped, and a missing variable is an error."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("attn_export.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]), undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True)


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}e}" if value and (abs(value) < 1e-2 or abs(value) >= 1e4) else (
            f"{value:.{digits + 2}f}")
    return str(value)


def verdict_rows(view: ExportView) -> list[dict]:
    """One row per backend x precision x input, with the floor where the export recorded one."""
    rows = []
    for precision, section in view.sections().items():
        for m in section.get("metrics", []):
            floor = m.get("floor") or {}
            verdict = m.get("verdict") or ("pass" if m.get("passed") else "FAIL")
            if m.get("nonfinite"):
                verdict = "broken"
            elif not m.get("passed", True) and verdict == "as good as the precision allows":
                # within the floor, yet past the sanity bound: the precision itself is too lossy
                verdict = "FAIL: the precision itself costs too much here"
            rows.append({
                "precision": precision, "backend": m.get("backend", ""),
                "case": m.get("case", ""), "output": m.get("output", ""),
                "input_kind": m.get("input_kind", "seeded"),
                "max_abs": _fmt(m.get("max_abs")), "rel_l2": _fmt(m.get("rel_l2")),
                "cosine": _fmt(m.get("cosine"), 4), "floor": _fmt(floor.get("rel_l2")),
                "floor_kind": floor.get("kind", ""), "factor": _fmt(m.get("factor"), 1),
                "verdict": verdict, "css": VERDICT_CLASS.get(verdict, "bad")})
    return rows


def _floors(view: ExportView) -> dict[str, float]:
    """The largest recorded floor max abs per precision (the distribution plot's dashed line)."""
    out: dict[str, float] = {}
    for precision, section in view.sections().items():
        values = [m["floor"]["max_abs"] for m in section.get("metrics", [])
                  if isinstance(m.get("floor"), dict) and m["floor"].get("max_abs") is not None]
        if values:
            out[precision] = float(max(values))
    return out


def _bounds(view: ExportView) -> dict[str, float]:
    out = {}
    for precision, section in view.sections().items():
        metrics = section.get("metrics") or [{}]
        atol = (metrics[0].get("tolerance") or {}).get("atol")
        if atol is not None:
            out[precision] = float(atol)
    return out


def graph_summary(view: ExportView) -> dict:
    """Ops before and after simplification, and the block's forbidden ops in the final graph."""
    graph = view.report.get("graph", {})
    before, after = graph.get("ops_exported", {}), graph.get("ops_simplified", {})
    ops = sorted(set(before) | set(after), key=lambda op: (-after.get(op, 0), op))
    forbidden = []
    block = view.report.get("block")
    if block and not view.is_network:
        from attn_export.modules.registry import BLOCKS

        info = BLOCKS.get(block)
        names = info.forbidden_ops if info else ()
        forbidden = [{"op": op, "count": after.get(op, 0)} for op in names]
    return {"ops": [{"op": op, "before": before.get(op, 0), "after": after.get(op, 0)}
                    for op in ops],
            "nodes_before": graph.get("nodes_exported"), "nodes_after": graph.get("nodes_simplified"),
            "forbidden": forbidden}


def lint_rows(view: ExportView) -> list[dict]:
    """The offline TensorRT lint of every graph against every TensorRT version we describe."""
    from attn_export.errors import AttnExportError
    from attn_export.export.lint import lint_onnx
    from attn_export.report.matrix import lint_versions

    rows = []
    for precision, path in view.graphs.items():
        for version in lint_versions():
            try:
                report = lint_onnx(path, version)
            except AttnExportError as exc:
                rows.append({"precision": precision, "version": version, "verdict": "not linted",
                             "css": "warn", "detail": str(exc)})
                continue
            errors = report.errors
            rows.append({"precision": precision, "version": version,
                         "verdict": "accept" if report.passed else "reject",
                         "css": "good" if report.passed else "bad",
                         "detail": (f"{report.count('warning')} warning(s)" if report.passed else
                                    "; ".join(f"{f.node} ({f.op_type}): {f.reason}"
                                              for f in errors[:3]))})
    return rows


def _pictures(view: ExportView, measured: Measured) -> dict[str, str]:
    samples = {p: np.concatenate([c.abs_err for c in measured.cases if c.precision == p])
               for p in PRECISIONS if any(c.precision == p for c in measured.cases)}
    pictures = {"distribution": plots.error_distribution(samples, _floors(view), _bounds(view))}
    reduced = [p for p in ("int8", "fp16") if measured.worst(p)] or ["fp32"]
    worst = measured.worst(reduced[0])
    pictures["map"] = plots.error_map(worst.channel, worst.position,
                                      f"{worst.precision}, {worst.case}") if worst else ""
    locate = view.report.get("locate") or {}
    pictures["growth"] = plots.error_growth(locate.get("path", []))
    pictures["latency"] = plots.latency(view.bench) if view.bench else ""
    return pictures


def _input_text(item) -> str:
    """``seeded: seeded maps (normal, ...) x4``: one entry of report.json's ``inputs_used``."""
    if not isinstance(item, dict):
        return str(item)
    count = len(item.get("cases", []))
    return f"{item.get('kind', '?')}: {item.get('description', '')} ({count} case(s))"


def export_section(view: ExportView) -> dict:
    """Everything one export contributes to the page."""
    measured = measure(view.graphs, view.golden) if view.golden else Measured()
    report = view.report
    rows = verdict_rows(view)
    failing = [r for r in rows if r["css"] in ("bad", "broken")]
    return {
        "name": view.name, "folder": str(view.folder), "kind": "network" if view.is_network
        else "block", "settings": {k: report.get(k) for k in (
            "variant", "opset", "exporter", "dynamic", "simplifier", "input_shape",
            "validated_shapes") if report.get(k) is not None},
        "passed": all(s.get("passed", True) for s in view.sections().values()),
        "rows": rows, "failing": len(failing), "graphs": {p: str(path.name)
                                                         for p, path in view.graphs.items()},
        "inputs_used": [_input_text(i) for i in report.get("inputs_used", [])],
        "locate": report.get("locate"),
        "pictures": _pictures(view, measured), "run_errors": measured.errors,
        "summary": graph_summary(view), "lint": lint_rows(view),
        "versions": report.get("versions", {}), "swaps": report.get("swaps", [])}


def render(views: Sequence[ExportView], title: str | None = None) -> str:
    """The whole page as one HTML string."""
    sections = [export_section(v) for v in views]
    template = environment().get_template("report.html.j2")
    return template.render(
        title=title or "attn-export report: " + ", ".join(s["name"] for s in sections),
        sections=sections, generated=datetime.datetime.now().isoformat(timespec="seconds"),
        viewer={"python": platform.python_version(), "platform": platform.platform()},
        css=(Path(__file__).with_name("templates") / "style.css").read_text())
