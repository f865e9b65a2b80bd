"""TensorRT runner: the input checks over a fake engine description (here), the real engine where
TensorRT and a GPU exist (marked ``trt`` / ``gpu``, skipped with the reason elsewhere)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from attn_export.errors import MissingDependencyError, ModelFileError, ValidationError
from attn_export.runtime.base import TensorSpec
from attn_export.runtime.cuda_memory import cuda_backend
from attn_export.runtime.tensorrt_runner import TensorRTRunner
from attn_export.runtime.trt_engine import (
    EngineTensor,
    check_profile_shapes,
    input_specs,
    numpy_dtype,
)

HAS_TRT = importlib.util.find_spec("tensorrt") is not None
F32, F16 = np.dtype(np.float32), np.dtype(np.float16)

IO = [
    EngineTensor("input", True, F32, (None, 8, None, None), (1, 8, 4, 4), (4, 8, 32, 32)),
    EngineTensor("scale", True, F32, (1, 8)),
    EngineTensor("output", False, F32, (None, 8, None, None)),
]


class DescribedEngineRunner(TensorRTRunner):
    """The real runner with its two TensorRT calls replaced by a description and a host function:
    everything between (the base-class feed checks, the profile check) is the production code."""

    def __init__(self, io):
        super().__init__("unused.engine")
        self.description = io
        self.executed = []

    def _load(self):
        self._io = list(self.description)

    def _execute(self, feed):
        self.executed.append({k: v.shape for k, v in feed.items()})
        return {"output": feed["input"] * feed["scale"][..., None, None]}


def feed(shape=(2, 8, 5, 9), dtype=np.float32):
    return {"input": np.ones(shape, dtype), "scale": np.full((1, 8), 2.0, np.float32)}


def test_input_spec_comes_from_the_engine_inputs_only():
    assert input_specs(IO) == [TensorSpec("input", F32, (None, 8, None, None)),
                               TensorSpec("scale", F32, (1, 8))]
    with DescribedEngineRunner(IO) as runner:
        assert [s.name for s in runner.input_spec()] == ["input", "scale"]
        assert runner.output_names() == ["output"]


def test_a_fitting_feed_reaches_the_engine():
    runner = DescribedEngineRunner(IO)
    out = runner.infer(feed())["output"]
    assert out.shape == (2, 8, 5, 9) and float(out.max()) == 2.0
    assert runner.executed == [{"input": (2, 8, 5, 9), "scale": (1, 8)}]


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"input": np.ones((2, 8, 5, 9), np.float32)}, "do not match the model's inputs"),
        (feed(dtype=np.float16), "dtype float16, expected float32"),
        (feed(shape=(2, 7, 5, 9)), "shape \\(2, 7, 5, 9\\), expected input: float32\\[\\?x8x\\?x\\?\\]"),
        (feed(shape=(2, 8, 5)), "expected input"),
        (feed(shape=(8, 8, 5, 9)), "outside the engine's profile 1x8x4x4 .. 4x8x32x32"),
        (feed(shape=(1, 8, 2, 9)), "rebuild with wider --min-shape/--max-shape"),
    ],
    ids=["missing-input", "dtype", "static-dim", "rank", "batch-above-profile",
         "h-below-profile"],
)
def test_feeds_the_engine_cannot_take_are_refused_before_it_runs(bad, message):
    runner = DescribedEngineRunner(IO)
    with pytest.raises(ValidationError, match=message):
        runner.infer(bad)
    assert runner.executed == []


def test_profile_check_ignores_static_inputs():
    check_profile_shapes(IO, feed(), "trt")


def test_trt_dtypes_map_to_numpy():
    assert numpy_dtype("FLOAT") == F32 and numpy_dtype("HALF") == F16
    with pytest.raises(ValidationError, match="keep I/O in FP32"):
        numpy_dtype("BF16")
    assert IO[0].to_dict() == {"name": "input", "mode": "input", "dtype": "float32",
                               "shape": [-1, 8, -1, -1]}


def test_missing_and_empty_engines_are_model_file_errors(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        TensorRTRunner(tmp_path / "none.engine").load()
    (tmp_path / "empty.engine").write_bytes(b"")
    with pytest.raises(ModelFileError, match="is empty"):
        TensorRTRunner(tmp_path / "empty.engine").load()


def test_unknown_memory_backend_is_refused():
    with pytest.raises(ValidationError, match="expected auto, torch or cuda-python"):
        cuda_backend("numpy")


@pytest.mark.skipif(HAS_TRT, reason="checks the message shown where TensorRT is absent")
def test_without_tensorrt_the_runner_says_how_to_install_it(tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"not a plan")
    with pytest.raises(MissingDependencyError, match="pip install tensorrt"):
        TensorRTRunner(engine).load()


# --------------------------------------------------------------------------------------------------
# With TensorRT and a GPU
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def se_engine(tmp_path_factory):
    """A real FP32 engine of SE (dynamic batch) and its ONNX, built with engine_from_onnx."""
    import torch

    from attn_export.export.engine_from_onnx import BuildOptions, build_engine
    from attn_export.export.onnx_from_torch import onnx_from_torch
    from attn_export.modules.factory import create_block

    torch.manual_seed(0)
    block = create_block("se", 32, reduction=4).eval()
    folder = tmp_path_factory.mktemp("se_trt")
    onnx_path = onnx_from_torch(block, (1, 32, 8, 8), folder / "se.onnx", 17, "torchscript",
                                "batch")
    (folder / "report.json").write_text(json.dumps({"input_shape": [1, 32, 8, 8]}))
    result = build_engine(onnx_path, BuildOptions(precision="fp32",
                                                  timing_cache=folder / "t.cache"))
    return block, result


@pytest.mark.trt
@pytest.mark.gpu
def test_engine_runs_and_matches_pytorch(se_engine):
    import torch

    block, result = se_engine
    x = np.random.default_rng(0).standard_normal((3, 32, 8, 8)).astype(np.float32)
    with TensorRTRunner(result.engine_path) as runner:
        assert runner.input_spec()[0].shape == (None, 32, 8, 8)
        out = runner.infer({"input": x})["output"]
    with torch.no_grad():
        np.testing.assert_allclose(out, block(torch.from_numpy(x)).numpy(), atol=1e-5, rtol=1e-4)


@pytest.mark.trt
@pytest.mark.gpu
def test_engine_from_another_trt_version_is_refused_before_deserializing(se_engine, tmp_path):
    _, result = se_engine
    engine = tmp_path / result.engine_path.name
    engine.write_bytes(result.engine_path.read_bytes())
    data = json.loads(result.sidecar_path.read_text())
    data["built_with"]["tensorrt"] = "9.9.9"
    (tmp_path / result.sidecar_path.name).write_text(json.dumps(data))
    with pytest.raises(ModelFileError, match="built with TensorRT 9.9.9"):
        TensorRTRunner(engine).load()
    TensorRTRunner(engine, check_sidecar=False).load().close()


@pytest.mark.trt
@pytest.mark.gpu
def test_corrupt_engine_is_a_model_file_error(se_engine, tmp_path):
    _, result = se_engine
    engine = tmp_path / "cut.engine"
    engine.write_bytes(result.engine_path.read_bytes()[:200])
    with pytest.raises(ModelFileError, match="cannot deserialize"):
        TensorRTRunner(engine).load()
