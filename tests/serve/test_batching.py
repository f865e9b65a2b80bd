"""Dynamic batching under real concurrent load: every response is correct and is its own;
a full queue answers 503 / UNAVAILABLE at once; a vanished client costs nothing."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from click.testing import CliRunner
from tritonclient.utils import InferenceServerException

from attn_export.cli import main
from attn_export.runtime.onnxruntime_runner import OnnxRuntimeRunner
from tests.serve.conftest import ServerThread, mixed_feed, slow_export


def _http_inputs(feed):
    out = []
    for name, value in feed.items():
        i = httpclient.InferInput(name, list(value.shape), {"float32": "FP32", "float16": "FP16",
                                                            "int64": "INT64"}[value.dtype.name])
        i.set_data_from_numpy(value)
        out.append(i)
    return out


def test_concurrent_load_over_two_models_is_batched_and_correct(server, repo):
    """48 requests each to se and mixed from 16 threads (HTTP and gRPC): each answer equals the
    in-process result for that request's own input, and the batcher joined requests."""
    se = OnnxRuntimeRunner(repo / "se" / "1" / "model.onnx").load()
    before = server.server.core.models["se"].stats.execution_count
    failures: list[str] = []

    def client(k: int) -> None:
        rng = np.random.default_rng(k)
        use_grpc = k % 2 == 0
        c = grpcclient.InferenceServerClient(server.grpc) if use_grpc else \
            httpclient.InferenceServerClient(server.http)
        mod = grpcclient if use_grpc else httpclient
        try:
            for j in range(6):
                rows = 1 + (k + j) % 2
                x = rng.standard_normal((rows, 64, 32, 32)).astype(np.float32)
                i = mod.InferInput("input", list(x.shape), "FP32")
                i.set_data_from_numpy(x)
                got = c.infer("se", [i], request_id=f"{k}-{j}")
                want = se.infer({"input": x})["output"]
                if got.as_numpy("output").shape != want.shape or \
                        not np.allclose(got.as_numpy("output"), want, atol=1e-5):
                    failures.append(f"se {k}-{j}: wrong rows")
                feed = mixed_feed(rows, seed=1000 * k + j)
                ins = []
                for name, value in feed.items():
                    t = mod.InferInput(name, list(value.shape), "FP16" if name == "x" else "INT64")
                    t.set_data_from_numpy(value)
                    ins.append(t)
                m = c.infer("mixed", ins)
                if not (np.array_equal(m.as_numpy("y"), feed["x"] * 2)
                        and np.array_equal(m.as_numpy("s"), feed["idx"] + 1)):
                    failures.append(f"mixed {k}-{j}: wrong rows")
        except Exception as exc:  # reported below with the request that failed
            failures.append(f"client {k}: {exc}")
        finally:
            c.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not failures, failures[:5]
    stats = server.server.core.models["se"].stats
    executed = stats.execution_count - before
    assert executed < 96, f"no request was joined into a batch ({executed} executions for 96)"
    assert max(stats.batches) <= 8
    executions = server.server.core.models["se"].batcher.executions
    assert len(executions) == 2 and min(executions) > 0, executions  # both instances worked


@pytest.fixture(scope="module")
def tight_server(tmp_path_factory):
    """A slow model with a queue of one and batches of one: of eight simultaneous requests, one
    runs, one waits, and the others must be refused at once."""
    root = tmp_path_factory.mktemp("tight")
    out = root / "repo"
    result = CliRunner().invoke(main, ["repo", str(slow_export(root / "slow")), "--out", str(out),
                                       "--max-queue-size", "1", "--max-batch", "1"])
    assert result.exit_code == 0, result.output
    srv = ServerThread(out).start()
    yield srv
    srv.stop()


def test_full_queue_is_refused_at_once(tight_server):
    x = np.random.default_rng(0).standard_normal((1, 1536)).astype(np.float32)
    barrier = threading.Barrier(8)
    outcomes: list[object] = []

    def one() -> None:
        client = grpcclient.InferenceServerClient(tight_server.grpc)
        i = grpcclient.InferInput("x", list(x.shape), "FP32")
        i.set_data_from_numpy(x)
        barrier.wait()
        started = time.perf_counter()
        try:
            client.infer("slow", [i])
            outcomes.append("ok")
        except InferenceServerException as exc:
            outcomes.append((exc, time.perf_counter() - started))
        client.close()

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    refused = [o for o in outcomes if o != "ok"]
    assert len(outcomes) == 8 and refused and outcomes.count("ok") >= 1, outcomes
    assert all(e.status() == "StatusCode.UNAVAILABLE" and "queue full" in e.message() for e, _ in refused)
    assert httpclient.InferenceServerClient(tight_server.http).is_server_ready()


def test_full_queue_over_http_is_503(tight_server):
    x = np.random.default_rng(0).standard_normal((1, 1536)).astype(np.float32)
    statuses = []
    threads = []

    def one() -> None:
        c = httpclient.InferenceServerClient(tight_server.http)
        try:
            c.infer("slow", _http_inputs({"x": x}))
            statuses.append("200")
        except InferenceServerException as exc:
            statuses.append(exc.status())
        c.close()

    for _ in range(8):
        threads.append(threading.Thread(target=one))
        threads[-1].start()
    for t in threads:
        t.join(60)
    assert "200" in statuses and "503" in statuses and set(statuses) <= {"200", "503"}, statuses


def test_client_disconnecting_mid_request(server, http):
    header = b'{"inputs":[{"name":"input","shape":[8,64,32,32],"datatype":"FP32",' \
             b'"parameters":{"binary_data_size":2097152}}]}'
    host, port = server.http.split(":")
    for send_all in (False, True):  # half a body; then a whole one, hanging up before the answer
        with socket.create_connection((host, int(port))) as s:
            body = header + b"\0" * (2097152 if send_all else 1000)
            s.sendall(b"POST /v2/models/se/infer HTTP/1.1\r\nHost: x\r\n"
                      b"Inference-Header-Content-Length: %d\r\nContent-Length: %d\r\n\r\n"
                      % (len(header), len(header) + 2097152) + body)
    x = np.ones((1, 64, 32, 32), np.float32)
    assert http.is_server_ready()
    assert http.infer("se", _http_inputs({"input": x})).as_numpy("output").shape == x.shape
