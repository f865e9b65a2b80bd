"""Protocol details a real deployment meets: shapes outside an engine's profile are the client's
error (400 / INVALID_ARGUMENT, as Triton answers), IPv6 binds, keep-alive behind load balancers,
and a health probe that finds the port the server was told to use."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from click.testing import CliRunner
from onnx import TensorProto, helper

from attn_export.cli import main
from attn_export.serve.protocol_grpc import grpc_address
from tests import fake_tensorrt
from tests.serve.conftest import ServerThread, free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def plan_repo(monkeypatch, tmp_path) -> Path:
    """A Relu engine (the fake TensorRT) with dynamic H and W, profile 4x4 .. 16x16."""
    fake_tensorrt.install(monkeypatch, "10.3.0")
    from attn_export.export.engine_from_onnx import BuildOptions, build_engine

    export = tmp_path / "relu"
    export.mkdir()
    graph = helper.make_graph(
        [helper.make_node("Relu", ["input"], ["output"])], "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 4, "H", "W"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 4, "H", "W"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(export / "relu.onnx"))
    (export / "report.json").write_text(json.dumps({"block": "relu", "files": {"onnx": "relu.onnx"},
                                                    "input_shape": [1, 4, 8, 8]}))
    build_engine(export / "relu.onnx", BuildOptions(precision="fp32", use_timing_cache=False,
                                                    min_shapes="1x4x4x4", opt_shapes="2x4x8x8",
                                                    max_shapes="4x4x16x16"))
    result = CliRunner().invoke(main, ["repo", str(export), "--out", str(tmp_path / "repo")])
    assert result.exit_code == 0, result.output
    return tmp_path / "repo"


def test_shape_outside_the_engine_profile_is_the_clients_error(plan_repo):
    srv = ServerThread(plan_repo).start()
    try:
        http = httpclient.InferenceServerClient(srv.http)
        grpc = grpcclient.InferenceServerClient(srv.grpc)
        outside = np.ones((1, 4, 32, 32), np.float32)
        i = httpclient.InferInput("input", list(outside.shape), "FP32")
        i.set_data_from_numpy(outside)
        with pytest.raises(Exception) as err:
            http.infer("relu", [i])
        assert getattr(err.value, "status", lambda: None)() == "400", err.value
        assert "outside the engine's profile 1x4x4x4 .. 4x4x16x16" in str(err.value)
        g = grpcclient.InferInput("input", list(outside.shape), "FP32")
        g.set_data_from_numpy(outside)
        with pytest.raises(Exception) as err:
            grpc.infer("relu", [g])
        assert err.value.status() == "StatusCode.INVALID_ARGUMENT", err.value
        assert http.is_server_ready()
        http.close()
        grpc.close()
    finally:
        srv.stop()


def test_grpc_address_brackets_ipv6_hosts():
    assert grpc_address("::", 8001) == "[::]:8001"
    assert grpc_address("::1", 8001) == "[::1]:8001"
    assert grpc_address("[::1]", 8001) == "[::1]:8001"
    assert grpc_address("0.0.0.0", 8001) == "0.0.0.0:8001"


def _has_ipv6_loopback() -> bool:
    import socket

    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_serves_on_ipv6(repo):
    srv = ServerThread(repo, host="::1").start()
    try:
        x = np.zeros((1, 64, 32, 32), np.float32)
        grpc = grpcclient.InferenceServerClient(f"[::1]:{srv.ports['grpc_port']}")
        g = grpcclient.InferInput("input", list(x.shape), "FP32")
        g.set_data_from_numpy(x)
        assert grpc.infer("se", [g]).as_numpy("output").shape == x.shape
        conn = http.client.HTTPConnection("::1", srv.ports["http_port"], timeout=5)
        conn.request("GET", "/v2/health/ready")
        assert conn.getresponse().status == 200
        conn.close()
        grpc.close()
    finally:
        srv.stop()


def test_idle_keep_alive_connection_outlives_uvicorns_five_seconds(repo):
    """Load balancers keep idle upstream connections for 60 s (AWS ALB) and reuse them: a server
    that closes first makes the balancer's next request on it fail."""
    srv = ServerThread(repo, keep_alive_s=8.0).start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", srv.ports["http_port"], timeout=5)
        conn.request("GET", "/v2/health/ready")
        first = conn.getresponse()
        first.read()
        assert first.status == 200
        time.sleep(6)
        conn.request("GET", "/v2/health/ready")  # the same connection, after 6 idle seconds
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        srv.stop()


def test_default_keep_alive_is_above_common_balancer_idle_timeouts():
    from attn_export.serve.server import ServeOptions

    assert ServeOptions().keep_alive_s > 60  # AWS ALB 60 s, nginx upstream keepalive_timeout 60 s


def test_health_probe_reads_the_port_from_the_environment(repo, tmp_path):
    """The image's HEALTHCHECK runs ``attn-export health``; ATTN_EXPORT_HTTP_PORT, read by both
    ``serve`` and ``health``, moves the port without editing the image."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ATTN_EXPORT_HTTP_PORT": str(port),
           "ATTN_EXPORT_HOST": "0.0.0.0"}
    cli = [sys.executable, "-c", "import sys; from attn_export.cli import main; main(sys.argv[1:])"]
    probe = [*cli, "health"]
    down = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=60)
    assert down.returncode == 1 and "not answering" in down.stderr and "Traceback" not in down.stderr
    proc = subprocess.Popen([*cli, "serve", str(repo), "--grpc-port",
                             str(free_port()), "--metrics-port", "-1"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            up = subprocess.run(probe, env=env, capture_output=True, text=True, timeout=60)
            if up.returncode == 0 or time.monotonic() > deadline or proc.poll() is not None:
                break
            time.sleep(0.5)
        assert up.returncode == 0, (up.stderr, proc.poll())
        assert f"127.0.0.1:{port}" in up.stdout  # 0.0.0.0 is probed on the loopback
    finally:
        proc.terminate()
        proc.wait(30)
