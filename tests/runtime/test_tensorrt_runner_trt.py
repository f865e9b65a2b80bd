"""The TensorRT runner over the fake TensorRT of each real binding version (checked against the
real wheels by test_trt_surface.py): streams, address checks, data-dependent shapes, the logger,
the installed-version probe, the CUDA backends' pins."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from attn_export.errors import ModelFileError
from attn_export.export.engine_from_onnx import BuildOptions, build_engine
from attn_export.runtime import cuda_memory, trt_env
from attn_export.runtime.tensorrt_runner import TensorRTRunner
from attn_export.runtime.trt_env import CUDA_PYTHON_HINT, TRT_INSTALL_HINT, installed_trt_version
from attn_export.runtime.trt_logger import LogCapture
from tests import fake_tensorrt
from tests.relu_onnx import relu_onnx as shared_relu_onnx

ROOT = Path(__file__).resolve().parents[2]


def relu_onnx(path: Path, batch="N") -> Path:
    """The shared Relu graph, with the report.json the runner reads its input shape from."""
    path = shared_relu_onnx(path, (batch, 4, 8, 8))
    (path.parent / "report.json").write_text(json.dumps({"input_shape": [1, 4, 8, 8]}))
    return path


def nonzero_onnx(path: Path, batch) -> Path:
    """An output whose length depends on the data (NonZero)."""
    graph = helper.make_graph(
        [helper.make_node("NonZero", ["input"], ["output"])], "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 4])],
        [helper.make_tensor_value_info("output", TensorProto.INT64, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


@pytest.fixture
def engine(monkeypatch, tmp_path):
    fake_tensorrt.install(monkeypatch, "10.3.0")
    return build_engine(relu_onnx(tmp_path / "r.onnx"),
                        BuildOptions(precision="fp32", use_timing_cache=False)).engine_path


def test_runs_on_its_own_stream(monkeypatch, engine):
    x = np.random.default_rng(0).standard_normal((2, 4, 8, 8)).astype(np.float32)
    with TensorRTRunner(engine) as runner:
        np.testing.assert_array_equal(runner.infer({"input": x})["output"], np.maximum(x, 0))
        assert runner._context.streams == [7]  # the backend's stream, never 0
        cuda = runner._cuda
    assert cuda.closed and not cuda.live  # every device buffer freed at close


def test_the_default_stream_is_refused(monkeypatch, engine):
    monkeypatch.setattr(cuda_memory, "cuda_backend",
                        lambda prefer="auto": fake_tensorrt.FakeCuda(stream=0))
    with TensorRTRunner(engine) as runner, pytest.raises(ModelFileError, match="default stream"):
        runner.infer({"input": np.ones((1, 4, 8, 8), np.float32)})


def test_a_refused_tensor_address_is_an_error(monkeypatch, engine):
    class BadPointer(fake_tensorrt.FakeCuda):
        @staticmethod
        def pointer(buffer):
            return 0  # not an allocation: set_tensor_address returns False

    monkeypatch.setattr(cuda_memory, "cuda_backend", lambda prefer="auto": BadPointer())
    with TensorRTRunner(engine) as runner:
        with pytest.raises(ModelFileError, match="refused the device address of tensor 'input'"):
            runner.infer({"input": np.ones((1, 4, 8, 8), np.float32)})
        assert runner._context.streams == []  # nothing ran


@pytest.mark.parametrize("version", ["10.3.0", "11.4.0.106"])
def test_data_dependent_output_shapes_are_refused(monkeypatch, tmp_path, version):
    fake_tensorrt.install(monkeypatch, version)
    static = build_engine(nonzero_onnx(tmp_path / "s.onnx", 2),
                          BuildOptions(use_timing_cache=False)).engine_path
    with pytest.raises(ModelFileError, match=r"\['output'\] have data-dependent shapes"):
        TensorRTRunner(static).load()  # known at load: no input shape to wait for
    dynamic = build_engine(nonzero_onnx(tmp_path / "d.onnx", "N"),
                           BuildOptions(use_timing_cache=False, opt_shapes="2x4",
                                        max_shapes="4x4")).engine_path
    with TensorRTRunner(dynamic) as runner:
        with pytest.raises(ModelFileError, match="no IOutputAllocator"):
            runner.infer({"input": np.ones((2, 4), np.float32)})
        assert runner._context.streams == []


def test_a_capture_keeps_only_the_newest_messages():
    capture = LogCapture(capacity=3)
    for i in range(1000):
        capture.messages.append(("ERROR", f"e{i}"))
    capture.messages.append(("INFO", "not an error"))
    assert capture.errors() == ["e998", "e999"] and len(capture.messages) == 3


# --------------------------------------------------------------------------------------------------
# Which TensorRT is installed: tensorrt.__version__, not distribution metadata
# --------------------------------------------------------------------------------------------------


def _package(root: Path, name: str, body: str) -> None:
    (root / name).mkdir(parents=True)
    (root / name / "__init__.py").write_text(body)
    importlib.invalidate_caches()


@pytest.fixture
def no_trt(monkeypatch, tmp_path):
    """sys.path with a fresh folder first and no TensorRT module imported yet."""
    for name in trt_env.TRT_MODULES:
        monkeypatch.setitem(sys.modules, name, None)  # undone by deleting what the test imports
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_version_of_bindings_without_distribution_metadata(no_trt):
    """JetPack's apt bindings and tensorrt-cu12 have no ``tensorrt`` distribution."""
    import importlib.metadata

    _package(no_trt, "tensorrt", "__version__ = '10.3.0.30'\n")
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.version("tensorrt")
    assert installed_trt_version() == "10.3.0.30"


def test_version_of_a_lean_only_install(no_trt):
    _package(no_trt, "tensorrt", "raise OSError('libnvinfer.so.10: cannot open shared object')\n")
    _package(no_trt, "tensorrt_lean", "__version__ = '10.13.0.35'\n")
    assert installed_trt_version() == "10.13.0.35"


def test_no_tensorrt_plans_for_jetpack_6(no_trt, monkeypatch):
    from attn_export.commands.engine_build import installed_trt as _installed_trt

    for name in trt_env.TRT_MODULES:
        monkeypatch.setitem(sys.modules, name, None)  # import raises ImportError
    assert installed_trt_version() is None and _installed_trt() == "10.3"


def test_version_of_the_real_bindings(no_trt):
    """The real 11.4 wheel, imported as ``tensorrt`` the way tensorrt-cu12 re-exports it."""
    import subprocess

    from tests.trt_surface import bindings_root, missing_reason

    if missing_reason("11.4.0.106"):
        pytest.skip(missing_reason("11.4.0.106"))
    folder = bindings_root() / "11.4.0.106"
    _package(no_trt, "tensorrt", "from tensorrt_bindings import *  # noqa\n"
             "from tensorrt_bindings import __version__  # noqa\n")
    code = ("from attn_export.runtime.tensorrt_runner import installed_trt_version as v; "
            "print(v())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={
        "PYTHONPATH": f"{no_trt}:{folder}:{ROOT}", "LD_LIBRARY_PATH": str(folder / "lib")},
        check=True)
    assert out.stdout.strip() == "11.4.0.106"


# --------------------------------------------------------------------------------------------------
# CUDA backends
# --------------------------------------------------------------------------------------------------


def test_tensorrt_and_cuda_python_are_pinned_by_cuda_major():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    # JetPack 6 is CUDA 12.6; cuda-python 13.x needs r580+; plain `tensorrt` now pulls
    # tensorrt-cu13, so each CUDA major has its extra, TensorRT and cuda-python of that major
    assert extras["tensorrt-cu12"] == ["tensorrt-cu12>=10.0,<12", "cuda-python>=12.0,<13"]
    assert extras["tensorrt-cu13"] == ["tensorrt-cu13>=10.13,<12", "cuda-python>=13.0,<14"]
    assert extras["tensorrt"] == extras["tensorrt-cu12"]  # the old extra keeps its meaning
    assert "'cuda-python>=12,<13'" in CUDA_PYTHON_HINT and CUDA_PYTHON_HINT in TRT_INSTALL_HINT
    assert "`pip install tensorrt-cu12` for CUDA 12" in TRT_INSTALL_HINT


def test_torch_backend_makes_a_stream_of_its_own(monkeypatch):
    """torch's CUDA cannot run here; its two entry points are replaced to see which stream the
    backend asks for: a new one, not torch's current (default) stream."""
    import torch

    made = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "Stream", lambda: made.append("stream") or "own-stream")
    monkeypatch.setattr(torch.cuda, "current_stream",
                        lambda: pytest.fail("the default stream was taken"))
    assert cuda_memory.TorchCuda().stream == "own-stream" and made == ["stream"]
