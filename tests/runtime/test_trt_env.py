"""What ``import tensorrt`` failing means here, and what the user should do about it.

On a Jetson, JetPack's TensorRT, CUDA and GPU libraries are the host's; a container sees them only
when run with ``--runtime nvidia``. Without it the bindings fail to load libnvinfer (or are not
mounted at all), and the right advice is the runtime flag, not an apt package.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from attn_export.errors import MissingDependencyError
from attn_export.runtime import trt_env
from attn_export.runtime.jetson import jetpack_series, l4t_release
from attn_export.runtime.trt_env import import_tensorrt

R36 = "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64\n"


@pytest.fixture
def broken_tensorrt(monkeypatch, tmp_path):
    """A ``tensorrt`` whose native library is missing, as JetPack's bindings without the NVIDIA
    runtime: the import raises the dynamic loader's error."""
    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    (tmp_path / "tensorrt").mkdir()
    (tmp_path / "tensorrt" / "__init__.py").write_text(
        "raise ImportError('libnvinfer.so.10: cannot open shared object file: "
        "No such file or directory')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    return tmp_path


def _tegra(monkeypatch, tmp_path: Path, text: str | None) -> None:
    path = tmp_path / "nv_tegra_release"
    if text is not None:
        path.write_text(text)
    monkeypatch.setenv("ATTN_EXPORT_TEGRA_RELEASE", str(path))
    monkeypatch.setattr(trt_env, "in_container", lambda: False)


def test_a_jetson_without_the_nvidia_runtime_is_told_to_use_it(broken_tensorrt, monkeypatch,
                                                                tmp_path):
    _tegra(monkeypatch, tmp_path, R36)
    with pytest.raises(MissingDependencyError) as info:
        import_tensorrt()
    message = str(info.value)
    assert "--runtime nvidia" in message and "libnvinfer.so.10" in message
    assert "apt install" not in message and "\n" not in message


def test_a_jetson_container_without_the_bindings_mounted_is_told_the_same(monkeypatch, tmp_path):
    """The l4t images get the bindings from the host's CSV mounts: without the runtime there is
    no ``tensorrt`` module at all."""
    _tegra(monkeypatch, tmp_path, R36)
    monkeypatch.setattr(trt_env, "in_container", lambda: True)
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # ModuleNotFoundError
    with pytest.raises(MissingDependencyError, match="docker run --runtime nvidia"):
        import_tensorrt()


def test_elsewhere_the_install_hint_stays(broken_tensorrt, monkeypatch, tmp_path):
    _tegra(monkeypatch, tmp_path, None)
    monkeypatch.setattr(trt_env.platform, "release", lambda: "6.8.0-generic")
    with pytest.raises(MissingDependencyError, match="pip install tensorrt-cu12") as info:
        import_tensorrt()
    assert "--runtime nvidia" not in str(info.value)


@pytest.mark.parametrize("text, l4t, jetpack",
                         [(R36, "36.4.3", "6"),
                          ("# R39 (release), REVISION: 2.0, GCID: 1, BOARD: generic\n",
                           "39.2.0", "7.2"),
                          ("# R38 (release), REVISION: 2\n", "38.2.0", "7.0/7.1"),
                          ("garbage", "", "")],
                         ids=["jp6", "jp7.2", "jp7.0", "unreadable"])
def test_l4t_release_and_jetpack(tmp_path, text, l4t, jetpack):
    path = tmp_path / "nv_tegra_release"
    path.write_text(text)
    assert l4t_release(path) == l4t and jetpack_series(l4t) == jetpack
