"""--max-inflight-bytes holds: a flood of large concurrent requests (HTTP and gRPC, loopback,
bounded) keeps the server's peak RSS within the bound over its warmed-up baseline; every accepted
request gets its own correct answer, the others 503 / RESOURCE_EXHAUSTED, and the server keeps
serving afterwards."""

from __future__ import annotations

import http.client
import json
import threading
from pathlib import Path

import numpy as np
import onnx
import pytest
import tritonclient.grpc as grpcclient
from click.testing import CliRunner
from onnx import TensorProto, helper

from attn_export.cli import main
from tests.serve.conftest import free_port
from tests.serve.rawhttp import decode_output, infer_body, spawn_server, stop, wait_ready

ROW = 1 << 20
BOUND = 64 << 20
HTTP_CLIENTS, GRPC_CLIENTS, REQUEST = 6, 1, 8 << 20
SLACK = (16 << 20) + GRPC_CLIENTS * 2 * REQUEST
"""What the bound cannot cover: gRPC's core receives a whole message and hands Python a copy
before any handler can refuse it (2 x the message per gRPC call in flight); Python's and the
sockets' per-request objects (16 MiB). An HTTP body is not read before it is admitted."""


def _memory(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) << 10
    return fields


@pytest.fixture(scope="module")
def big_repo(tmp_path_factory) -> Path:
    """y = 2x on rows of 4 MiB (FP32 x 1M), max_batch_size 2, two instances, a 1 ms window."""
    root = tmp_path_factory.mktemp("big")
    export = root / "big"
    export.mkdir()
    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "big",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", ROW])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", ROW])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(export / "big.onnx"))
    (export / "report.json").write_text(json.dumps({"block": "big", "files": {"onnx": "big.onnx"}}))
    result = CliRunner().invoke(main, ["repo", str(export), "--out", str(root / "repo"), "--max-batch", "2",
                                       "--instances", "2", "--max-queue-delay-us", "1000"])
    assert result.exit_code == 0, result.output
    return root / "repo"


def _server_pid(proc) -> int:
    return proc.pid  # spawn_server runs python directly, no shell in between


def test_flood_of_large_requests_stays_within_the_memory_bound(big_repo):
    ports = [free_port() for _ in range(3)]
    proc = spawn_server(big_repo, ports, "--max-inflight-bytes", str(BOUND), "--max-request-bytes",
                        str(REQUEST + (1 << 20)))
    inputs = [np.random.default_rng(k).standard_normal((2, ROW)).astype(np.float32)
              for k in range(4)]  # 8 MiB each, in and out
    expected = [2 * x for x in inputs]
    counts = {"ok": 0, "refused": 0, "wrong": 0, "other": []}
    lock = threading.Lock()

    def record(kind: str, detail: str = "") -> None:
        with lock:
            if kind == "other":
                counts["other"].append(detail)
            else:
                counts[kind] += 1

    def http_client(k: int, n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", ports[0], timeout=120)
        for j in range(n):
            x = (k + j) % len(inputs)
            body, headers = infer_body(inputs[x], "x", "y")
            conn.request("POST", "/v2/models/big/infer", body, headers)
            response = conn.getresponse()
            raw = response.read()
            if response.status == 200:
                ok = np.allclose(decode_output(raw, dict(response.getheaders()), "y"), expected[x], atol=1e-5)
                record("ok" if ok else "wrong")
            elif response.status == 503:
                record("refused")
            else:
                record("other", f"HTTP {response.status} {raw[:200]!r}")
        conn.close()

    def grpc_client(k: int, n: int) -> None:
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{ports[1]}")
        for j in range(n):
            x = (k + j) % len(inputs)
            i = grpcclient.InferInput("x", list(inputs[x].shape), "FP32")
            i.set_data_from_numpy(inputs[x])
            try:
                y = client.infer("big", [i]).as_numpy("y")
                record("ok" if np.allclose(y, expected[x], atol=1e-5) else "wrong")
            except Exception as exc:  # sorted by status below
                status = getattr(exc, "status", lambda: "")()
                record("refused" if status == "StatusCode.RESOURCE_EXHAUSTED" else "other",
                       f"gRPC {status} {exc}")
        client.close()

    try:
        wait_ready(ports[0], proc)
        http_client(0, 3)  # warm up both paths: allocator pools, thread stacks, gRPC channels
        grpc_client(0, 3)
        Path(f"/proc/{_server_pid(proc)}/clear_refs").write_text("5")  # peak RSS := current RSS
        baseline = _memory(_server_pid(proc))["VmRSS"]
        counts.update(ok=0, refused=0)
        threads = [threading.Thread(target=http_client, args=(k, 5)) for k in range(HTTP_CLIENTS)]
        threads += [threading.Thread(target=grpc_client, args=(k, 5)) for k in range(GRPC_CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        peak = _memory(_server_pid(proc))["VmHWM"]
        before = counts["ok"]
        http_client(1, 1)  # still serving
        grpc_client(2, 1)
        assert counts["ok"] == before + 2, counts
    finally:
        out = stop(proc)
    grown = peak - baseline
    assert not counts["other"] and not counts["wrong"], (counts, out[-2000:])
    assert counts["refused"] > 0 and counts["ok"] > 0, counts  # the flood did exceed the bound
    assert grown <= BOUND + SLACK, (f"peak RSS grew {grown >> 20} MiB over the {baseline >> 20} MiB "
                                    f"baseline; bound {BOUND >> 20} MiB + {SLACK >> 20} MiB slack", counts)


def test_a_json_body_is_refused_on_its_declared_size_before_it_is_read(repo):
    """4 MiB of JSON numbers become ~40 MiB of Python floats: over a 32 MiB bound, the server
    answers 413 from the headers alone (no body byte is sent here), and the same size sent as
    binary tensors is admitted."""
    import socket

    from tests.serve.conftest import ServerThread

    srv = ServerThread(repo, max_request_bytes=8 << 20, max_inflight_bytes=32 << 20).start()
    try:
        with socket.create_connection(("127.0.0.1", srv.ports["http_port"]), timeout=5) as sock:
            sock.sendall(b"POST /v2/models/se/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                         b"\r\nContent-Length: 4194304\r\n\r\n")
            answer = b""
            while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < int(
                    answer.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0]):
                chunk = sock.recv(65536)
                assert chunk, answer
                answer += chunk
            answer = answer.decode()
        assert answer.startswith("HTTP/1.1 413"), answer
        assert "--max-inflight-bytes" in answer and "binary" in answer
        x = np.ones((8, 64, 32, 32), np.float32)
        body, headers = infer_body(x)
        conn = http.client.HTTPConnection("127.0.0.1", srv.ports["http_port"], timeout=30)
        conn.request("POST", "/v2/models/se/infer", body, headers)
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        srv.stop()
