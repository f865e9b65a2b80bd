"""``matrix.json`` -> ``matrix.html`` (every cell, sortable and filterable) and the docs table.

The docs' compatibility table is generated from the measured ``matrix.json`` (never written by
hand); ``tests/report/test_matrix.py`` fails when the committed table and the committed matrix
disagree.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

BEGIN, END = "<!-- matrix-table:begin -->", "<!-- matrix-table:end -->"


def load_matrix(path: str | Path) -> dict:
    from attn_export.errors import ModelFileError

    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"cannot read {path}: {exc}; run `make matrix` to measure it") from None


def _cell_text(result: dict) -> str:
    if result["outcome"] in ("pass", "FAIL") and "max_abs" in result:
        return f"{result['outcome']} {result['max_abs']:.1e}"
    return result["outcome"]


def render_html(matrix: dict) -> str:
    """The whole matrix as one self-contained page."""
    from attn_export.report.page import environment

    versions = matrix.get("lint_versions", [])
    rows = []
    for cell in matrix["cells"]:
        rows.append({"cell": cell, "results": [
            {"text": _cell_text(cell["precisions"].get(p, {"outcome": "-"})),
             "reason": cell["precisions"].get(p, {}).get("reason", ""),
             "css": {"pass": "good", "FAIL": "bad"}.get(
                 cell["precisions"].get(p, {}).get("outcome"), "warn")}
            for p in ("fp32", "fp16", "int8")],
            "lint": [cell["lint"].get(v, "-") for v in versions]})
    css = (Path(__file__).with_name("templates") / "style.css").read_text()
    return environment().get_template("matrix.html.j2").render(
        rows=rows, versions=versions, tools=matrix.get("versions", {}), css=css,
        cell_size=matrix.get("cell_size"), count=len(rows))


def summary_rows(matrix: dict) -> list[dict]:
    """Pass counts per form x exporter x opset, over blocks and shape modes."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for cell in matrix["cells"]:
        groups[(cell["form"], cell["exporter"], cell["opset"])].append(cell)
    rows = []
    for (form, exporter, opset), cells in sorted(groups.items()):
        row = {"form": form, "exporter": exporter, "opset": opset, "cells": len(cells)}
        for p in ("fp32", "fp16", "int8"):
            row[p] = sum(c["precisions"].get(p, {}).get("outcome") == "pass" for c in cells)
        for v in matrix.get("lint_versions", []):
            row[f"lint {v}"] = sum(c["lint"].get(v) == "accept" for c in cells)
        rows.append(row)
    return rows


def markdown_table(matrix: dict) -> str:
    """The docs' table: for each form, exporter and opset, how many of its cells pass."""
    rows = summary_rows(matrix)
    lint = [f"lint {v}" for v in matrix.get("lint_versions", [])]
    head = ["form", "exporter", "opset", "cells", "fp32 pass", "fp16 pass", "int8 pass",
            *[f"TensorRT {k[5:]} parser accepts" for k in lint]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        values = [r["form"], r["exporter"], str(r["opset"]), str(r["cells"]), str(r["fp32"]),
                  str(r["fp16"]), str(r["int8"]), *[str(r[k]) for k in lint]]
        lines.append("| " + " | ".join(values) + " |")
    return "\n".join(lines)


def replace_between_markers(text: str, table: str, source: str) -> str:
    from attn_export.errors import ValidationError

    if BEGIN not in text or END not in text:
        raise ValidationError(f"{source} has no {BEGIN} ... {END} markers for the matrix table")
    head, rest = text.split(BEGIN, 1)
    return f"{head}{BEGIN}\n{table}\n{END}{rest.split(END, 1)[1]}"
