"""Which ``attn-export[tensorrt-cuNN]`` extra this machine needs, and whether TensorRT, cuda-python
and the CUDA driver agree on one CUDA major.

TensorRT's pip wheels and cuda-python come per CUDA major (``tensorrt-cu12`` / ``tensorrt-cu13``,
``cuda-python`` 12.x / 13.x), and a wheel built for a newer major than the driver's does not run
(CUDA 13 wheels need an r580+ driver). The major this machine needs comes from, in order: the L4T
release of a Jetson (JetPack ships its CUDA: r36 -> 12.6, r38 -> 13.0, r39 -> 13.2; inside a
container started without ``--runtime nvidia`` the driver is not visible but the release file is),
then the driver's own CUDA version (``cuDriverGetVersion``). On a Jetson, TensorRT itself is
JetPack's (``python3-libnvinfer``), never a pip wheel, so only cuda-python is named there.
"""

from __future__ import annotations

import importlib.metadata

from attn_export.doctor import l4t
from attn_export.doctor.check_row import BAD, OK, WARN, Check

EXTRA_MAJORS = (12, 13)
"""The CUDA majors with a ``tensorrt-cuNN`` extra in pyproject.toml."""

_TRT_DISTS = ("tensorrt-cu{}", "tensorrt-cu{}-libs", "tensorrt-cu{}-bindings")


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def tensorrt_wheel_major() -> int | None:
    """The CUDA major of an installed pip TensorRT (``tensorrt-cu13`` -> 13), None if none is."""
    for major in EXTRA_MAJORS:
        if any(_version(d.format(major)) for d in _TRT_DISTS):
            return major
    return None


def cuda_python_major() -> int | None:
    version = _version("cuda-python") or _version("cuda-bindings")
    return int(version.split(".")[0]) if version else None


def extra_for(major: int) -> str:
    """The extra for a CUDA major: 12 -> tensorrt-cu12; 13 and later -> tensorrt-cu13."""
    return f"tensorrt-cu{min(max(major, EXTRA_MAJORS[0]), EXTRA_MAJORS[-1])}"


def needed_major(driver_version: str | None) -> tuple[int | None, str, bool]:
    """(CUDA major, where it was read, whether this is a Jetson) for this machine."""
    _path, release, exists = l4t.read_l4t_release()
    if release is not None and release.cuda:
        where = f"L4T r{release.version} (JetPack {release.jetpack}, CUDA {release.cuda})"
        return int(release.cuda.split(".")[0]), where, True
    if driver_version:
        return int(driver_version.split(".")[0]), f"driver CUDA {driver_version}", exists
    return None, "no CUDA driver visible", exists


def install_advice(major: int | None, jetson: bool) -> str:
    """What to install for TensorRT on this machine, as one command line."""
    if major is None:
        return ("pip install 'attn-export[tensorrt-cu12]' or '[tensorrt-cu13]' (the CUDA major "
                "of the driver: nvidia-smi shows it)")
    if jetson:
        return (f"pip install 'cuda-python>={major},<{major + 1}' (TensorRT: JetPack's "
                "python3-libnvinfer for the system python3, not a pip wheel)")
    return f"pip install 'attn-export[{extra_for(major)}]'"


def check_tensorrt_extra(driver_version: str | None) -> Check:
    """One row: the extra this machine needs, and any CUDA major that disagrees with it."""
    label = "TensorRT extra"
    major, where, jetson = needed_major(driver_version)
    advice = install_advice(major, jetson)
    driver_major = int(driver_version.split(".")[0]) if driver_version else None
    trt, cudapy = tensorrt_wheel_major(), cuda_python_major()
    if driver_major is not None and driver_major < EXTRA_MAJORS[0]:
        return Check("tensorrt_extra", label, BAD,
                     f"{where}: TensorRT 10's wheels need CUDA 12 or 13",
                     "update the NVIDIA driver (r525+ for CUDA 12, r580+ for CUDA 13)")
    for what, wheel_major in (("tensorrt-cu", trt), ("cuda-python ", cudapy)):
        if wheel_major is not None and driver_major is not None and wheel_major > driver_major:
            return Check("tensorrt_extra", label, BAD,
                         f"{what}{wheel_major} needs a CUDA {wheel_major} driver; {where}",
                         advice)
    if jetson and trt is not None:
        return Check("tensorrt_extra", label, BAD,
                     f"pip tensorrt-cu{trt} on a Jetson ({where}): JetPack's TensorRT is the one "
                     "that runs", f"pip uninstall -y tensorrt-cu{trt}; {advice}")
    if trt is not None and cudapy is not None and trt != cudapy:
        return Check("tensorrt_extra", label, BAD,
                     f"TensorRT for CUDA {trt} with cuda-python {cudapy}: one CUDA major's set",
                     advice)
    installed = trt if trt is not None else cudapy
    if major is not None and installed is not None and installed != min(major, EXTRA_MAJORS[-1]):
        wanted = f"cuda-python {major}" if jetson else f"attn-export[{extra_for(major)}]"
        return Check("tensorrt_extra", label, WARN,
                     f"CUDA {installed} wheels installed; {where} matches {wanted}", advice)
    target = (f"cuda-python {major} + JetPack's TensorRT" if jetson and major
              else f"attn-export[{extra_for(major)}]" if major else "no extra can be chosen")
    return Check("tensorrt_extra", label, OK, f"{where} -> {target}", advice)
