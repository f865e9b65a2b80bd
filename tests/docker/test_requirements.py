"""Each image's requirements file resolves, from PyPI, for the platform and Python the image runs.

``pip install --dry-run --only-binary=:all: --platform ... --python-version ...`` proves every pin has
a wheel there (the Jetson files for aarch64 / cp312 and cp310, JetPack 7.2's and 6's system
Python) without a device or a daemon. It reads the package index, so it skips, saying so, where
the index cannot be reached.
``--isolated`` keeps this machine's pip config (local wheel folders, mirrors) out of the answer;
the one exception is x86's CPU torch, whose own index (download.pytorch.org) is out of reach here:
PIP_FIND_LINKS, where set, supplies it, as the x86 image's wheelhouse does.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MANYLINUX = ("manylinux2014_{arch}", "manylinux_2_28_{arch}", "manylinux_2_34_{arch}")
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def index_reachable(host: str = "pypi.org") -> bool:
    try:
        socket.create_connection((host, 443), timeout=5).close()
        return True
    except OSError:
        return False


def resolve(requirements: Path, arch: str, python: str, tmp_path: Path, extra=()):
    cmd = [sys.executable, "-m", "pip", "--isolated", "install", "--dry-run", "--ignore-installed",
           "--only-binary=:all:", "--implementation", "cp", "--python-version", python,
           "--target", str(tmp_path / "target"), "-r", str(requirements), *extra]
    for tag in MANYLINUX:
        cmd += ["--platform", tag.format(arch=arch)]
    if os.environ.get("PIP_CERT"):
        cmd += ["--cert", os.environ["PIP_CERT"]]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module", autouse=True)
def needs_index():
    if not index_reachable():
        pytest.skip("pypi.org:443 is not reachable from here: resolution needs the package index")


def would_install(result) -> set[str]:
    assert result.returncode == 0, result.stderr[-2000:]
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith("Would install"))
    return set(line.split()[2:])


@pytest.mark.parametrize("jetpack, python, arch, numpy, cuda_python", [
    ("jp7", "3.12", "aarch64", "numpy-2.3.5", "cuda-python-13.2.0"),   # JetPack 7.2 (Ubuntu 24.04)
    ("jp6", "3.10", "aarch64", "numpy-1.26.4", "cuda-python-12.6.2.post1"),  # JetPack 6 (22.04)
    ("jp7", "3.13", "x86_64", "numpy-2.3.5", "cuda-python-13.2.0"),    # its stand-in: Debian trixie
    ("jp6", "3.11", "x86_64", "numpy-1.26.4", "cuda-python-12.6.2.post1"),  # stand-in: bookworm
], ids=["jp7-aarch64-cp312", "jp6-aarch64-cp310", "jp7-standin-cp313", "jp6-standin-cp311"])
def test_jetson_requirements_resolve_for_their_platform(tmp_path, jetpack, python, arch, numpy,
                                                        cuda_python):
    """Each JetPack's file for its device (aarch64, the JetPack's system Python), and for the x86
    stand-in `make docker-test` builds the same recipe on (the nearest Python Debian has)."""
    found = would_install(resolve(ROOT / f"docker/requirements-jetson-{jetpack}.txt", arch, python,
                                  tmp_path))
    assert {numpy, cuda_python} <= found, sorted(found)
    assert not any(p.startswith(("torch-", "tensorrt")) for p in found)


def test_each_jetson_cuda_python_is_its_jetpacks_cuda_major():
    """cuda-python gives TensorRT device memory: JetPack 6 is CUDA 12.6, JetPack 7.2 CUDA 13.2."""
    for jetpack, pin in (("jp6", "cuda-python==12.6."), ("jp7", "cuda-python==13.2.")):
        lines = (ROOT / f"docker/requirements-jetson-{jetpack}.txt").read_text().splitlines()
        assert any(ln.startswith(pin) for ln in lines), (jetpack, pin)


def test_x86_requirements_resolve_for_cp311_with_the_cpu_torch(tmp_path):
    links = os.environ.get("PIP_FIND_LINKS")
    extra = ["--find-links", links] if links else ["--extra-index-url", TORCH_CPU_INDEX]
    found = would_install(resolve(ROOT / "docker/requirements-x86.txt", "x86_64", "3.11", tmp_path, extra))
    assert "torch-2.13.0+cpu" in found and "onnxruntime-1.23.2" in found


def test_x86_requirements_resolve_for_cp310_the_tensorrt_base(tmp_path):
    """nvcr.io/nvidia/tensorrt:24.08-py3 runs Python 3.10. Its CPU torch wheel lives only on the
    PyTorch index, out of reach here, so this run checks everything else for cp310."""
    lines = (ROOT / "docker/requirements-x86.txt").read_text().splitlines()
    no_torch = tmp_path / "requirements-x86-no-torch.txt"
    no_torch.write_text("\n".join(ln for ln in lines if not ln.startswith("torch==")) + "\n")
    found = would_install(resolve(no_torch, "x86_64", "3.10", tmp_path))
    assert "starlette-1.7.0" in found and "cuda-python-12.9.10" in found


def test_a_pin_without_a_wheel_fails_resolution(tmp_path):
    """onnxruntime 1.24 has no cp310 wheel: the check can fail, and says why."""
    bad = tmp_path / "requirements.txt"
    bad.write_text("onnxruntime==1.24.1\n")
    result = resolve(bad, "aarch64", "3.10", tmp_path)
    assert result.returncode != 0 and "onnxruntime==1.24.1" in result.stderr


def test_every_image_carries_the_serve_extra():
    """The images' default job is `attn-export serve`: each requirements file must pin every
    package of pyproject's `serve` extra (httptools was missing once, and uvicorn failed to start
    inside the container while every resolution test passed)."""
    import re

    import tomllib

    root = Path(__file__).resolve().parents[2]
    extra = tomllib.loads((root / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]["serve"]
    wanted = {re.split(r"[\[<>=!~ ]", spec, maxsplit=1)[0].lower().replace("_", "-") for spec in extra}
    for name in ("requirements-jetson-jp7.txt", "requirements-jetson-jp6.txt",
                 "requirements-x86.txt"):
        pinned = {re.split(r"[\[=]", line, maxsplit=1)[0].strip().lower().replace("_", "-")
                  for line in (root / "docker" / name).read_text().splitlines()
                  if line.strip() and not line.startswith("#")}
        assert wanted <= pinned, f"{name} lacks {sorted(wanted - pinned)}"
