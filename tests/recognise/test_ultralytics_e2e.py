"""A YOLO built from Ultralytics' classes, end to end (``slow``: a few minutes on 2 cores).

YOLOv8n with Ultralytics' CBAM after each backbone C2f stage (``nets.yolo_cbam``, seeded, no
downloaded weights): the CBAMs are recognised and swapped, the network exports and validates in
FP32, FP16 and INT8, INT8 keeps exactly their gates float, and on the same calibration set our
plan moves every CBAM's gates less than Ultralytics' own plan (only the head's Sigmoid excluded).
Plain YOLOv8n (SiLU everywhere, no attention) has no gate at all.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from attn_export.cli import main
from tests.recognise import nets

NETS = Path(nets.__file__)
ROOT = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("ultralytics") is None,
                       reason="ultralytics is not installed (pip install -e '.[dev]')"),
]
CBAMS = ["model.model.2.1", "model.model.4.1", "model.model.6.1", "model.model.8.1"]


def _model(builder: str, precision: str, tmp_path) -> str:
    result = CliRunner().invoke(main, ["model", f"{NETS}:{builder}", "--input-shape",
                                       "1x3x128x128", "--precision", precision,
                                       "--output-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_cbam_yolo_exports_and_validates(precision, tmp_path):
    out = _model("yolo_cbam", precision, tmp_path)
    for path in CBAMS:
        assert re.search(rf"{re.escape(path)}\s+CBAM -> UltralyticsCBAM\s+ultralytics", out)
    assert "4 blocks swapped" in out
    if precision == "int8":
        gates = re.findall(r"^gate error (\S+):", out, re.M)
        assert gates == CBAMS
        assert f"gates kept float (F2): {', '.join(CBAMS)}" in out


def test_plain_yolov8n_has_no_gate_at_int8(tmp_path):
    out = _model("yolo_silu", "int8", tmp_path)
    assert "gate error" not in out
    kept = int(re.search(r"\((\d+) nodes kept float", out).group(1))
    assert kept < 10, out  # GEMVs and the like only: no SiLU sigmoid is kept float


def test_our_int8_plan_moves_the_gates_less_than_ultralytics(tmp_path):
    spec = importlib.util.spec_from_file_location("int8_gate_plans",
                                                  ROOT / "tools/int8_gate_plans.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    figures = tool.compare_plans(size=128, samples=8, workdir=tmp_path)
    print(tool.format_figures(figures))
    assert figures["blocks"] == CBAMS
    assert figures["head_sigmoids_excluded"]
    for block in CBAMS:
        assert figures["ours"]["gate_error"][block] < figures["ultralytics"]["gate_error"][block]
