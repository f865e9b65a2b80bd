"""tritonclient.grpc against the real server: every call, parity, errors with their codes."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from attn_export.runtime.compare import compare
from attn_export.runtime.golden import load_golden
from tests.serve.conftest import mixed_feed

DTYPES = {"float32": "FP32", "float16": "FP16", "int64": "INT64"}


def _inputs(feed: dict) -> list:
    out = []
    for name, value in feed.items():
        i = grpcclient.InferInput(name, list(value.shape), DTYPES[value.dtype.name])
        i.set_data_from_numpy(value)
        out.append(i)
    return out


def test_health_metadata_config(grpc, repo):
    assert grpc.is_server_live() and grpc.is_server_ready()
    assert grpc.is_model_ready("se") and grpc.is_model_ready("mixed", "1")
    meta = grpc.get_server_metadata(as_json=True)
    assert "binary_tensor_data" in meta["extensions"] and meta["name"] == "attn-export"
    m = grpc.get_model_metadata("mixed", as_json=True)
    assert m["platform"] == "onnxruntime_onnx" and m["versions"] == ["1"]
    assert [(t["name"], t["datatype"]) for t in m["inputs"]] == [("x", "FP16"), ("idx", "INT64")]
    cfg = grpc.get_model_config("se").config
    assert cfg.max_batch_size == 8 and list(cfg.input[0].dims) == [64, 32, 32]
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 2000


def test_infer_matches_golden(grpc, repo):
    for model, precision in (("se", "fp32"), ("se16", "fp16"), ("cbam", "fp32")):
        golden = load_golden(repo / model / "1" / "model.golden.npz")
        for case in golden.cases[:3]:
            result = grpc.infer(model, _inputs(case.inputs))
            assert compare(result.as_numpy("output"), case.outputs["output"], precision).passed


def test_fp16_int64_and_named_outputs(grpc):
    feed = mixed_feed(5, seed=3)
    result = grpc.infer("mixed", _inputs(feed), model_version="1", request_id="g-1",
                        outputs=[grpcclient.InferRequestedOutput("y")])
    np.testing.assert_array_equal(result.as_numpy("y"), feed["x"] * 2)
    assert result.as_numpy("s") is None and result.get_response().id == "g-1"
    both = grpc.infer("mixed", _inputs(feed))
    np.testing.assert_array_equal(both.as_numpy("s"), feed["idx"] + 1)


def test_statistics(grpc):
    grpc.infer("mixed", _inputs(mixed_feed(1)))
    stats = grpc.get_inference_statistics("mixed").model_stats[0]
    assert stats.name == "mixed" and stats.inference_count >= 1 and stats.execution_count >= 1


@pytest.mark.parametrize("call, code", [
    (lambda c: c.get_model_metadata("nope"), "StatusCode.NOT_FOUND"),
    (lambda c: c.is_model_ready("mixed", "3"), "StatusCode.NOT_FOUND"),
    (lambda c: c.infer("nope", _inputs(mixed_feed(1))), "StatusCode.NOT_FOUND"),
    (lambda c: c.infer("mixed", _inputs({"x": np.zeros((1, 4), np.float32),
                                         "idx": np.zeros((1, 3), np.int64)})), "StatusCode.INVALID_ARGUMENT"),
    (lambda c: c.infer("mixed", _inputs({"x": np.zeros((1, 5), np.float16),
                                         "idx": np.zeros((1, 3), np.int64)})), "StatusCode.INVALID_ARGUMENT"),
    (lambda c: c.infer("mixed", _inputs({"x": np.zeros((1, 4), np.float16)})), "StatusCode.INVALID_ARGUMENT"),
    (lambda c: c.infer("mixed", _inputs(mixed_feed(1)), outputs=[grpcclient.InferRequestedOutput("q")]),
     "StatusCode.INVALID_ARGUMENT"),
    (lambda c: c.infer("se", _inputs({"input": np.zeros((8, 64, 32, 32), np.float32)})
                       + _inputs({"pad": np.zeros((1 << 16,), np.float32)})),
     "StatusCode.RESOURCE_EXHAUSTED"),
], ids=["unknown-model", "unknown-version", "infer-unknown", "dtype", "shape", "missing", "output",
        "too-large"])
def test_errors_have_triton_codes_and_the_server_keeps_serving(grpc, call, code):
    with pytest.raises(InferenceServerException) as err:
        call(grpc)
    assert err.value.status() == code, err.value.message()
    assert grpc.is_server_ready()
    assert grpc.infer("mixed", _inputs(mixed_feed(1))).as_numpy("s") is not None


@pytest.mark.parametrize("arrays", [
    [np.arange(6, dtype=np.float32).reshape(2, 3)],
    [np.ones((1, 64, 32, 32), np.float16), np.array([[3, -1]], np.int64), np.array([True, False])],
    [np.zeros((0, 4), np.float32)],
], ids=["one", "mixed-dtypes", "empty"])
def test_hand_encoded_response_is_the_message_protobuf_writes(arrays):
    """The server's ModelInfer answer is assembled by hand (protobuf's serializer is slow on large
    bytes fields); it must parse to exactly the message protobuf would have written."""
    from tritonclient.grpc import service_pb2

    from attn_export.serve.protocol_grpc import encode_infer_response

    header = service_pb2.ModelInferResponse(model_name="m", model_version="1", id="r-7")
    for i, a in enumerate(arrays):
        header.outputs.add(name=f"o{i}", datatype="FP32", shape=a.shape)
    expected = service_pb2.ModelInferResponse()
    expected.CopyFrom(header)
    expected.raw_output_contents.extend(a.tobytes() for a in arrays)
    assert service_pb2.ModelInferResponse.FromString(encode_infer_response(header, arrays)) == expected
