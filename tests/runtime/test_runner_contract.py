"""One contract suite run against every runner available here (STYLE 9)."""

import numpy as np
import pytest

from attn_export.errors import ModelFileError, ValidationError
from attn_export.export.onnx_from_torch import onnx_from_torch
from attn_export.modules.factory import create_block
from attn_export.runtime.onnxruntime_runner import OnnxRuntimeRunner
from attn_export.runtime.torch_runner import TorchRunner

SHAPE = (1, 32, 8, 8)


@pytest.fixture(scope="module")
def block():
    import torch

    torch.manual_seed(0)
    return create_block("se", 32).eval()


@pytest.fixture(scope="module")
def onnx_path(block, tmp_path_factory):
    return onnx_from_torch(block, SHAPE, tmp_path_factory.mktemp("m") / "se.onnx", dynamic="batch")


@pytest.fixture(params=["pytorch", "onnxruntime", "tensorrt-fake"])
def runner(request, block, onnx_path, monkeypatch):
    if request.param == "pytorch":
        r = TorchRunner(block, ["input"], ["output"], [(None, 32, 8, 8)])
    elif request.param == "onnxruntime":
        r = OnnxRuntimeRunner(onnx_path)
    else:  # the real TensorRTRunner over the fake TensorRT held to the real 11.4 bindings
        r = _fake_tensorrt_runner(monkeypatch, onnx_path)
    with r:
        yield r


def _fake_tensorrt_runner(monkeypatch, onnx_path):
    from attn_export.export.engine_from_onnx import BuildOptions, build_engine
    from attn_export.runtime.tensorrt_runner import TensorRTRunner
    from tests import fake_tensorrt

    fake_tensorrt.install(monkeypatch, "11.4.0.106")
    built = build_engine(onnx_path, BuildOptions(opt_shapes="1x32x8x8", max_shapes="8x32x8x8",
                                                 use_timing_cache=False))
    return TensorRTRunner(built.engine_path)


def test_input_spec_names_dtype_and_dynamic_batch(runner):
    (spec,) = runner.input_spec()
    assert spec.name == "input" and spec.dtype == np.float32
    assert spec.shape[0] is None and spec.shape[1:] == (32, 8, 8)


def test_infer_returns_named_outputs_of_input_shape(runner):
    x = np.random.default_rng(0).standard_normal((3, 32, 8, 8)).astype(np.float32)
    out = runner.infer({"input": x})
    assert list(out) == ["output"] and out["output"].shape == x.shape


@pytest.mark.parametrize("feed,match", [
    ({"wrong": np.zeros(SHAPE, np.float32)}, "do not match"),
    ({"input": np.zeros(SHAPE, np.float64)}, "dtype float64"),
    ({"input": np.zeros((1, 16, 8, 8), np.float32)}, r"float32\[\?x32x8x8\]"),
    ({"input": np.zeros((1, 32, 8), np.float32)}, "shape"),
])
def test_bad_feeds_are_refused_before_the_backend_runs(runner, feed, match):
    with pytest.raises(ValidationError, match=match):
        runner.infer(feed)


def test_runners_agree(block, onnx_path):
    x = np.random.default_rng(1).standard_normal((2, 32, 8, 8)).astype(np.float32)
    with OnnxRuntimeRunner(onnx_path) as ort_runner:
        a = ort_runner.infer({"input": x})["output"]
    b = TorchRunner(block, ["input"], ["output"], [(None, 32, 8, 8)]).infer({"input": x})["output"]
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_corrupt_onnx_is_a_model_file_error(tmp_path, onnx_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(onnx_path.read_bytes()[:100])
    with pytest.raises(ModelFileError, match="cannot load"):
        OnnxRuntimeRunner(broken).load()
