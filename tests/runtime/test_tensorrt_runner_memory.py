"""Device memory and engines a TensorRT runner keeps, over the fake TensorRT and fake CUDA.

Buffers are resident per runner and grow only when a larger shape arrives (a ``cudaMalloc`` per
request synchronises the device, so server instances could never overlap); host copies go through
pinned staging buffers. Runners of one plan can share one deserialised engine, each with its own
execution context, as a server's instances do.
"""

from __future__ import annotations

import numpy as np
import pytest

from attn_export.export.engine_from_onnx import build_engine
from attn_export.export.trt_build.settings import BuildOptions
from attn_export.runtime import cuda_memory, engine_cache
from attn_export.runtime.cuda_memory import ResidentBuffers
from attn_export.runtime.tensorrt_runner import TensorRTRunner
from tests import fake_tensorrt
from tests.relu_onnx import relu_onnx


def relu_engine(tmp_path, name="r"):
    return build_engine(relu_onnx(tmp_path / f"{name}.onnx", ("N", 4, 8, 8)),
                        BuildOptions(use_timing_cache=False, opt_shapes="1x4x8x8",
                                     max_shapes="8x4x8x8")).engine_path


@pytest.fixture
def backends(monkeypatch):
    """Every CUDA backend the runners open, in order."""
    fake_tensorrt.install(monkeypatch, "10.3.0")
    made = []

    def make(prefer="auto"):
        made.append(fake_tensorrt.FakeCuda())
        return made[-1]

    monkeypatch.setattr(cuda_memory, "cuda_backend", make)
    return made


def test_a_steady_stream_of_one_shape_allocates_once(backends, tmp_path):
    engine = relu_engine(tmp_path)
    rng = np.random.default_rng(0)
    with TensorRTRunner(engine) as runner:
        for _ in range(50):
            x = rng.standard_normal((2, 4, 8, 8)).astype(np.float32)
            np.testing.assert_array_equal(runner.infer({"input": x})["output"], np.maximum(x, 0))
        cuda = runner._cuda
        assert (cuda.allocations, cuda.pinned_allocations) == (2, 2)  # input and output, once
        assert cuda.syncs == 50  # one synchronise per request, none per copy


def test_buffers_grow_only_when_shapes_grow(backends, tmp_path):
    engine = relu_engine(tmp_path)
    with TensorRTRunner(engine) as runner:
        for batch, allocated in ((2, 2), (1, 2), (4, 4), (3, 4), (4, 4)):
            x = np.full((batch, 4, 8, 8), -1.0 + batch, np.float32)
            out = runner.infer({"input": x})["output"]
            assert out.shape == x.shape and (out == max(batch - 1.0, 0.0)).all()
            assert runner._cuda.allocations == allocated, batch
        assert len(runner._cuda.live) == 2  # the outgrown buffers were freed


def test_outputs_do_not_alias_the_staging_buffers(backends, tmp_path):
    engine = relu_engine(tmp_path)
    with TensorRTRunner(engine) as runner:
        first = runner.infer({"input": np.ones((1, 4, 8, 8), np.float32)})["output"]
        runner.infer({"input": np.full((1, 4, 8, 8), 5.0, np.float32)})
        assert (first == 1.0).all()


def test_resident_buffers_keep_capacity_in_bytes():
    cuda = fake_tensorrt.FakeCuda()
    buffers = ResidentBuffers(cuda)
    a = buffers.upload("x", np.ones((4, 4), np.float32))
    assert buffers.upload("x", np.ones((2, 4), np.float32)) == a  # smaller: same buffer
    assert buffers.upload("x", np.ones((2, 4), np.float64)) == a  # same bytes: same buffer
    assert buffers.upload("x", np.ones((5, 4), np.float32)) != a and cuda.allocations == 2
    buffers.release()
    assert not cuda.live


# --------------------------------------------------------------------------------------------------
# One engine, many contexts
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def deserialisations(backends, monkeypatch):
    trt = fake_tensorrt.fake_tensorrt("10.3.0")
    calls = []
    real = trt.Runtime.deserialize_cuda_engine

    def counting(self, serialized_engine):
        calls.append(len(bytes(serialized_engine)))
        return real(self, serialized_engine)

    monkeypatch.setattr(trt.Runtime, "deserialize_cuda_engine", counting)
    return calls


def test_server_instances_deserialise_a_plan_once(deserialisations, tmp_path):
    from attn_export.serve.backends import make_runner

    engine = relu_engine(tmp_path)
    runners = [make_runner("tensorrt", engine).load() for _ in range(4)]
    assert len(deserialisations) == 1
    contexts = {id(r._context) for r in runners}
    assert len(contexts) == 4 and len({id(r._cuda) for r in runners}) == 4
    x = np.arange(-128, 128, dtype=np.float32).reshape(1, 4, 8, 8)
    for r in runners:
        np.testing.assert_array_equal(r.infer({"input": x})["output"], np.maximum(x, 0))
    for r in runners[:3]:
        r.close()
    assert list(engine_cache.shared_engines().values()) == [1]
    runners[3].close()
    assert engine_cache.shared_engines() == {}


def test_a_rebuilt_plan_is_a_new_engine(deserialisations, tmp_path):
    engine = relu_engine(tmp_path)
    with TensorRTRunner(engine, share_engine=True):
        relu_engine(tmp_path)  # rebuilt in place while the first runner serves
        with TensorRTRunner(engine, share_engine=True):
            assert len(deserialisations) == 2


def test_unshared_runners_deserialise_each(deserialisations, tmp_path):
    engine = relu_engine(tmp_path)
    with TensorRTRunner(engine), TensorRTRunner(engine):
        assert len(deserialisations) == 2
