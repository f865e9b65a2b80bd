"""Which TensorRT this process can use, and where: import, version, lean runtime, machine.

Kept apart from the runner because ``doctor``, ``build`` and ``bench`` ask the same questions
without running an engine. Every import of TensorRT or CUDA is lazy: this module imports with the
standard library alone.
"""

from __future__ import annotations

import platform
from pathlib import Path

from attn_export.errors import MissingDependencyError
from attn_export.runtime.cuda_memory import CUDA_PYTHON_HINT
from attn_export.runtime.jetson import is_jetson, jetpack_series, l4t_release, tegra_release_path
from attn_export.runtime.sidecar import RuntimeEnv

TRT_INSTALL_HINT = (
    "TensorRT's Python package is not importable. x86: `pip install tensorrt-cu12` for CUDA 12 "
    "(`tensorrt-cu13` for CUDA 13; plain `pip install tensorrt` now means CUDA 13); Jetson: "
    "JetPack ships it (`sudo apt install python3-libnvinfer`; create the venv with "
    f"--system-site-packages). Then {CUDA_PYTHON_HINT}"
)

JETSON_RUNTIME_HINT = (
    "TensorRT cannot be loaded on this Jetson ({reason}): JetPack's TensorRT, CUDA and GPU "
    "libraries come from the host, which a container gets only when run with the NVIDIA "
    "runtime: `docker run --runtime nvidia ...` (or set \"default-runtime\": \"nvidia\" in "
    "/etc/docker/daemon.json)"
)
"""On a Jetson in a container started without ``--runtime nvidia``, ``import tensorrt`` fails
because libnvinfer and the CUDA driver libraries are not mounted in; installing a package inside
the container is the wrong advice."""

TRT_MODULES = ("tensorrt", "tensorrt_lean", "tensorrt_dispatch")
"""The module names a TensorRT install can have: the full package (pip ``tensorrt``,
``tensorrt-cu12``, JetPack's apt bindings), the lean runtime and the dispatch runtime."""

LEAN_RUNTIME_ENV = "ATTN_EXPORT_TRT_LEAN_RUNTIME"


def in_container() -> bool:
    """Docker and Podman leave a marker file at the root of every container."""
    return Path("/.dockerenv").exists() or Path("/run/.containerenv").exists()


def import_error_hint(exc: BaseException) -> str:
    """What to do when ``import tensorrt`` fails with ``exc``.

    On a Jetson (``/etc/nv_tegra_release`` present) a missing shared library means the container
    runs without the NVIDIA runtime, which mounts JetPack's libraries; the package itself is
    installed (the image ships the bindings) and apt advice would not help.
    """
    missing_library = isinstance(exc, OSError) or ".so" in str(exc) or "libnv" in str(exc) \
        or "libcuda" in str(exc)
    if is_jetson() and (missing_library or in_container()):
        return JETSON_RUNTIME_HINT.format(reason=str(exc).strip() or type(exc).__name__)
    return TRT_INSTALL_HINT


def import_tensorrt():
    """The ``tensorrt`` module, or a MissingDependencyError saying how to get it here."""
    try:
        import tensorrt as trt
    except (ImportError, OSError) as exc:  # OSError: the bindings are there, their libraries not
        raise MissingDependencyError(import_error_hint(exc)) from exc
    return trt


def installed_trt_version() -> str | None:
    """The installed TensorRT's ``__version__`` (None when none imports). Read from the module,
    not the distribution metadata: ``tensorrt-cu12``, ``tensorrt_lean`` and JetPack's apt-installed
    bindings are all ``import tensorrt``-able (or ``tensorrt_lean``) without a ``tensorrt``
    distribution. Imported only when called."""
    import importlib

    for name in TRT_MODULES:
        try:
            module = importlib.import_module(name)
        except (ImportError, OSError):  # OSError: the bindings are there, their libraries not
            continue
        version = getattr(module, "__version__", None)
        if isinstance(version, str) and version:
            return version
    return None


def lean_runtime_path(major: int, given: str | Path | None = None) -> str:
    """The lean runtime library an ``--exclude-lean-runtime`` engine runs on: ``given``, else
    ``$ATTN_EXPORT_TRT_LEAN_RUNTIME``, else ``libnvinfer_lean.so.MAJOR`` from the pip
    ``tensorrt_lean_libs`` / ``tensorrt_libs`` folders, else that name for the dynamic loader
    (JetPack and the tar packages put it on the library path)."""
    import importlib.util
    import os

    if given:
        return str(given)
    if os.environ.get(LEAN_RUNTIME_ENV):
        return os.environ[LEAN_RUNTIME_ENV]
    name = f"libnvinfer_lean.so.{major}"
    for package in ("tensorrt_lean_libs", "tensorrt_libs"):
        spec = importlib.util.find_spec(package)
        for folder in (spec.submodule_search_locations or []) if spec else []:
            if (Path(folder) / name).is_file():
                return str(Path(folder) / name)
    return name


def probe_env(trt, backend) -> RuntimeEnv:
    """This machine as the sidecar records it: TensorRT, GPU, compute capability, CUDA, and on a
    Jetson the L4T release and JetPack series."""
    gpu, cc, cuda = backend.device()
    l4t = l4t_release() if tegra_release_path().exists() else ""
    return RuntimeEnv(tensorrt=str(trt.__version__), gpu=gpu, compute_capability=cc,
                      cuda_runtime=cuda, platform=f"{platform.system()} {platform.machine()}",
                      l4t=l4t, jetpack=jetpack_series(l4t))


def current_env(trt, memory: str = "auto") -> RuntimeEnv:
    """:func:`probe_env` with a backend opened and closed for the purpose."""
    from attn_export.runtime import cuda_memory

    backend = cuda_memory.cuda_backend(memory)
    try:
        return probe_env(trt, backend)
    finally:
        backend.close()


__all__ = ["CUDA_PYTHON_HINT", "LEAN_RUNTIME_ENV", "TRT_INSTALL_HINT", "TRT_MODULES", "current_env",
           "import_error_hint", "import_tensorrt", "installed_trt_version", "is_jetson",
           "lean_runtime_path", "probe_env"]
