import onnx
import pytest
from onnx import TensorProto, helper

from attn_export.errors import ModelFileError
from attn_export.export.check import checked_onnx, load_onnx, op_types


def _model(path, bad_shape=False):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5 if bad_shape else 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_valid_model_passes_and_counts_ops(tmp_path):
    assert op_types(checked_onnx(_model(tmp_path / "m.onnx"))) == {"Relu": 1}


def test_inconsistent_shapes_fail_strict_inference(tmp_path):
    with pytest.raises(ModelFileError, match="fails the ONNX checker"):
        checked_onnx(_model(tmp_path / "m.onnx", bad_shape=True))


def test_truncated_and_missing_files(tmp_path):
    path = _model(tmp_path / "m.onnx")
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(ModelFileError, match="truncated"):
        load_onnx(path)
    with pytest.raises(ModelFileError, match="does not exist"):
        load_onnx(tmp_path / "nope.onnx")
    garbage = tmp_path / "g.onnx"
    garbage.write_text("hello")
    with pytest.raises(ModelFileError):
        load_onnx(garbage)
