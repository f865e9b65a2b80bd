"""Fixtures for the serving tests: small real exports, a repository, a real server on loopback."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from pathlib import Path

import numpy as np
import onnx
import onnx.numpy_helper
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

from attn_export.cli import main


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def export_cli(out: Path, block: str, *extra: str) -> Path:
    result = CliRunner().invoke(main, [block, "--opset", "17", "--dynamic", "batch", "--output-dir",
                                       str(out), *extra])
    assert result.exit_code == 0, result.output
    return out


def mixed_export(out: Path, batch: str | int = "N") -> Path:
    """A two-input, two-output model in FP16 and INT64 (y = 2x, s = idx + 1): an export folder
    holding a report.json, like ``attn-export BLOCK`` writes, made from a hand-built graph."""
    out.mkdir(parents=True, exist_ok=True)
    nodes = [helper.make_node("Add", ["x", "x"], ["y"]),
             helper.make_node("Add", ["idx", "one"], ["s"])]
    graph = helper.make_graph(
        nodes, "mixed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [batch, 4]),
         helper.make_tensor_value_info("idx", TensorProto.INT64, [batch, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [batch, 4]),
         helper.make_tensor_value_info("s", TensorProto.INT64, [batch, 3])],
        [helper.make_tensor("one", TensorProto.INT64, [1], [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(out / "mixed.onnx"))
    (out / "report.json").write_text(json.dumps({"block": "mixed", "files": {"onnx": "mixed.onnx"}}))
    return out


def slow_export(out: Path, width: int = 1536, depth: int = 6) -> Path:
    """A deliberately slow model (y = x W W ... W, ``depth`` MatMuls of width x width): a real
    ONNX Runtime call of several milliseconds, so concurrent requests really queue."""
    out.mkdir(parents=True, exist_ok=True)
    w = (np.random.default_rng(0).standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
    names = ["x", *[f"h{i}" for i in range(1, depth)], "y"]
    nodes = [helper.make_node("MatMul", [a, "w"], [b]) for a, b in zip(names, names[1:])]
    graph = helper.make_graph(nodes, "slow",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", width])],
                              [onnx.numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(out / "slow.onnx"))
    (out / "report.json").write_text(json.dumps({"block": "slow", "files": {"onnx": "slow.onnx"}}))
    return out


def mixed_feed(rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((rows, 4)).astype(np.float16),
            "idx": rng.integers(-5, 5, (rows, 3)).astype(np.int64)}


@pytest.fixture(scope="session")
def exports(tmp_path_factory) -> dict[str, Path]:
    """SE (fp32 + fp16 graphs) and CBAM at 1x64x32x32, dynamic batch, plus the mixed model."""
    root = tmp_path_factory.mktemp("exports")
    return {"se": export_cli(root / "se", "se", "--precision", "fp16"),
            "cbam": export_cli(root / "cbam", "cbam"),
            "mixed": mixed_export(root / "mixed")}


@pytest.fixture(scope="session")
def repo(exports, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("repo") / "models"
    runner = CliRunner()
    for args in ([str(exports["se"]), str(exports["cbam"]), str(exports["mixed"]),
                  "--max-queue-delay-us", "2000", "--max-queue-size", "64", "--instances", "2"],):
        result = runner.invoke(main, ["repo", *args, "--out", str(out)])
        assert result.exit_code == 0, result.output
    fp16 = out.parent / "fp16"
    result = runner.invoke(main, ["repo", str(exports["se"]), "--precision", "fp16", "--name", "se16",
                                  "--out", str(fp16)])
    assert result.exit_code == 0, result.output
    (fp16 / "se16").rename(out / "se16")
    return out


class ServerThread:
    """The real server (HTTP, gRPC, metrics) on its own event loop in a thread, free ports."""

    def __init__(self, repo: Path, **options) -> None:
        from attn_export.serve.server import ServeOptions, Server

        self.ports = {k: free_port() for k in ("http_port", "grpc_port", "metrics_port")}
        self.server = Server(repo, ServeOptions(**self.ports, **options), log=lambda _m: None)
        self.loop = asyncio.new_event_loop()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.loop.run_until_complete(self.server.serve())
        except BaseException as exc:  # surfaced by start()
            self.error = exc
        finally:
            self.loop.close()

    def start(self) -> ServerThread:
        self.thread.start()
        while not self.server.started.is_set() and self.thread.is_alive():
            self.thread.join(0.02)
        if self.error:
            raise self.error
        return self

    @property
    def http(self) -> str:
        return f"127.0.0.1:{self.ports['http_port']}"

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.ports['grpc_port']}"

    def stop(self) -> None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.server.stop)
        self.thread.join(30)
        assert not self.thread.is_alive(), "server did not stop"


@pytest.fixture(scope="session")
def server(repo):
    srv = ServerThread(repo, max_request_bytes=2 << 20).start()
    yield srv
    srv.stop()


@pytest.fixture
def http(server):
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(server.http)
    yield client
    client.close()


@pytest.fixture
def grpc(server):
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(server.grpc)
    yield client
    client.close()
