"""``attn-export doctor`` as a user runs it, with each dependency present or hidden.

Each case runs the real command in a fresh interpreter. A dependency is hidden the way a machine
without it behaves (``sys.modules[name] = None`` makes its import fail); a package that cannot be
installed here is made present through its real discovery path: a ``*.dist-info`` folder that
importlib.metadata reads (onnxruntime-gpu, cuda-python), and for TensorRT, which cannot load on
this machine, a stand-in ``tensorrt`` package whose ``__version__`` is all the doctor reads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import exhaustive

ROOT = Path(__file__).resolve().parents[2]
JP62 = "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: x\n"


def doctor(*args, hide=(), extra_path=None, tegra=None):
    """Run ``attn-export doctor ARGS`` with ``hide`` unimportable; (exit code, stdout)."""
    code = ("import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in hide)
            + "from attn_export.cli import main\nmain()\n")
    env = dict(os.environ, ATTN_EXPORT_TEGRA_RELEASE=str(tegra or "/nonexistent/nv_tegra_release"))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(extra_path or ""), str(ROOT),
                                                      env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run([sys.executable, "-c", code, "doctor", *args], capture_output=True,
                          text=True, env=env, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, proc.stdout


def rows(out: str) -> dict:
    return {c["key"]: c for c in json.loads(out)["checks"]}


def fake_dist(root: Path, name: str, version: str) -> None:
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


def test_report_without_a_role_exits_0_and_names_every_component():
    code, out = doctor()
    assert code == 0
    for label in ("Python", "numpy", "onnx", "onnxruntime", "L4T (Jetson)", "TensorRT", "CUDA driver",
                  "CUDA runtime", "GPU", "cuda-python", "torch", "torch CUDA", "onnxslim", "onnxsim"):
        assert f"\n{label} " in "\n" + out, label
    assert "export: ready" in out and "build: NOT ready" in out


def test_export_is_ready_here_and_not_without_torch():
    assert doctor("--for", "export")[0] == 0
    code, out = doctor("--for", "export", hide=["torch"])
    assert code == 1
    assert "export: NOT ready (needs torch)" in out and "fix: pip install torch" in out


def test_without_torch_serve_is_still_ready():
    code, out = doctor("--for", "serve", "--json", hide=["torch"])
    assert code == 0 and json.loads(out)["roles"] == {"serve": {"ready": True, "blocking": []}}


def test_serve_needs_onnxruntime_and_its_server_stack():
    code, out = doctor("--for", "serve", "--json", hide=["onnxruntime", "uvicorn"])
    assert code == 1
    assert json.loads(out)["roles"]["serve"]["blocking"] == ["onnxruntime", "serve_stack"]
    assert rows(out)["serve_stack"]["found"] == "missing uvicorn"


def test_build_is_not_ready_without_tensorrt_or_a_gpu():
    code, out = doctor("--for", "build")
    assert code == 1
    assert "fix: pip install 'attn-export[tensorrt-cu12]' or '[tensorrt-cu13]'" in out
    assert "--runtime nvidia" in out


def test_onnxruntime_and_onnxruntime_gpu_side_by_side_are_flagged(tmp_path):
    fake_dist(tmp_path, "onnxruntime-gpu", "1.23.2")
    code, out = doctor("--json", extra_path=tmp_path)
    row = rows(out)["onnxruntime_wheels"]
    assert code == 0 and row["status"] == "warn"
    assert "onnxruntime-gpu 1.23.2 side by side" in row["found"]


def test_tensorrt_is_judged_against_the_l4t_release(tmp_path):
    tegra = tmp_path / "nv_tegra_release"
    tegra.write_text(JP62)
    (tmp_path / "tensorrt").mkdir()
    init = tmp_path / "tensorrt" / "__init__.py"
    init.write_text("__version__ = '10.3.0.30'\n")
    found = rows(doctor("--json", extra_path=tmp_path, tegra=tegra)[1])
    assert found["l4t"]["found"] == "r36.4.3 (JetPack 6.1/6.2)"
    assert found["tensorrt"] == {**found["tensorrt"], "status": "ok",
                                 "found": "10.3.0.30 (matches L4T 36.4.3)"}
    assert found["numpy"]["status"] == ("warn" if found["numpy"]["found"] >= "2" else "ok")
    init.write_text("__version__ = '10.13.0.35'\n")
    code, out = doctor("--for", "build", extra_path=tmp_path, tegra=tegra)
    assert code == 1 and "10.13.0.35, but L4T 36.4.3 ships TensorRT 10.3" in out
    assert "fix: use JetPack 6.1/6.2's TensorRT 10.3" in out


def test_an_unreadable_release_file_and_a_too_new_cuda_python(tmp_path):
    tegra = tmp_path / "nv_tegra_release"
    tegra.write_text("garbage\n")
    fake_dist(tmp_path, "cuda-python", "13.0.1")
    found = rows(doctor("--json", extra_path=tmp_path, tegra=tegra)[1])
    assert found["l4t"]["status"] == "warn"
    assert found["cuda_python"]["found"] == "13.0.1 (major 13)"


@pytest.mark.parametrize("hidden", exhaustive(["onnx", "numpy", "onnxslim"]))
def test_export_names_each_missing_package(hidden):
    code, out = doctor("--for", "export", "--json", hide=[hidden])
    assert code == 1 and hidden in json.loads(out)["roles"]["export"]["blocking"]
