"""The images' default command must be reachable through a published port, as Docker runs it.

``docker run -p 8000:8000`` forwards to the container's own interface in the container's own
network namespace, never to its loopback. Here the container's network is a namespace made with
``ip netns`` and joined to this one by a veth pair (link-local 169.254.78.0/30, nothing routed
beyond it); the server runs the recipe's own CMD inside it, and tritonclient asks from outside.
The CMD as it was (``serve /models``, bound to ``serve``'s default 127.0.0.1) answers inside the
namespace but not from outside: that is the defect, reproduced. The recipes' CMD answers from
outside with the right result.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from dockerfile_policy import DOCKER, instructions, parse

from attn_export.cli import main
from tests.serve.conftest import mixed_export, mixed_feed

ROOT = Path(__file__).resolve().parents[2]
HOST_IP, CTR_IP = "169.254.78.1", "169.254.78.2"


def _can_make_namespaces() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None


pytestmark = pytest.mark.skipif(not _can_make_namespaces(),
                                reason="a network namespace and a veth pair need root and iproute2")


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=30)


@pytest.fixture
def netns():
    """A network namespace with a veth pair to this one: HOST_IP here, CTR_IP inside."""
    name, host, ctr = f"attn-pytest-{os.getpid()}", f"aeh{os.getpid() % 100000}", f"aec{os.getpid() % 100000}"
    sh("ip", "netns", "add", name)
    try:
        sh("ip", "link", "add", host, "type", "veth", "peer", "name", ctr)
        sh("ip", "link", "set", ctr, "netns", name)
        sh("ip", "addr", "add", f"{HOST_IP}/30", "dev", host)
        sh("ip", "link", "set", host, "up")
        for cmd in (["ip", "addr", "add", f"{CTR_IP}/30", "dev", ctr], ["ip", "link", "set", ctr, "up"],
                    ["ip", "link", "set", "lo", "up"]):
            sh("ip", "netns", "exec", name, *cmd)
        yield name
    finally:
        subprocess.run(["ip", "link", "del", host], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    export = mixed_export(tmp_path_factory.mktemp("export") / "mixed")
    out = tmp_path_factory.mktemp("repo") / "models"
    result = CliRunner().invoke(main, ["repo", str(export), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def image_cmd(recipe: str) -> list[str]:
    return json.loads(instructions(parse((DOCKER / recipe).read_text()), "CMD")[-1])


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


class InNamespace:
    """``attn-export CMD`` (``/models`` -> the test repository) running inside ``netns``."""

    def __init__(self, netns: str, cmd: list[str], models: Path) -> None:
        args = [str(models) if a == "/models" else a for a in cmd]
        code = "import sys\nfrom attn_export.cli import main\nmain(sys.argv[1:])\n"
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
        env.pop("ATTN_EXPORT_HOST", None)
        self.netns = netns
        self.proc = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c", code, *args,
                                      "--metrics-port", "-1"], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)

    def ready_inside(self, timeout_s: float = 120) -> None:
        """Wait until the server answers on the namespace's own loopback."""
        probe = ("import sys, urllib.request\ntry:\n urllib.request.urlopen("
                 "'http://127.0.0.1:8000/v2/health/ready', timeout=2)\nexcept OSError:\n sys.exit(1)\n")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.proc.stdout.read()
            if subprocess.run(["ip", "netns", "exec", self.netns, sys.executable, "-c", probe],
                              capture_output=True).returncode == 0:
                return
            time.sleep(0.5)
        raise AssertionError("the server never became ready inside its namespace")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def test_the_former_cmd_binds_the_loopback_and_is_unreachable_from_outside(netns, models):
    server = InNamespace(netns, ["serve", "/models"], models)
    try:
        server.ready_inside()
        assert not ready(f"http://{CTR_IP}:8000")
    finally:
        server.stop()


@pytest.mark.parametrize("recipe", ["Dockerfile.jetson", "Dockerfile"])
def test_the_recipes_cmd_answers_tritonclient_through_the_containers_address(netns, models, recipe):
    import tritonclient.http as httpclient

    server = InNamespace(netns, image_cmd(recipe), models)
    try:
        server.ready_inside()
        assert ready(f"http://{CTR_IP}:8000")
        feed = mixed_feed(2)
        client = httpclient.InferenceServerClient(f"{CTR_IP}:8000")
        inputs = []
        for name, array in feed.items():
            tensor = httpclient.InferInput(name, list(array.shape), "FP16" if name == "x" else "INT64")
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        result = client.infer("mixed", inputs)
        np.testing.assert_array_equal(result.as_numpy("y"), feed["x"] + feed["x"])
        np.testing.assert_array_equal(result.as_numpy("s"), feed["idx"] + 1)
        client.close()
    finally:
        server.stop()
