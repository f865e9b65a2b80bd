"""tritonclient.http against the real server: every call, numeric parity, every bad input."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from attn_export.runtime.compare import compare
from attn_export.runtime.golden import load_golden
from tests.serve.conftest import mixed_feed


def _inputs(feed: dict, binary: bool = True) -> list:
    out = []
    for name, value in feed.items():
        dtype = {"float32": "FP32", "float16": "FP16", "int64": "INT64"}[value.dtype.name]
        i = httpclient.InferInput(name, list(value.shape), dtype)
        i.set_data_from_numpy(value, binary_data=binary)
        out.append(i)
    return out


def _golden(repo, model):
    return load_golden(repo / model / "1" / "model.golden.npz")


def test_health_and_metadata(http):
    assert http.is_server_live() and http.is_server_ready()
    meta = http.get_server_metadata()
    assert {"binary_tensor_data", "model_configuration", "statistics"} <= set(meta["extensions"])
    for model in ("se", "cbam", "mixed", "se16"):
        assert http.is_model_ready(model) and http.is_model_ready(model, "1")
    m = http.get_model_metadata("mixed", "1")
    assert m["versions"] == ["1"] and m["platform"] == "onnxruntime_onnx"
    assert {(t["name"], t["datatype"], tuple(t["shape"])) for t in m["inputs"]} == \
        {("x", "FP16", (-1, 4)), ("idx", "INT64", (-1, 3))}


def test_config_is_the_repository_config(http, repo):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    cfg = http.get_model_config("se")
    assert cfg == http.get_model_config("se", "1")
    written = text_format.Parse((repo / "se" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert cfg["max_batch_size"] == written.max_batch_size == 8
    assert cfg["input"][0]["dims"] == [64, 32, 32] and cfg["platform"] == "onnxruntime_onnx"
    assert cfg["dynamic_batching"]["max_queue_delay_microseconds"] == 2000


@pytest.mark.parametrize("binary_in", [True, False], ids=["binary-in", "json-in"])
@pytest.mark.parametrize("outputs", ["omitted", "binary", "json"])
def test_infer_matches_golden(http, repo, binary_in, outputs):
    for model, precision in (("se", "fp32"), ("se16", "fp16")):
        for case in _golden(repo, model).cases[:2]:
            requested = None if outputs == "omitted" else \
                [httpclient.InferRequestedOutput("output", binary_data=outputs == "binary")]
            result = http.infer(model, _inputs(case.inputs, binary_in), outputs=requested)
            got = result.as_numpy("output")
            assert compare(got, case.outputs["output"], precision).passed, (model, case.name)
            assert (result.get_output("output").get("parameters", {}).get("binary_data_size") is not None) \
                == (outputs != "json")


def test_fp16_and_int64_tensors_both_ways(http):
    feed = mixed_feed(3)
    for binary in (True, False):
        result = http.infer("mixed", _inputs(feed, binary), model_version="1", request_id="r-7")
        assert result.as_numpy("y").dtype == np.float16
        np.testing.assert_array_equal(result.as_numpy("y"), feed["x"] * 2)
        np.testing.assert_array_equal(result.as_numpy("s"), feed["idx"] + 1)
        assert result.get_response()["id"] == "r-7"
    as_json = [httpclient.InferRequestedOutput(n, binary_data=False) for n in ("y", "s")]
    result = http.infer("mixed", _inputs(feed, False), outputs=as_json)
    assert "data" in result.get_output("y") and result.as_numpy("y").dtype == np.float16
    np.testing.assert_array_equal(result.as_numpy("y"), feed["x"] * 2)
    np.testing.assert_array_equal(result.as_numpy("s"), feed["idx"] + 1)
    only = http.infer("mixed", _inputs(feed), outputs=[httpclient.InferRequestedOutput("s")])
    assert only.as_numpy("y") is None and only.as_numpy("s") is not None


def test_statistics(http):
    http.infer("mixed", _inputs(mixed_feed(2)))
    stats = http.get_inference_statistics("mixed")["model_stats"][0]
    assert stats["name"] == "mixed" and stats["inference_count"] >= 2 and stats["execution_count"] >= 1
    assert stats["inference_stats"]["success"]["count"] >= 1
    assert {s["name"] for s in http.get_inference_statistics()["model_stats"]} >= {"se", "cbam"}


def _post(server, path, body: bytes, headers=None):
    request = urllib.request.Request(f"http://{server.http}{path}", data=body, headers=headers or {},
                                     method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _json_body(**overrides):
    body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP16", "data": [1, 2, 3, 4]},
                       {"name": "idx", "shape": [1, 3], "datatype": "INT64", "data": [1, 2, 3]}]}
    body.update(overrides)
    return json.dumps(body).encode()


BAD = {
    "unknown model": ("/v2/models/nope/infer", _json_body(), {}, 404),
    "unknown version": ("/v2/models/mixed/versions/7/infer", _json_body(), {}, 404),
    "escaping name": ("/v2/models/..%2F..%2Fetc/infer", _json_body(), {}, 404),
    "malformed json": ("/v2/models/mixed/infer", b"{not json", {}, 400),
    "wrong dtype": ("/v2/models/mixed/infer", _json_body(inputs=[
        {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]},
        {"name": "idx", "shape": [1, 3], "datatype": "INT64", "data": [1, 2, 3]}]), {}, 400),
    "wrong shape": ("/v2/models/mixed/infer", _json_body(inputs=[
        {"name": "x", "shape": [1, 2, 2], "datatype": "FP16", "data": [1, 2, 3, 4]},
        {"name": "idx", "shape": [1, 3], "datatype": "INT64", "data": [1, 2, 3]}]), {}, 400),
    "missing input": ("/v2/models/mixed/infer", _json_body(inputs=[
        {"name": "x", "shape": [1, 4], "datatype": "FP16", "data": [1, 2, 3, 4]}]), {}, 400),
    "extra input": ("/v2/models/mixed/infer", _json_body(inputs=[
        {"name": "x", "shape": [1, 4], "datatype": "FP16", "data": [1, 2, 3, 4]},
        {"name": "idx", "shape": [1, 3], "datatype": "INT64", "data": [1, 2, 3]},
        {"name": "z", "shape": [1], "datatype": "INT64", "data": [1]}]), {}, 400),
    "too few values": ("/v2/models/mixed/infer", _json_body(inputs=[
        {"name": "x", "shape": [1, 4], "datatype": "FP16", "data": [1, 2]},
        {"name": "idx", "shape": [1, 3], "datatype": "INT64", "data": [1, 2, 3]}]), {}, 400),
    "batch over max": ("/v2/models/mixed/infer", _json_body(inputs=[
        {"name": "x", "shape": [9, 4], "datatype": "FP16", "data": [0] * 36},
        {"name": "idx", "shape": [9, 3], "datatype": "INT64", "data": [0] * 27}]), {}, 400),
    "unknown output": ("/v2/models/mixed/infer", _json_body(outputs=[{"name": "q"}]), {}, 400),
    "bad header length": ("/v2/models/mixed/infer", _json_body(),
                          {"Inference-Header-Content-Length": "99999"}, 400),
    "binary size mismatch": ("/v2/models/mixed/infer", json.dumps({"inputs": [
        {"name": "x", "shape": [1, 4], "datatype": "FP16", "parameters": {"binary_data_size": 6}},
        {"name": "idx", "shape": [1, 3], "datatype": "INT64", "data": [1, 2, 3]}]}).encode() + b"\0" * 6,
        "header", 400),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_input_is_refused_and_the_server_keeps_serving(server, http, case):
    path, body, headers, status = BAD[case]
    if headers == "header":
        headers = {"Inference-Header-Content-Length": str(body.index(b"}]}") + 3)}
    code, text = _post(server, path, body, headers)
    assert code == status, text
    if code != 413 or text:
        error = json.loads(text)["error"]
        assert error and "\n" not in error
    assert http.is_server_ready()
    assert http.infer("mixed", _inputs(mixed_feed(1))).as_numpy("s") is not None


def test_client_errors_surface_in_tritonclient(http):
    with pytest.raises(InferenceServerException, match="unknown model"):
        http.get_model_metadata("nope")
    wrong = httpclient.InferInput("x", [1, 4], "FP32")
    wrong.set_data_from_numpy(np.zeros((1, 4), np.float32))
    with pytest.raises(InferenceServerException, match="datatype FP32"):
        http.infer("mixed", [wrong, _inputs(mixed_feed(1))[1]])


def test_metrics_port(server, http):
    http.infer("mixed", _inputs(mixed_feed(1)))
    text = urllib.request.urlopen(f"http://127.0.0.1:{server.ports['metrics_port']}/metrics").read().decode()
    for family in ("attn_serve_requests_total", "attn_serve_queue_seconds", "attn_serve_compute_seconds",
                   "attn_serve_batch_rows", "attn_serve_request_failures_total"):
        assert family in text, family
    assert 'model="mixed"' in text


def test_body_over_the_limit_is_413_before_it_is_read(server, http):
    """Refused from Content-Length alone: the client has sent only the headers."""
    import socket

    host, port = server.http.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"POST /v2/models/se/infer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (3 << 20))
        reply = b""
        while not reply.endswith(b"}"):  # the JSON error body may come in a second segment
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
        reply = reply.decode()
    assert reply.startswith("HTTP/1.1 413") and "max-request-bytes" in reply
    assert http.is_server_ready()


def test_raw_binary_request_without_a_json_header(server, repo):
    golden = _golden(repo, "se").cases[0]
    x = golden.inputs["input"]
    code, body = _post(server, "/v2/models/se/infer", x.tobytes(), {"Inference-Header-Content-Length": "0"})
    assert code == 200
    header = json.loads(body[:body.index(b"}]}") + 3])
    out = header["outputs"][0]
    assert out["shape"] == [1, 64, 32, 32] and out["parameters"]["binary_data_size"] == x.nbytes
    y = np.frombuffer(body[-x.nbytes:], np.float32).reshape(x.shape)
    assert compare(y, golden.outputs["output"], "fp32").passed
    code, text = _post(server, "/v2/models/mixed/infer", b"\0" * 8, {"Inference-Header-Content-Length": "0"})
    assert code == 400 and "single-input model" in json.loads(text)["error"]
