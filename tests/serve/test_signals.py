"""``docker stop`` as Docker does it: the server is PID 1 of its own PID namespace (no init), so a
signal it has no handler for is ignored, and Docker kills it 10 s after SIGTERM. SIGTERM must end
the process promptly while models load and while it serves."""

from __future__ import annotations

import os
import queue
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
from click.testing import CliRunner

from attn_export.cli import main
from attn_export.runtime.golden import Golden, GoldenCase, save_golden
from tests.serve.conftest import free_port, slow_export

ROOT = Path(__file__).resolve().parents[2]
DOCKER_STOP_TIMEOUT_S = 10.0
SERVE = "import sys\nfrom attn_export.cli import main\nmain(sys.argv[1:])\n"


def _unshare_prefix() -> list[str]:
    """A PID namespace of its own (and a user namespace, so it also runs as a non-root uid)."""
    prefix = ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--mount-proc"]
    if shutil.which("unshare") is None or subprocess.run([*prefix, "true"], capture_output=True).returncode:
        pytest.skip("unshare cannot make a PID namespace here (util-linux missing or user namespaces off)")
    return prefix


class Pid1Server:
    """``attn-export serve`` as PID 1 of a fresh PID namespace; its output is read line by line."""

    def __init__(self, repo: Path, *extra: str) -> None:
        self.ports = [free_port() for _ in range(3)]
        args = ["serve", str(repo), "--http-port", str(self.ports[0]), "--grpc-port", str(self.ports[1]),
                "--metrics-port", str(self.ports[2]), *extra]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen([*_unshare_prefix(), sys.executable, "-c", SERVE, *args], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)

    def wait_for(self, text: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.05)
            except queue.Empty:
                assert self.proc.poll() is None, "".join(self.seen)
                continue
            self.seen.append(line)
            if text in line:
                return
        raise AssertionError(f"no line with {text!r} in {timeout} s: {''.join(self.seen)}")

    def pid1(self) -> int:
        """The server's PID as this namespace sees it (the child of ``unshare``)."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        for _ in range(200):
            pids = children.read_text().split()
            if pids:
                return int(pids[0])
            time.sleep(0.01)
        raise AssertionError("unshare started no child")

    def terminate_and_time(self, timeout: float) -> float:
        """SIGTERM to the server (PID 1 inside); seconds until the process is gone."""
        os.kill(self.pid1(), signal.SIGTERM)
        started = time.monotonic()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        return time.monotonic() - started

    def output(self) -> str:
        time.sleep(0.05)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return "".join(self.seen)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture(scope="module")
def slow_load_repo(tmp_path_factory) -> Path:
    """A model whose load takes seconds: its golden check runs 600 matrix chains, one row each."""
    root = tmp_path_factory.mktemp("slowload")
    export = slow_export(root / "slow", width=1536, depth=6)
    out = root / "repo"
    assert CliRunner().invoke(main, ["repo", str(export), "--out", str(out)]).exit_code == 0
    import onnx.numpy_helper

    w = onnx.numpy_helper.to_array(onnx.load(str(export / "slow.onnx")).graph.initializer[0])
    rng = np.random.default_rng(1)
    cases = []
    for k in range(600):
        x = rng.standard_normal((1, w.shape[0])).astype(np.float32)
        y = x
        for _ in range(6):
            y = y @ w
        cases.append(GoldenCase(f"c{k}", {"x": x}, {"y": y}))
    save_golden(out / "slow" / "1" / "model.golden.npz", Golden(cases, {"cases": [c.name for c in cases]}))
    return out


def test_sigterm_while_models_load_exits_at_once(slow_load_repo):
    server = Pid1Server(slow_load_repo)
    try:
        server.wait_for("loading 1 model(s)")
        time.sleep(0.2)  # inside the golden check now (it takes seconds)
        took = server.terminate_and_time(timeout=DOCKER_STOP_TIMEOUT_S)
        out = server.output()
        assert server.proc.returncode == 0, out
        assert took < 2.0, f"took {took:.1f} s after SIGTERM: {out}"
        assert "stopped while loading" in out and "ready" not in out.split("loading 1 model(s)")[1], out
    finally:
        server.kill()


@pytest.fixture(scope="module")
def minute_window_repo(exports, tmp_path_factory) -> Path:
    """se with a 60 s batching window: an accepted request waits a minute unless shutdown flushes."""
    out = tmp_path_factory.mktemp("window") / "repo"
    result = CliRunner().invoke(main, ["repo", str(exports["se"]), "--out", str(out),
                                       "--max-queue-delay-us", "60000000"])
    assert result.exit_code == 0, result.output
    return out


def test_sigterm_while_serving_drains_within_dockers_stop_timeout(minute_window_repo):
    server = Pid1Server(minute_window_repo)
    try:
        server.wait_for("serving 1 model(s)")
        x = np.full((1, 64, 32, 32), -2.0, np.float32)
        got: dict[str, object] = {}

        def one() -> None:
            client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.ports[1]}")
            i = grpcclient.InferInput("input", list(x.shape), "FP32")
            i.set_data_from_numpy(x)
            try:
                got["y"] = client.infer("se", [i]).as_numpy("output")
            except Exception as exc:  # the assertion below shows it
                got["y"] = exc

        thread = threading.Thread(target=one)
        thread.start()
        time.sleep(0.5)  # accepted, waiting in the 60 s window
        took = server.terminate_and_time(timeout=30)
        thread.join(10)
        out = server.output()
        assert took < DOCKER_STOP_TIMEOUT_S - 2, f"took {took:.1f} s after SIGTERM: {out}"
        assert server.proc.returncode == 0, out
        assert isinstance(got.get("y"), np.ndarray), got
        assert got["y"].shape == x.shape and np.all(got["y"] < 0)
    finally:
        server.kill()


def test_grace_bounds_the_drain_even_when_a_request_runs_longer(minute_window_repo):
    """A second SIGTERM (or the --grace deadline) does not wait for requests still running."""
    server = Pid1Server(minute_window_repo, "--grace", "1")
    try:
        server.wait_for("serving 1 model(s)")
        os.kill(server.pid1(), signal.SIGTERM)
        took = server.terminate_and_time(timeout=10)  # a second SIGTERM: exit now
        assert took < 3, server.output()
        assert server.proc.returncode == 0, server.output()
    finally:
        server.kill()
