"""The engine bench over the project's fake TensorRT (the real runner with its two TensorRT calls
replaced, as in tests/runtime/test_tensorrt_runner.py) and a fake event loop: what runs without a
GPU (the runner checks, shape resolution, the round loop, the result) is the production code."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from click.testing import CliRunner

from attn_export.bench.run import BenchSettings
from attn_export.bench.tensorrt_timing import bench_engine
from attn_export.cli import main
from attn_export.errors import ExportError, ShapeModeError, ValidationError
from attn_export.runtime.tensorrt_runner import EngineTensor, TensorRTRunner

F32 = np.dtype(np.float32)
IO = [EngineTensor("input", True, F32, (None, 8, None, None), (1, 8, 4, 4), (4, 8, 32, 32)),
      EngineTensor("output", False, F32, (None, 8, None, None))]


class FakeEngineRunner(TensorRTRunner):
    outputs_nan = False

    def _load(self):
        self._io = list(IO)

    def _execute(self, feed):
        out = feed["input"] * 2
        return {"output": out * np.nan if self.outputs_nan else out}


class FakeLoop:
    """GPU time per launch: the floor engine 1 ms, the model 3 ms."""

    opened: list = []

    def __init__(self, engine, feed, use_cuda_graph):
        self.ms = 1.0 if "floor" in str(engine) else 3.0
        self.note = "no capture" if use_cuda_graph else ""
        self.closed = False
        FakeLoop.opened.append((str(engine), {k: v.shape for k, v in feed.items()}, self))

    def burst(self, n):
        return [self.ms / 1e3] * n

    def close(self):
        self.closed = True


def fake_floor(shape, name, precision, folder):
    return folder / "floor.engine"


def test_engine_is_timed_against_its_floor_engine(tmp_path):
    FakeLoop.opened = []
    engine = tmp_path / "m.engine"
    result = bench_engine(engine, [(2, 8, 16, 16)], BenchSettings(rounds=3, iters=4,
                          backend="tensorrt"), True, FakeLoop, FakeEngineRunner, fake_floor)
    (res,) = result.shapes
    assert res.vs_floor["model"].median == pytest.approx(3.0)
    assert res.latency["model"].p50_ms == pytest.approx(3.0)
    assert res.latency["floor"].iterations == 12
    assert result.notes == ["no capture"]
    assert all(lp.closed for *_, lp in FakeLoop.opened)
    assert {shape["input"] for _, shape, _ in FakeLoop.opened} == {(2, 8, 16, 16)}
    json.dumps(result.to_dict())


def test_engine_without_a_floor_is_still_timed(tmp_path):
    def no_builder(*_):
        raise ExportError("TensorRT builder unavailable")

    result = bench_engine(tmp_path / "m.engine", [(1, 8, 8, 8)], BenchSettings(rounds=2, iters=2,
                          backend="tensorrt"), False, FakeLoop, FakeEngineRunner, no_builder)
    assert set(result.shapes[0].latency) == {"model"} and not result.shapes[0].vs_floor
    assert result.notes == ["no floor at 1x8x8x8: TensorRT builder unavailable"]


def test_engine_shapes_outside_the_profile_and_non_finite_outputs_are_refused(tmp_path):
    settings = BenchSettings(rounds=2, iters=2, backend="tensorrt")
    with pytest.raises(ShapeModeError, match="give the shapes to time with --shapes"):
        bench_engine(tmp_path / "m.engine", [], settings, False, FakeLoop, FakeEngineRunner,
                     fake_floor)
    with pytest.raises(ValidationError, match="outside the engine's profile"):
        bench_engine(tmp_path / "m.engine", [(8, 8, 8, 8)], settings, False, FakeLoop,
                     FakeEngineRunner, fake_floor)

    class NanRunner(FakeEngineRunner):
        outputs_nan = True

    with pytest.raises(ValidationError, match="non-finite outputs at 1x8x8x8"):
        bench_engine(tmp_path / "m.engine", [(1, 8, 8, 8)], settings, False, FakeLoop, NanRunner,
                     fake_floor)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None,
                    reason="checks the message shown where TensorRT is absent")
def test_cli_engine_bench_without_tensorrt_says_how_to_install_it(tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"not a plan")
    result = CliRunner().invoke(main, ["bench", str(engine), "--use-cuda-graph"])
    assert result.exit_code == 1 and "pip install tensorrt" in result.output


# --------------------------------------------------------------------------------------------------
# EngineLoop: the engine opened the runner's way, over the fake TensorRT and a fake cuda-python
# --------------------------------------------------------------------------------------------------


class FakeCudart:
    """The cuda-python runtime calls EngineLoop makes (names, argument order and the ``(err,
    value)`` returns of ``cuda.bindings.runtime``), recording what is created and destroyed."""

    class cudaError_t:  # noqa: N801 (cuda-python's names)
        cudaSuccess = 0

    class cudaStreamCaptureMode:  # noqa: N801
        cudaStreamCaptureModeThreadLocal = 1

    def __init__(self) -> None:
        self.graphs, self.execs, self.events = set(), set(), set()
        self.destroyed: list[tuple[str, int]] = []
        self._ids = iter(range(100, 10_000))

    def cudaStreamBeginCapture(self, stream, mode):  # noqa: N802
        return (0,)

    def cudaStreamEndCapture(self, stream):  # noqa: N802
        self.graphs.add(graph := next(self._ids))
        return 0, graph

    def cudaGraphInstantiate(self, graph, flags):  # noqa: N802
        self.execs.add(exec_ := next(self._ids))
        return 0, exec_

    def cudaGraphLaunch(self, graph_exec, stream):  # noqa: N802
        return (0,)

    def cudaGraphExecDestroy(self, graph_exec):  # noqa: N802
        self.destroyed.append(("exec", graph_exec))
        return (0,)

    def cudaGraphDestroy(self, graph):  # noqa: N802
        self.destroyed.append(("graph", graph))
        return (0,)

    def cudaEventCreate(self):  # noqa: N802
        self.events.add(event := next(self._ids))
        return 0, event

    def cudaEventRecord(self, event, stream):  # noqa: N802
        return (0,)

    def cudaEventSynchronize(self, event):  # noqa: N802
        return (0,)

    def cudaEventElapsedTime(self, start, end):  # noqa: N802
        return 0, 0.5

    def cudaEventDestroy(self, event):  # noqa: N802
        self.events.discard(event)
        return (0,)


def _relu_engine(tmp_path, monkeypatch, **options):
    from attn_export.export.engine_from_onnx import build_engine
    from attn_export.export.trt_build.settings import BuildOptions
    from tests import fake_tensorrt
    from tests.relu_onnx import relu_onnx

    fake_tensorrt.install(monkeypatch, "10.13.0.35")
    relu_onnx(tmp_path / "r.onnx", ("N", 8, 4, 4))
    return build_engine(tmp_path / "r.onnx", BuildOptions(use_timing_cache=False,
                                                          opt_shapes="2x8x4x4",
                                                          max_shapes="4x8x4x4", **options)
                        ).engine_path


def test_the_loop_opens_a_version_compatible_engine(tmp_path, monkeypatch):
    """A bare trt.Runtime cannot deserialize a version-compatible plan (it needs
    engine_host_code_allowed); the loop opens engines the runner's way."""
    from attn_export.bench.tensorrt_timing import EngineLoop

    engine = _relu_engine(tmp_path, monkeypatch, version_compatible=True)
    loop = EngineLoop(engine, {"input": np.ones((2, 8, 4, 4), np.float32)}, False, FakeCudart())
    assert loop.burst(3) == [0.5e-3] * 3
    loop.close()


def test_the_loop_refuses_a_bad_plan_in_one_line(tmp_path, monkeypatch):
    from attn_export.bench.tensorrt_timing import EngineLoop
    from attn_export.errors import ModelFileError
    from tests import fake_tensorrt

    fake_tensorrt.install(monkeypatch, "10.13.0.35")
    bad = tmp_path / "bad.engine"
    bad.write_bytes(b"truncated")
    with pytest.raises(ModelFileError, match=r"cannot deserialize .*bad.engine \(the plan is not a "
                                             r"TensorRT engine of this version\)"):
        EngineLoop(bad, {"input": np.ones((1, 8, 4, 4), np.float32)}, False, FakeCudart())


def test_the_loop_checks_set_input_shape(tmp_path, monkeypatch):
    from attn_export.bench.tensorrt_timing import EngineLoop

    engine = _relu_engine(tmp_path, monkeypatch)
    with pytest.raises(ValidationError, match="refused shape 8x8x4x4 for input 'input'"):
        EngineLoop(engine, {"input": np.ones((8, 8, 4, 4), np.float32)}, False, FakeCudart())


def test_the_loop_destroys_its_cuda_graph_and_events(tmp_path, monkeypatch):
    from attn_export.bench.tensorrt_timing import EngineLoop

    engine = _relu_engine(tmp_path, monkeypatch)
    rt = FakeCudart()
    loop = EngineLoop(engine, {"input": np.ones((2, 8, 4, 4), np.float32)}, True, rt)
    assert loop.graph_exec is not None and loop.note == ""
    loop.burst(4)
    cuda = loop.cuda
    loop.close()
    assert sorted(rt.destroyed) == sorted([("exec", *rt.execs), ("graph", *rt.graphs)])
    assert not rt.events and cuda.closed and not cuda.live
