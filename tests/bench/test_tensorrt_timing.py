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
