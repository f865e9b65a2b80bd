"""The measured matrix: a small subset runs for real, resumes, renders; the docs table is generated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from attn_export.report.matrix import Cell, partial_path, plan_cells, run_matrix
from attn_export.report.matrix_page import (
    BEGIN,
    load_matrix,
    markdown_table,
    render_html,
    replace_between_markers,
)
from tests.browser import open_page

ROOT = Path(__file__).resolve().parents[2]
CELLS = [Cell("se", "deploy", "torchscript", 17, "batch"),
         Cell("eca", "reference", "dynamo", 13, "none")]


@pytest.fixture(scope="module")
def measured(tmp_path_factory) -> tuple[Path, dict, list[str]]:
    out = tmp_path_factory.mktemp("matrix") / "matrix.json"
    first = run_matrix(out, CELLS[:1], precisions=("fp32", "fp16", "int8"), workers=1,
                       progress=lambda _m: None)
    # an interrupted run: the first cell is in the partial log, the second is not
    partial_path(out).write_text(json.dumps(first["cells"][0]) + "\n")
    lines: list[str] = []
    matrix = run_matrix(out, CELLS, precisions=("fp32", "fp16", "int8"), workers=2,
                        progress=lines.append)
    return out, matrix, lines


def test_cells_are_measured_and_resumed(measured):
    out, matrix, lines = measured
    assert lines[0] == "resuming: 1 of 2 cells already measured"
    assert len([m for m in lines if m.startswith("[")]) == 1  # only the missing cell ran
    assert json.loads(out.read_text()) == matrix and not partial_path(out).exists()
    se, eca = matrix["cells"]
    assert {p: r["outcome"] for p, r in se["precisions"].items()} == {
        "fp32": "pass", "fp16": "pass", "int8": "pass"}
    assert se["precisions"]["fp16"]["max_abs"] > se["precisions"]["fp32"]["max_abs"] > 0
    assert set(se["lint"].values()) == {"accept"} and "10.3" in se["lint"]
    # dynamo builds opset 18 and cannot convert ReduceMean down: refused, with the reason
    assert eca["precisions"]["fp32"]["outcome"] == "ERROR"
    assert "opset 13" in eca["precisions"]["fp32"]["reason"]


def test_plan_leaves_out_modes_a_deploy_form_refuses():
    from attn_export.modules.registry import BLOCKS, SHAPE_MODES

    cells = plan_cells(["strip_pooling", "se"], ["deploy"], ["torchscript"], [17])
    for cell in cells:
        assert cell.mode in BLOCKS[cell.block].shape_modes
    assert len([c for c in cells if c.block == "se"]) == len(SHAPE_MODES)


def test_matrix_page_sorts_and_filters_in_a_browser(measured, tmp_path):
    _, matrix, _ = measured
    html = tmp_path / "matrix.html"
    html.write_text(render_html(matrix))
    page = open_page(html, ROOT / "build" / "screenshots" / "matrix.png", height=700)
    assert page.console == [], page.console
    assert "2 of 2 rows" in page.dom  # written by the page's script: it ran
    assert page.dom.count("<tr>") == 3


def test_markdown_table_counts(measured):
    _, matrix, _ = measured
    table = markdown_table(matrix)
    assert "| deploy | torchscript | 17 | 1 | 1 | 1 | 1 |" in table
    assert "| reference | dynamo | 13 | 1 | 0 | 0 | 0 |" in table
    with pytest.raises(Exception, match="markers"):
        replace_between_markers("no markers here", table, "x.md")


def test_docs_table_is_generated_from_the_committed_matrix():
    """`make matrix` rewrites docs/compatibility.md; this fails when the two disagree."""
    matrix = load_matrix(ROOT / "docs" / "matrix.json")
    page = (ROOT / "docs" / "compatibility.md").read_text()
    assert BEGIN in page
    assert markdown_table(matrix) in page
