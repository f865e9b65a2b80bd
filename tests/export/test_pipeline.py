import json

import onnx
import pytest
import torch
from onnx import numpy_helper

from attn_export.errors import BlockConfigError, ExportError, ShapeModeError
from attn_export.export.onnx_from_torch import onnx_from_torch
from attn_export.export.pipeline import ExportRequest, export_block, resolve
from attn_export.export.report import add_to_report
from attn_export.export.sources import build_block
from attn_export.export.stages import check_simplification, golden_from_torch


def test_resolve_fills_defaults_from_the_registry():
    req = resolve(ExportRequest(block="cbam"))
    assert req.channels == 64 and req.input_shape == (1, 64, 32, 32)
    assert str(req.output_dir) == "exports/cbam"


def test_resolve_refuses_before_any_work():
    with pytest.raises(ShapeModeError, match="declared geometry.*--input-shape"):
        resolve(ExportRequest(block="strip_pooling", dynamic="all"))
    with pytest.raises(BlockConfigError, match="disagrees"):
        resolve(ExportRequest(block="se", channels=8, input_shape=(1, 16, 8, 8)))


def test_built_blocks_have_non_identity_norm_statistics():
    block = build_block(resolve(ExportRequest(block="coordatt", channels=32)))
    assert not torch.allclose(block.bn1.running_var, torch.ones(8))
    assert not block.training


def test_geometry_is_passed_to_blocks_that_need_it():
    block = build_block(resolve(ExportRequest(block="strip_pooling", input_shape=(1, 16, 20, 12))))
    assert block.init_args["input_size"] == (20, 12)


def test_golden_covers_every_kind_and_the_extra_shapes():
    req = resolve(ExportRequest(block="se", channels=16, input_shape=(1, 16, 8, 8), dynamic="all"))
    golden = golden_from_torch(build_block(req), req)
    shapes = {c.name.split("@")[1] for c in golden.cases}
    assert len(shapes) == 3 and "1x16x8x8" in shapes
    assert {c.name.split("@")[0] for c in golden.cases} == {"normal", "relu_large", "constant",
                                                           "zeros"}


def test_simplification_check_tolerates_reordering_but_not_a_changed_graph(tmp_path):
    req = resolve(ExportRequest(block="cbam", channels=16, input_shape=(1, 16, 8, 8)))
    block = build_block(req)
    golden = golden_from_torch(block, req)
    raw = onnx_from_torch(block, req.input_shape, tmp_path / "raw.onnx")
    check_simplification(raw, raw, golden)  # identical graphs pass
    model = onnx.load(str(raw))
    init = max(model.graph.initializer, key=lambda t: numpy_helper.to_array(t).size)  # the 7x7 conv
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 1.5, init.name))
    changed = tmp_path / "changed.onnx"
    onnx.save(model, str(changed))
    with pytest.raises(ExportError, match="simplification changed output"):
        check_simplification(raw, changed, golden)


def test_published_mhsa_survives_onnxslim_reordering(tmp_path):
    # onnxslim's fused graph moves large activations by float32 ulps (9.5e-6 on values ~30):
    # within the fp32 row, so not a simplification failure.
    result = export_block(ExportRequest(block="mhsa", variant="reference", dynamic="batch",
                                        input_shape=(1, 64, 16, 16), output_dir=tmp_path))
    assert result.passed


def test_add_to_report_records_a_later_stage(tmp_path):
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"passed": True}))
    add_to_report(path, "fp16", {"file": "x.fp16.onnx", "passed": False})
    report = json.loads(path.read_text())
    assert report["fp16"]["file"] == "x.fp16.onnx" and report["passed"] is False
