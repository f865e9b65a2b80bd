"""Raw HTTP requests to the server (http.client, keep-alive): the bytes on the wire, no client
library parsing in between, for tests where the client's own CPU or GIL time would blur what
the server does."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
CLI = "import sys\nfrom attn_export.cli import main\nmain(sys.argv[1:])\n"


def infer_body(x: np.ndarray, name: str = "input", output: str = "output",
               binary_output: bool = True) -> tuple[bytes, dict[str, str]]:
    """A binary-input infer request for one FP32 input: (body, headers)."""
    header = json.dumps({"inputs": [{"name": name, "shape": list(x.shape), "datatype": "FP32",
                                     "parameters": {"binary_data_size": x.nbytes}}],
                         "outputs": [{"name": output, "parameters": {"binary_data": binary_output}}]})
    body = header.encode() + np.ascontiguousarray(x, "<f4").tobytes()
    return body, {"Inference-Header-Content-Length": str(len(header.encode())),
                  "Content-Type": "application/octet-stream"}


def decode_output(body: bytes, headers, output: str = "output") -> np.ndarray:
    """The output of an infer response, JSON or binary."""
    n = {k.lower(): v for k, v in dict(headers).items()}.get("inference-header-content-length")
    header = json.loads(body[:int(n)] if n else body)
    entry = next(o for o in header["outputs"] if o["name"] == output)
    if "data" in entry:
        return np.asarray(entry["data"], np.float32).reshape(entry["shape"])
    return np.frombuffer(body[int(n):], "<f4").reshape(entry["shape"])


def spawn_server(repo: Path, ports: list[int], *extra: str) -> subprocess.Popen:
    """``attn-export serve`` as a process of its own (its GIL is not the test's)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", CLI, "serve", str(repo), "--http-port", str(ports[0]),
                             "--grpc-port", str(ports[1]), "--metrics-port", str(ports[2]), *extra],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/v2/health/ready")
            if conn.getresponse().status == 200:
                conn.close()
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("server did not become ready")


def stop(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        proc.terminate()
    out, _ = proc.communicate(timeout=30)
    return out
