"""The INT8 floor: the float32 graph with the Q/DQ graph's quantization simulated in float."""

from __future__ import annotations

import warnings

import onnx
import pytest

from attn_export.export.floor_int8 import fake_quant_model, quantized_inputs
from attn_export.export.pipeline import ExportRequest, export_block
from attn_export.export.precision import precision_set_from_export
from attn_export.runtime.floor import FLOOR_FACTOR
from attn_export.runtime.golden import load_golden


@pytest.fixture(scope="module")
def cbam_int8(tmp_path_factory):
    out = tmp_path_factory.mktemp("cbam")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = export_block(ExportRequest(block="cbam", input_shape=(1, 32, 16, 16),
                                         output_dir=out))
        export = precision_set_from_export(res.onnx_path, res.golden_path, "int8")
    return out, export


def test_floor_is_recorded_in_the_golden_file_with_its_contrast(cbam_int8):
    out, export = cbam_int8
    floor = load_golden(out / "cbam.golden.npz").meta["floor"]["int8"]
    assert floor["kind"] == "fake-quant-int8" and floor["contrast_kind"].endswith("quantized")
    case = "normal@1x32x16x16"
    ours, gates = floor["cases"][case]["output"], floor["contrast"][case]["output"]
    assert gates["rel_l2"] > 2 * ours["rel_l2"]  # F2: quantizing the gates costs more
    row = next(r for r in export.rows if r.case == case)
    assert row.verdict.floor.kind == "fake-quant-int8"
    assert row.verdict.factor <= FLOOR_FACTOR["int8"]


def test_simulation_quantizes_what_the_qdq_graph_quantizes_and_nothing_else(cbam_int8):
    out, _ = cbam_int8
    fp32, qdq = onnx.load(str(out / "cbam.onnx")), onnx.load(str(out / "cbam.int8.onnx"))
    plan = quantized_inputs(qdq)
    assert plan and all(not node.startswith("/channelattention/Sigmoid") for node, _ in plan)
    sim = fake_quant_model(fp32, qdq)
    rounds = [n for n in sim.graph.node if n.op_type == "Round"]
    activations = [k for k, (_, _, src) in plan.items()
                   if src not in {t.name for t in fp32.graph.initializer}]
    assert len(rounds) == len(activations)
    assert not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in sim.graph.node)
    onnx.checker.check_model(sim)


def test_report_rows_carry_the_floor(cbam_int8):
    import json

    out, _ = cbam_int8
    report = json.loads((out / "report.json").read_text())
    rows = report["int8"]["metrics"]
    assert all(r["floor"]["kind"] == "fake-quant-int8" for r in rows)
    assert {r["input_kind"] for r in rows} == {"seeded"}
    assert report["sha256"]["cbam.golden.npz"]  # rewritten golden file hashed again
    from attn_export.atomic import sha256_file

    assert report["sha256"]["cbam.golden.npz"] == sha256_file(out / "cbam.golden.npz")
