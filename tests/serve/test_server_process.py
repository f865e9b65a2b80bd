"""The server as a process, the way it is deployed: no torch, SIGTERM under load, --strict, a
model that fails its golden check while the others serve."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from click.testing import CliRunner

from attn_export.cli import main
from attn_export.runtime.golden import Golden, GoldenCase, load_golden, save_golden
from tests.serve.conftest import ServerThread, free_port

ROOT = Path(__file__).resolve().parents[2]
NO_TORCH = """
import sys
sys.modules['torch'] = None  # any import of torch now fails
from attn_export.cli import main
try:
    main(sys.argv[1:], standalone_mode=False)
finally:
    loaded = [m for m in ('attn_export.export.pipeline', 'attn_export.export.onnx_from_torch',
                          'attn_export.modules.factory') if m in sys.modules]
    print('EXPORT-MODULES', loaded, flush=True)
"""


def _spawn(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", NO_TORCH, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float = 60) -> httpclient.InferenceServerClient:
    client = httpclient.InferenceServerClient(url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        try:
            if client.is_server_ready():
                return client
        except Exception:  # not listening yet
            pass
        time.sleep(0.1)
    raise AssertionError("server did not become ready")


@pytest.fixture(scope="module")
def slow_batch_repo(exports, tmp_path_factory) -> Path:
    """se with a 600 ms batching window: requests sit accepted in the queue when SIGTERM comes."""
    out = tmp_path_factory.mktemp("sigterm") / "repo"
    result = CliRunner().invoke(main, ["repo", str(exports["se"]), "--out", str(out),
                                       "--max-queue-delay-us", "600000"])
    assert result.exit_code == 0, result.output
    return out


def test_sigterm_under_load_answers_every_accepted_request_without_torch(slow_batch_repo):
    ports = [free_port() for _ in range(3)]
    proc = _spawn(["serve", str(slow_batch_repo), "--http-port", str(ports[0]), "--grpc-port",
                   str(ports[1]), "--metrics-port", str(ports[2])])
    try:
        _wait_ready(f"127.0.0.1:{ports[0]}", proc)
        results: dict[int, object] = {}

        def one(k: int) -> None:
            c = grpcclient.InferenceServerClient(f"127.0.0.1:{ports[1]}")
            x = np.full((1, 64, 32, 32), float(k), np.float32)
            i = grpcclient.InferInput("input", list(x.shape), "FP32")
            i.set_data_from_numpy(x)
            try:
                results[k] = (x, c.infer("se", [i]).as_numpy("output"))
            except Exception as exc:  # recorded: the assertion below shows it
                results[k] = exc

        threads = [threading.Thread(target=one, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        time.sleep(0.3)  # all six are in the batcher's 600 ms window now
        proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(30)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "stopped: every accepted request was answered" in out
    assert "EXPORT-MODULES []" in out, out
    errors = {k: v for k, v in results.items() if isinstance(v, Exception)}
    assert len(results) == 6 and not errors, errors
    for x, y in results.values():  # SE keeps the sign pattern of a constant map: each got its own
        assert y.shape == x.shape and np.all(np.sign(y) == np.sign(x))


def test_strict_refuses_to_start_with_a_failing_model(broken_repo):
    ports = [free_port() for _ in range(3)]
    proc = _spawn(["serve", str(broken_repo), "--strict", "--http-port", str(ports[0]), "--grpc-port",
                   str(ports[1]), "--metrics-port", str(ports[2])])
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "--strict: 1 model(s) not ready" in out
    assert "golden check failed" in out


@pytest.fixture(scope="module")
def broken_repo(repo, tmp_path_factory) -> Path:
    """The session repository's se and mixed, plus se_bad whose golden outputs are doubled."""
    out = tmp_path_factory.mktemp("broken") / "repo"
    out.mkdir()
    for name in ("se", "mixed"):
        shutil.copytree(repo / name, out / name)
    bad = out / "se_bad"
    shutil.copytree(repo / "se", bad)
    text = (bad / "config.pbtxt").read_text().replace('name: "se"', 'name: "se_bad"')
    (bad / "config.pbtxt").write_text(text)
    gold = load_golden(bad / "1" / "model.golden.npz")
    save_golden(bad / "1" / "model.golden.npz", Golden(
        [GoldenCase(c.name, c.inputs, {k: v * 2 + 1 for k, v in c.outputs.items()}) for c in gold.cases],
        gold.meta))
    return out


def test_failing_model_is_not_ready_with_its_reason_and_the_others_serve(broken_repo):
    srv = ServerThread(broken_repo).start()
    try:
        http = httpclient.InferenceServerClient(srv.http)
        assert not http.is_model_ready("se_bad") and http.is_model_ready("se")
        assert not http.is_server_ready()  # Triton's strict readiness: every model ready
        state = {m["name"]: m for m in srv.server.core.index()}
        assert "golden check failed" in state["se_bad"]["reason"]
        x = np.zeros((1, 64, 32, 32), np.float32)
        i = httpclient.InferInput("input", list(x.shape), "FP32")
        i.set_data_from_numpy(x)
        assert http.infer("se", [i]).as_numpy("output").shape == x.shape
        with pytest.raises(Exception, match="not ready: golden check failed"):
            http.infer("se_bad", [i])
        assert http.get_model_config("se_bad")["name"] == "se_bad"
        http.close()
    finally:
        srv.stop()


def test_help_and_import_do_not_load_the_server_stack():
    code = ("import sys; sys.modules['torch'] = None\n"
            "from click.testing import CliRunner\nfrom attn_export.cli import main\n"
            "assert CliRunner().invoke(main, ['--help']).exit_code == 0\n"
            "heavy = [m for m in ('starlette', 'uvicorn', 'grpc', 'prometheus_client', 'tritonclient')"
            " if m in sys.modules]\nassert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.parametrize("flag", ["--http-port", "--grpc-port", "--metrics-port"])
def test_busy_port_is_one_line_and_exit_1(repo, tmp_path, flag):
    import socket

    shutil.copytree(repo / "mixed", tmp_path / "mixed")

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        ports = {"--http-port": free_port(), "--grpc-port": free_port(), "--metrics-port": free_port()}
        ports[flag] = busy.getsockname()[1]
        args = [x for kv in ports.items() for x in (kv[0], str(kv[1]))]
        result = CliRunner().invoke(main, ["serve", str(tmp_path), *args])
    assert result.exit_code == 1, result.output
    assert "error: cannot" in result.output and f"pass {flag}" in result.output
    assert "Traceback" not in result.output
