"""CUDA driver, runtime and GPU, read through ctypes so that neither torch nor cuda-python is needed.

The doctor must answer on the torch-free Jetson image and on a workstation with no CUDA at all, so
it asks the libraries themselves: ``libcuda`` (the driver; on Jetson the NVIDIA runtime mounts it
from the host) for its version and each GPU's name and compute capability, ``libcudart`` for the
runtime version. Each probe returns a value or the reason it could not.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

DRIVER_NAMES = ("libcuda.so.1", "libcuda.so", "nvcuda.dll")
RUNTIME_NAMES = ("libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0",
                 "/usr/local/cuda/lib64/libcudart.so")
_CC_MAJOR, _CC_MINOR = 75, 76  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR / _MINOR


@dataclass(frozen=True)
class Gpu:
    """One visible CUDA device."""

    index: int
    name: str
    compute_capability: str


@dataclass(frozen=True)
class CudaDriver:
    """The driver's CUDA version (``12.6``) and the GPUs it sees, or why it could not be read."""

    version: str | None
    gpus: tuple[Gpu, ...] = ()
    error: str | None = None


def _load(names: tuple[str, ...]) -> ctypes.CDLL | None:
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


def _cuda_version(encoded: int) -> str:
    """CUDA encodes 12.6 as 12060."""
    return f"{encoded // 1000}.{(encoded % 1000) // 10}"


def probe_driver() -> CudaDriver:
    """The CUDA driver's version and every GPU's name and compute capability."""
    lib = _load(DRIVER_NAMES)
    if lib is None:
        return CudaDriver(None, error="libcuda not found (no NVIDIA driver, or the container runs "
                                      "without --gpus all / --runtime nvidia)")
    version = ctypes.c_int()
    if lib.cuDriverGetVersion(ctypes.byref(version)) != 0:
        return CudaDriver(None, error="cuDriverGetVersion failed")
    status = lib.cuInit(0)
    if status != 0:
        return CudaDriver(_cuda_version(version.value), error=f"cuInit failed (CUresult {status}): "
                                                               "no usable GPU")
    count = ctypes.c_int()
    lib.cuDeviceGetCount(ctypes.byref(count))
    return CudaDriver(_cuda_version(version.value),
                      tuple(_gpu(lib, i) for i in range(count.value)))


def _gpu(lib: ctypes.CDLL, index: int) -> Gpu:
    device, major, minor = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
    name = ctypes.create_string_buffer(256)
    lib.cuDeviceGet(ctypes.byref(device), index)
    lib.cuDeviceGetName(name, len(name), device)
    lib.cuDeviceGetAttribute(ctypes.byref(major), _CC_MAJOR, device)
    lib.cuDeviceGetAttribute(ctypes.byref(minor), _CC_MINOR, device)
    return Gpu(index, name.value.decode(errors="replace"), f"{major.value}.{minor.value}")


def _pip_runtime_names() -> tuple[str, ...]:
    """libcudart from the ``nvidia-cuda-runtime-cu12`` wheel (what a CUDA torch from PyPI uses)."""
    import importlib.util
    from pathlib import Path

    try:
        spec = importlib.util.find_spec("nvidia.cuda_runtime")
    except (ImportError, ValueError):
        return ()
    if spec is None or not spec.submodule_search_locations:
        return ()
    return tuple(str(p) for loc in spec.submodule_search_locations
                 for p in sorted(Path(loc, "lib").glob("libcudart.so*")))


def probe_runtime() -> str | None:
    """The CUDA runtime (libcudart) version, e.g. ``12.6``, or None when no libcudart loads."""
    lib = _load(RUNTIME_NAMES + _pip_runtime_names())
    if lib is None:
        return None
    version = ctypes.c_int()
    if lib.cudaRuntimeGetVersion(ctypes.byref(version)) != 0:
        return None
    return _cuda_version(version.value)
