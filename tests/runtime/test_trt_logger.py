"""One TensorRT logger per process with per-operation capture, over the fake TensorRT.

The fake keeps TensorRT's rule: the logger given to the first Builder, Runtime or parser of the
process receives every later message (``ILogger``: "the logger is internally considered a
singleton"). A logger made per operation therefore hears nothing after the first one; these tests
run two operations and check the second one's error still quotes TensorRT.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from attn_export.errors import ExportError, ModelFileError
from attn_export.export.engine_from_onnx import build_engine, engine_from_onnx
from attn_export.export.precision_plan import plan_precision
from attn_export.export.profiles import InputProfile
from attn_export.export.trt_build.settings import BuilderSettings, BuildOptions
from attn_export.runtime.tensorrt_runner import TensorRTRunner
from attn_export.runtime.trt_logger import capture_log, get_trt_logger
from tests import fake_tensorrt
from tests.relu_onnx import relu_onnx


@pytest.fixture
def trt(monkeypatch):
    fake_tensorrt.reset_process_logger()  # a fresh "process"
    yield fake_tensorrt.install(monkeypatch, "10.3.0")
    fake_tensorrt.reset_process_logger()


def test_one_logger_per_process(trt):
    assert get_trt_logger(trt) is get_trt_logger(trt)


def test_a_second_operation_quotes_tensorrt(trt, tmp_path):
    """A build, then a runner that TensorRT refuses: its error names TensorRT's reason."""
    built = build_engine(relu_onnx(tmp_path / "r.onnx"), BuildOptions(use_timing_cache=False))
    with TensorRTRunner(built.engine_path) as runner:
        runner.infer({"input": np.ones((1, 4, 8, 8), np.float32)})
    bad = tmp_path / "bad.engine"
    bad.write_bytes(b"not a plan")
    with pytest.raises(ModelFileError, match="the plan is not a TensorRT engine of this version"):
        TensorRTRunner(bad).load()


def test_a_failed_build_after_a_runner_quotes_tensorrt(trt, tmp_path):
    built = build_engine(relu_onnx(tmp_path / "r.onnx"), BuildOptions(use_timing_cache=False))
    with TensorRTRunner(built.engine_path) as runner:
        runner.infer({"input": np.ones((1, 4, 8, 8), np.float32)})
    settings = BuilderSettings(network_flags=("STRONGLY_TYPED",), builder_flags=("FP16",))
    profile = [InputProfile("input", (1, 4, 8, 8), (1, 4, 8, 8), (1, 4, 8, 8))]
    with pytest.raises(ExportError, match="not allowed with a strongly typed network"):
        engine_from_onnx(tmp_path / "r.onnx", tmp_path / "x.engine", plan_precision("fp32", "10.3"),
                         profile, settings)
    assert not (tmp_path / "x.engine").exists()


def test_captures_are_per_operation(trt):
    logger = get_trt_logger(trt)
    error = trt.ILogger.Severity.ERROR
    with capture_log(trt) as outer:
        logger.log(error, "first")
        with capture_log(trt) as inner:
            logger.log(error, "second")
        logger.log(trt.ILogger.Severity.INFO, "below the threshold")
    with capture_log(trt) as later:
        logger.log(error, "third")
    assert outer.errors() == ["first", "second"] and inner.errors() == ["second"]
    assert later.errors() == ["third"] and later.reason() == "third"


def test_a_message_from_a_tensorrt_thread_reaches_the_open_capture(trt):
    """TensorRT may log from threads of its own, which have no capture open."""
    logger = get_trt_logger(trt)
    with capture_log(trt) as capture:
        worker = threading.Thread(target=logger.log,
                                  args=(trt.ILogger.Severity.ERROR, "from a worker"))
        worker.start()
        worker.join()
    assert capture.errors() == ["from a worker"]
