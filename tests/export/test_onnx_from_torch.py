import onnx
import pytest

from attn_export.errors import ExportError, ShapeModeError
from attn_export.export.onnx_from_torch import MAX_IR_VERSION, check_opset, onnx_from_torch
from attn_export.modules.factory import create_block

SHAPE = (1, 32, 8, 8)


def _opset(path):
    return next(o.version for o in onnx.load(str(path)).opset_import if o.domain in ("", "ai.onnx"))


@pytest.mark.parametrize("opset", [11, 13, 17, 18, 21])
def test_torchscript_emits_exactly_the_requested_opset(tmp_path, opset):
    path = onnx_from_torch(create_block("se", 32), SHAPE, tmp_path / "m.onnx", opset, "torchscript")
    assert _opset(path) == opset
    assert onnx.load(str(path)).ir_version <= MAX_IR_VERSION


def test_dynamo_below_18_is_refused_not_silently_upgraded(tmp_path):
    # Measured: the dynamo exporter keeps opset 18 when its down-conversion of ReduceMean fails.
    with pytest.raises(ExportError, match="could not produce opset 17.*--exporter torchscript"):
        onnx_from_torch(create_block("cbam", 32), SHAPE, tmp_path / "m.onnx", 17, "dynamo")
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_dynamo_at_18_with_dynamic_hw(tmp_path):
    path = onnx_from_torch(create_block("cbam", 32), SHAPE, tmp_path / "m.onnx", 18, "dynamo", "all")
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert [bool(d.dim_param) for d in dims] == [True, False, True, True]


@pytest.mark.parametrize("dynamic,symbolic", [("none", []), ("batch", [0]), ("all", [0, 2, 3])])
def test_shape_modes_mark_exactly_the_freed_dims(tmp_path, dynamic, symbolic):
    path = onnx_from_torch(create_block("se", 32), SHAPE, tmp_path / "m.onnx", 17, "torchscript",
                           dynamic)
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert [i for i, d in enumerate(dims) if d.dim_param] == symbolic


@pytest.mark.parametrize("opset,exporter,match", [
    (10, "torchscript", "out of range"), (22, "torchscript", "out of range"),
    (17, "tflite", "unknown exporter"),
])
def test_bad_opset_or_exporter(opset, exporter, match):
    with pytest.raises(ExportError, match=match):
        check_opset(opset, exporter)


def test_unknown_shape_mode(tmp_path):
    with pytest.raises(ShapeModeError, match="none, batch, all"):
        onnx_from_torch(create_block("se", 32), SHAPE, tmp_path / "m.onnx", dynamic="hw")
