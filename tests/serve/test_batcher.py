"""The batcher alone, on a real ONNX Runtime session: joins what fits, splits exactly, never
joins requests whose non-batch shapes differ, honours the delay and the queue bound."""

from __future__ import annotations

import asyncio

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from attn_export.runtime.onnxruntime_runner import OnnxRuntimeRunner
from attn_export.serve.batcher import Batcher
from attn_export.serve.errors import Unavailable


@pytest.fixture(scope="module")
def doubler(tmp_path_factory):
    """y = x + x over a fully dynamic [N, C, H, W] input."""
    path = tmp_path_factory.mktemp("batcher") / "double.onnx"
    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "double",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, "H", "W"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, "H", "W"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return OnnxRuntimeRunner(path).load()


def _run(batcher: Batcher, feeds: list[np.ndarray]):
    async def main():
        batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit({"x": x}, x.shape[0]) for x in feeds),
                                        return_exceptions=True)
        finally:
            await batcher.close()

    return asyncio.run(main())


def test_joins_within_the_delay_and_splits_back_exactly(doubler):
    timings = []
    batcher = Batcher([doubler], max_batch=8, max_delay_us=200_000, max_queue=64, on_batch=timings.append)
    feeds = [np.full((rows, 2, 3, 3), float(k), np.float32) for k, rows in enumerate([1, 2, 3, 1, 4])]
    results = _run(batcher, feeds)
    for x, y in zip(feeds, results):
        np.testing.assert_array_equal(y["y"], 2 * x)
    assert [t.rows for t in timings] == [7, 4]  # 1+2+3+1 fit in 8; the 4 starts the next batch
    assert all(t.ok for t in timings)


def test_different_spatial_shapes_never_share_a_batch(doubler):
    timings = []
    batcher = Batcher([doubler], max_batch=8, max_delay_us=0, max_queue=64, on_batch=timings.append)
    feeds = [np.ones((1, 2, 3, 3), np.float32), np.ones((1, 2, 5, 4), np.float32),
             np.ones((1, 2, 3, 3), np.float32)]
    results = _run(batcher, feeds)
    assert [r["y"].shape for r in results] == [x.shape for x in feeds]
    assert sum(t.requests for t in timings) == 3 and len(timings) >= 2


def test_bounded_queue_refuses_at_once(doubler):
    batcher = Batcher([doubler], max_batch=1, max_delay_us=0, max_queue=2)
    feeds = [np.ones((1, 2, 64, 64), np.float32) for _ in range(10)]
    results = _run(batcher, feeds)
    refused = [r for r in results if isinstance(r, Unavailable)]
    assert refused and all("queue full" in str(r) for r in refused)
    assert all(isinstance(r, dict) or isinstance(r, Unavailable) for r in results)
