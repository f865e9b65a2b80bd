"""Where the timing cache lives, and that no cache problem fails a build.

Containers run with ``--user`` get HOME=/ (no entry in the image's passwd), so ``~/.cache`` is
``/.cache``, which a non-root user cannot create. The cache is an optimisation: an unusable
default folder costs one warning line (naming the folder and the fix), and nothing about the cache
may fail a build whose engine is already committed.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from attn_export.errors import ValidationError
from attn_export.export.engine_from_onnx import build_engine
from attn_export.export.trt_build import timing_cache
from attn_export.export.trt_build.settings import BuildOptions
from attn_export.export.trt_build.timing_cache import (
    cache_dir,
    default_timing_cache_path,
    read_timing_cache,
    write_timing_cache,
)
from attn_export.runtime.sidecar import RuntimeEnv
from tests import fake_tensorrt
from tests.relu_onnx import relu_onnx

ROOT = Path(__file__).resolve().parents[2]
ENV = RuntimeEnv("10.3.0", "Orin (nvgpu)", "8.7", "12.6", "Linux aarch64")


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("ATTN_EXPORT_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "attn-export"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "attn-export"
    monkeypatch.setenv("ATTN_EXPORT_CACHE", str(tmp_path / "data"))
    assert cache_dir() == tmp_path / "data"


def test_an_unusable_default_folder_warns_and_the_build_goes_on(monkeypatch, tmp_path):
    """HOME is a file: ``~/.cache`` cannot be created, whoever runs the build (root included)."""
    fake_tensorrt.install(monkeypatch)
    (tmp_path / "home").write_text("not a folder")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ATTN_EXPORT_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    with pytest.warns(UserWarning, match=r"timing cache folder .*home/.cache/attn-export cannot "
                                         r"be used .*set ATTN_EXPORT_CACHE to a writable folder"):
        built = build_engine(relu_onnx(tmp_path / "r.onnx"), BuildOptions())
    assert built.engine_path.is_file() and built.sidecar.timing_cache["path"] is None


def test_a_named_cache_in_an_unusable_folder_is_refused_before_building(monkeypatch, tmp_path):
    fake_tensorrt.install(monkeypatch)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValidationError, match="cannot write the timing cache .*--no-timing-cache"):
        build_engine(relu_onnx(tmp_path / "r.onnx"),
                     BuildOptions(timing_cache=tmp_path / "file" / "t.cache"))
    assert not list(tmp_path.glob("*.engine"))


def test_saving_the_cache_after_the_commit_never_fails(monkeypatch, tmp_path):
    """The folder was usable before the build and is not after it (a full disk, a volume gone
    read-only): the engine stays, the cache is not saved, one warning says so."""
    fake_tensorrt.install(monkeypatch)

    def refuse(path, write):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(timing_cache, "write_atomic", refuse)
    with pytest.warns(UserWarning, match="the engine is built, but its timing cache could not be "
                                         "saved in .*ATTN_EXPORT_CACHE"):
        built = build_engine(relu_onnx(tmp_path / "r.onnx"),
                             BuildOptions(timing_cache=tmp_path / "c" / "t.cache"))
    assert built.engine_path.is_file() and built.sidecar_path.is_file()


def test_write_timing_cache_reports_instead_of_raising(tmp_path):
    (tmp_path / "file").write_text("x")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert write_timing_cache(tmp_path / "file" / "sub" / "t.cache", b"data") is False
    assert len(caught) == 1 and "could not be saved" in str(caught[0].message)
    assert write_timing_cache(tmp_path / "ok" / "t.cache", b"data") is True


BUILD_WITH_FAKE_TRT = """
import sys
from tests import fake_tensorrt
from attn_export.runtime import cuda_memory
sys.modules["tensorrt"] = fake_tensorrt.fake_tensorrt("10.3.0")
cuda_memory.cuda_backend = lambda prefer="auto": fake_tensorrt.FakeCuda()
from attn_export.cli import main
main(sys.argv[1:], prog_name="attn-export")
"""


def _home_not_writable_command(home: Path) -> tuple[list[str], str] | None:
    """A way to run the CLI with a HOME the user cannot write: HOME=/ as a non-root user, or, as
    root (who may write anywhere), a read-only filesystem mounted on HOME in a private mount
    namespace. None when neither is possible here."""
    cmd = [sys.executable, "-c", BUILD_WITH_FAKE_TRT]
    if os.geteuid() != 0:
        return cmd, "/"
    if shutil.which("unshare") is None:
        return None
    home.mkdir()
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True)
    if probe.returncode != 0:
        return None
    script = f'mount -t tmpfs -o ro,size=1m tmpfs "{home}" && exec "$@"'
    return ["unshare", "--mount", "sh", "-c", script, "sh", *cmd], str(home)


def test_cli_build_with_an_unwritable_home(tmp_path):
    """What ``docker run --user $(id -u):$(id -g)`` does: HOME=/ for a non-root user. Before, the
    cache folder's mkdir raised after the engine was committed: "internal error", exit 1."""
    found = _home_not_writable_command(tmp_path / "home")
    if found is None:
        pytest.skip("running as root without a private mount namespace: no unwritable HOME")
    cmd, home = found
    onnx_path = relu_onnx(tmp_path / "r.onnx")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": home, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([*cmd, "build", str(onnx_path), "--precision", "fp32"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "r.fp32.engine").is_file()
    lines = [line for line in out.stderr.splitlines() if "timing cache" in line]
    folder = f"{home.rstrip('/')}/.cache/attn-export"
    assert len(lines) == 1 and folder in lines[0] and "ATTN_EXPORT_CACHE" in lines[0], out.stderr
    assert "internal error" not in out.stderr + out.stdout


def test_timing_cache_is_per_trt_version_and_gpu(tmp_path, monkeypatch):
    path = default_timing_cache_path(ENV, tmp_path)
    assert path == tmp_path / "trt-10.3.0-orin-nvgpu-sm87.timing-cache"
    other = default_timing_cache_path(RuntimeEnv("10.3.0", "RTX 4090", "8.9"), tmp_path)
    assert other != path
    monkeypatch.setenv("ATTN_EXPORT_CACHE", str(tmp_path / "c"))
    assert default_timing_cache_path(ENV).parent == tmp_path / "c"


def test_timing_cache_round_trip_is_atomic(tmp_path):
    path = tmp_path / "sub" / "t.cache"
    assert read_timing_cache(path) == b""  # no cache yet: build from scratch
    write_timing_cache(path, b"\x00cache")
    assert read_timing_cache(path) == b"\x00cache"
    assert [p.name for p in path.parent.iterdir()] == ["t.cache"]  # no temp file left


def test_unreadable_timing_cache_warns_and_builds_without(tmp_path):
    (tmp_path / "dir.cache").mkdir()
    with pytest.warns(UserWarning, match="building without it"):
        assert read_timing_cache(tmp_path / "dir.cache") == b""
