"""``doctor`` names the TensorRT extra for this machine's CUDA major and flags majors that disagree.

The driver's CUDA version is read the way the doctor always reads it, ``cuDriverGetVersion`` from
``libcuda.so.1`` through ctypes; here that library is a two-function C file compiled per test
(the version it reports, and ``cuInit`` answering "no device"), found through LD_LIBRARY_PATH as
the real one would be. The L4T release is a fake ``/etc/nv_tegra_release`` (the environment
variable the doctor reads), and installed wheels are ``*.dist-info`` folders importlib.metadata
reads, as in test_doctor_cli.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from attn_export.doctor.extras import extra_for

ROOT = Path(__file__).resolve().parents[2]
R36 = "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: x\n"
R38 = "# R38 (release), REVISION: 2.0, GCID: 41844464, BOARD: generic, EABI: aarch64, DATE: x\n"
R39 = "# R39 (release), REVISION: 2.0, GCID: 43000000, BOARD: generic, EABI: aarch64, DATE: x\n"
FAKE_LIBCUDA = """
int cuDriverGetVersion(int *version) { *version = %d; return 0; }
int cuInit(unsigned int flags) { (void)flags; return 100; /* CUDA_ERROR_NO_DEVICE */ }
"""


def fake_driver(folder: Path, encoded: int) -> Path:
    """A libcuda.so.1 that reports CUDA ``encoded`` (13020 = 13.2) and no device."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build the fake libcuda.so.1")
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "libcuda.c"
    source.write_text(FAKE_LIBCUDA % encoded)
    subprocess.run([compiler, "-shared", "-fPIC", "-o", str(folder / "libcuda.so.1"), str(source)],
                   check=True, capture_output=True)
    return folder


def fake_dist(root: Path, name: str, version: str) -> None:
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


def doctor(tmp_path: Path, *args, driver: int | None = None, tegra: str | None = None,
           dists=()) -> tuple[int, dict, dict]:
    """``attn-export doctor --json ARGS``: (exit code, rows by key, roles)."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    for name, version in dists:
        fake_dist(site, name, version)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]))
    env.pop("LD_LIBRARY_PATH", None)
    if driver is not None:
        env["LD_LIBRARY_PATH"] = str(fake_driver(tmp_path / f"cuda{driver}", driver))
    release = tmp_path / "nv_tegra_release"
    if tegra is not None:
        release.write_text(tegra)
    env["ATTN_EXPORT_TEGRA_RELEASE"] = str(release if tegra is not None else "/nonexistent/x")
    # cuda-python itself may be in the venv: hide it so only the fake dists speak
    code = ("import importlib.metadata as m\n_v = m.version\n"
            "def version(name):\n"
            "    if name in ('cuda-python', 'cuda-bindings') and not any("
            "p.startswith(name.replace('-', '_')) for p in __import__('os').listdir("
            f"{str(site)!r})):\n"
            "        raise m.PackageNotFoundError(name)\n"
            "    return _v(name)\n"
            "m.version = version\n"
            "from attn_export.cli import main\nmain()\n")
    proc = subprocess.run([sys.executable, "-c", code, "doctor", "--json", *args],
                          capture_output=True, text=True, env=env, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    report = json.loads(proc.stdout)
    return proc.returncode, {c["key"]: c for c in report["checks"]}, report["roles"]


@pytest.mark.parametrize("major, extra", [(12, "tensorrt-cu12"), (13, "tensorrt-cu13"),
                                          (14, "tensorrt-cu13"), (11, "tensorrt-cu12")])
def test_extra_for_each_cuda_major(major, extra):
    assert extra_for(major) == extra


@pytest.mark.parametrize("encoded, found", [
    (12080, "driver CUDA 12.8 -> attn-export[tensorrt-cu12]"),
    (13020, "driver CUDA 13.2 -> attn-export[tensorrt-cu13]"),
])
def test_the_driver_version_names_the_extra(tmp_path, encoded, found):
    _code, rows, _roles = doctor(tmp_path, driver=encoded)
    assert rows["cuda_driver"]["found"] == f"CUDA {found.split()[2]}"
    assert rows["tensorrt_extra"]["status"] == "ok"
    assert rows["tensorrt_extra"]["found"] == found
    extra = found.split("[")[1].rstrip("]")
    assert rows["tensorrt"]["fix"] == f"pip install 'attn-export[{extra}]'"


@pytest.mark.parametrize("tegra, found, cuda_python", [
    (R36, "L4T r36.4.3 (JetPack 6.1/6.2, CUDA 12.6) -> cuda-python 12 + JetPack's TensorRT", "12"),
    (R38, "L4T r38.2.0 (JetPack 7.0, CUDA 13.0) -> cuda-python 13 + JetPack's TensorRT", "13"),
    (R39, "L4T r39.2.0 (JetPack 7.2, CUDA 13.2) -> cuda-python 13 + JetPack's TensorRT", "13"),
], ids=["r36", "r38", "r39"])
def test_a_jetson_is_judged_by_its_l4t_release_without_a_visible_driver(tmp_path, tegra, found,
                                                                        cuda_python):
    """Inside a container run without --runtime nvidia the release file still says which CUDA."""
    _code, rows, _roles = doctor(tmp_path, tegra=tegra)
    assert rows["tensorrt_extra"]["found"] == found
    assert rows["tensorrt_extra"]["fix"].startswith(
        f"pip install 'cuda-python>={cuda_python},<{int(cuda_python) + 1}'")
    assert "python3-libnvinfer" in rows["tensorrt"]["fix"]


def test_cuda13_wheels_on_a_cuda12_driver_are_a_mismatch(tmp_path):
    code, rows, roles = doctor(tmp_path, "--for", "build", driver=12060,
                               dists=[("tensorrt-cu13", "10.16.1"), ("cuda-python", "13.2.0")])
    row = rows["tensorrt_extra"]
    assert code == 1 and row["status"] == "bad"
    assert row["found"] == "tensorrt-cu13 needs a CUDA 13 driver; driver CUDA 12.6"
    assert row["fix"] == "pip install 'attn-export[tensorrt-cu12]'"
    assert "tensorrt_extra" in roles["build"]["blocking"]


def test_tensorrt_and_cuda_python_of_different_majors_are_a_mismatch(tmp_path):
    _code, rows, _roles = doctor(tmp_path, driver=13020,
                                 dists=[("tensorrt-cu12", "10.13.0"), ("cuda-python", "13.2.0")])
    assert rows["tensorrt_extra"]["status"] == "bad"
    assert rows["tensorrt_extra"]["found"] == ("TensorRT for CUDA 12 with cuda-python 13: one CUDA "
                                               "major's set")


def test_cuda12_wheels_on_a_cuda13_driver_run_but_the_cu13_extra_matches(tmp_path):
    _code, rows, roles = doctor(tmp_path, driver=13020,
                                dists=[("tensorrt-cu12", "10.13.0"), ("cuda-python", "12.9.0")])
    assert rows["tensorrt_extra"]["status"] == "warn"
    assert "matches attn-export[tensorrt-cu13]" in rows["tensorrt_extra"]["found"]
    assert "tensorrt_extra" not in roles["build"]["blocking"]


def test_a_pip_tensorrt_on_a_jetson_is_flagged(tmp_path):
    _code, rows, _roles = doctor(tmp_path, tegra=R39, dists=[("tensorrt-cu13", "10.16.1")])
    assert rows["tensorrt_extra"]["status"] == "bad"
    assert rows["tensorrt_extra"]["fix"].startswith("pip uninstall -y tensorrt-cu13; ")


def test_a_driver_older_than_cuda12_cannot_take_either_extra(tmp_path):
    _code, rows, _roles = doctor(tmp_path, driver=11040)
    assert rows["tensorrt_extra"]["status"] == "bad"
    assert "r525+" in rows["tensorrt_extra"]["fix"]


def test_pyproject_has_one_extra_per_cuda_major_with_the_matching_cuda_python():
    import tomllib

    from attn_export.doctor.extras import EXTRA_MAJORS

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for major in EXTRA_MAJORS:
        pins = extras[f"tensorrt-cu{major}"]
        assert any(p.startswith(f"tensorrt-cu{major}>=") for p in pins), pins
        assert f"cuda-python>={major}.0,<{major + 1}" in pins, pins
    assert extras["tensorrt"] == extras["tensorrt-cu12"]  # the former name keeps its meaning
