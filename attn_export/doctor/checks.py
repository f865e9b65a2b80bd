"""The doctor's probes: one :class:`Check` row per thing a role may need.

A probe imports its module lazily and catches whatever a broken install raises (an ImportError, an
OSError from a missing shared library, a numpy ABI error), because the point of the doctor is to
report those, not to die of them. Versions come from the imported module (``tensorrt.__version__``)
so that what is reported is what actually loads.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import platform
import sys

from attn_export.doctor import cuda, l4t
from attn_export.doctor.check_row import BAD, INFO, MISSING, OK, WARN, Check  # noqa: F401


def _import(name: str):
    """(module, None) or (None, one-line reason)."""
    try:
        return importlib.import_module(name), None
    except Exception as exc:  # noqa: BLE001 - a broken install is a finding, not a crash
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return None, f"{type(exc).__name__}: {first}"[:160]


def _dist_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_python() -> Check:
    version = platform.python_version()
    ok = sys.version_info >= (3, 10)
    return Check("python", "Python", OK if ok else BAD, f"{version} ({sys.executable})",
                 "" if ok else "attn-export needs Python >= 3.10 (JetPack 5's 3.8 is too old)")


def check_module(key: str, label: str, module: str, fix: str) -> Check:
    """A plain importable package: its ``__version__``, or why it does not import."""
    mod, error = _import(module)
    if mod is None:
        return Check(key, label, MISSING, error or "not installed", fix)
    return Check(key, label, OK, str(getattr(mod, "__version__", "?")))


def check_numpy() -> Check:
    row = check_module("numpy", "numpy", "numpy", "pip install 'numpy<2' (Jetson) or pip install numpy")
    if row.status == OK and l4t.read_l4t_release()[2] and int(row.found.split(".")[0]) >= 2:
        return Check("numpy", "numpy", WARN, row.found + " (Jetson onnxruntime wheels are built "
                     "against numpy 1.x)", "pip install 'numpy<2'")
    return row


def check_onnxruntime() -> list[Check]:
    """onnxruntime and its providers; both the CPU and GPU wheels installed shadow each other."""
    mod, error = _import("onnxruntime")
    if mod is None:
        return [Check("onnxruntime", "onnxruntime", MISSING, error or "not installed",
                      "pip install onnxruntime (or onnxruntime-gpu; Jetson: the Jetson AI Lab "
                      "index, https://pypi.jetson-ai-lab.io/jp6/cu126)")]
    providers = ", ".join(p.replace("ExecutionProvider", "") for p in mod.get_available_providers())
    rows = [Check("onnxruntime", "onnxruntime", OK, f"{mod.__version__} [{providers}]")]
    cpu, gpu = _dist_version("onnxruntime"), _dist_version("onnxruntime-gpu")
    if cpu and gpu:
        rows.append(Check("onnxruntime_wheels", "onnxruntime wheels", WARN,
                          f"onnxruntime {cpu} and onnxruntime-gpu {gpu} side by side: one "
                          "overwrites the other's files",
                          "pip uninstall -y onnxruntime onnxruntime-gpu && pip install "
                          "onnxruntime-gpu"))
    return rows


def check_tensorrt(driver_version: str | None = None) -> Check:
    """TensorRT's bindings, judged against the L4T release when this is a Jetson."""
    from attn_export.doctor import extras

    fix = extras.install_advice(*extras.needed_major(driver_version)[::2])
    trt, error = _import("tensorrt")
    if trt is None:
        return Check("tensorrt", "TensorRT", MISSING, error or "not installed", fix)
    version = str(getattr(trt, "__version__", "?"))
    _path, release, _exists = l4t.read_l4t_release()
    if release is None:
        return Check("tensorrt", "TensorRT", OK, version)
    matches = l4t.tensorrt_matches(version, release)
    if matches is False:
        return Check("tensorrt", "TensorRT", BAD,
                     f"{version}, but L4T {release.version} ships TensorRT {release.tensorrt}",
                     f"use JetPack {release.jetpack}'s TensorRT {release.tensorrt} "
                     "(uninstall the pip tensorrt wheel)")
    note = "matches L4T" if matches else "no known TensorRT for this L4T"
    return Check("tensorrt", "TensorRT", OK, f"{version} ({note} {release.version})")


def check_l4t() -> Check:
    path, release, exists = l4t.read_l4t_release()
    if not exists:
        return Check("l4t", "L4T (Jetson)", INFO, f"not a Jetson ({path} absent)")
    if release is None:
        return Check("l4t", "L4T (Jetson)", WARN, f"{path} unreadable",
                     "mount the host's /etc/nv_tegra_release read-only into the container")
    jetpack = f"JetPack {release.jetpack}" if release.jetpack else "JetPack unknown"
    return Check("l4t", "L4T (Jetson)", OK, f"r{release.version} ({jetpack})")


def check_cuda(driver: cuda.CudaDriver | None = None) -> list[Check]:
    """Driver version, runtime version, every GPU with its compute capability, the TensorRT extra
    this machine needs and whether the installed CUDA majors agree with it."""
    from attn_export.doctor import extras

    driver = driver or cuda.probe_driver()
    fix = ("Jetson: docker run --runtime nvidia; x86: install the NVIDIA driver and run with "
           "--gpus all")
    if driver.version is None:
        rows = [Check("cuda_driver", "CUDA driver", MISSING, driver.error or "not found", fix)]
    else:
        rows = [Check("cuda_driver", "CUDA driver", OK, f"CUDA {driver.version}")]
    if driver.gpus:
        found = "; ".join(f"{g.index}: {g.name} (sm {g.compute_capability})" for g in driver.gpus)
        rows.append(Check("gpu", "GPU", OK, found))
    else:
        rows.append(Check("gpu", "GPU", MISSING, "no CUDA device visible" if driver.version else
                          "no driver", fix))
    runtime = cuda.probe_runtime()
    rows.append(Check("cuda_runtime", "CUDA runtime", OK if runtime else INFO,
                      f"libcudart {runtime}" if runtime else "no libcudart found"))
    rows.append(check_cuda_python(driver.version))
    rows.append(extras.check_tensorrt_extra(driver.version))
    return rows


def check_cuda_python(driver_version: str | None) -> Check:
    """cuda-python gives TensorRT device memory without torch; its major must fit the driver."""
    from attn_export.doctor import extras

    version = _dist_version("cuda-python") or _dist_version("cuda-bindings")
    major_needed, _where, jetson = extras.needed_major(driver_version)
    fix = extras.install_advice(major_needed, jetson)
    if version is None:
        return Check("cuda_python", "cuda-python", MISSING, "not installed", fix)
    major = int(version.split(".")[0])
    if driver_version and major > int(driver_version.split(".")[0]):
        return Check("cuda_python", "cuda-python", WARN,
                     f"{version}: major {major} is newer than the driver's CUDA {driver_version}",
                     fix)
    return Check("cuda_python", "cuda-python", OK, f"{version} (major {major})")


def check_torch() -> list[Check]:
    """torch (exports need it) and whether it has CUDA (device memory for TensorRT validation)."""
    torch, error = _import("torch")
    if torch is None:
        fix = "pip install torch (CPU: --index-url https://download.pytorch.org/whl/cpu)"
        return [Check("torch", "torch", MISSING, error or "not installed", fix),
                Check("torch_cuda", "torch CUDA", MISSING, "no torch",
                      "a CUDA build of torch, or cuda-python, for engine validation")]
    built = torch.version.cuda
    available = bool(built) and torch.cuda.is_available()
    rows = [Check("torch", "torch", OK, torch.__version__)]
    if available:
        rows.append(Check("torch_cuda", "torch CUDA", OK, f"CUDA {built}, device available"))
    else:
        found = f"built with CUDA {built}, no device" if built else "CPU build"
        rows.append(Check("torch_cuda", "torch CUDA", MISSING, found,
                          "a CUDA build of torch with a visible GPU, or cuda-python"))
    return rows


def check_simplifiers() -> list[Check]:
    return [check_module("onnxslim", "onnxslim", "onnxslim", "pip install onnxslim"),
            check_module("onnxsim", "onnxsim", "onnxsim",
                         "pip install onnxsim (optional; no wheel for Python 3.8 / JetPack 5)")]


SERVE_MODULES = (("starlette", "starlette"), ("uvicorn", "uvicorn"), ("grpc", "grpcio"),
                 ("prometheus_client", "prometheus-client"), ("tritonclient.grpc", "tritonclient"))


def check_serve_stack() -> Check:
    """The HTTP/gRPC/metrics server's packages (the ``serve`` extra), as one row."""
    found, missing = [], []
    for module, dist in SERVE_MODULES:
        if _import(module)[0] is None:
            missing.append(dist)
        else:
            found.append(f"{dist} {_dist_version(dist) or '?'}")
    if missing:
        return Check("serve_stack", "serve stack", MISSING, "missing " + ", ".join(missing),
                     "pip install 'attn-export[serve]'")
    return Check("serve_stack", "serve stack", OK, ", ".join(found))


def run_checks() -> list[Check]:
    """Every row, in the order the table shows them."""
    rows = [check_python(), check_numpy(), check_module("onnx", "onnx", "onnx", "pip install onnx")]
    rows += check_onnxruntime()
    driver = cuda.probe_driver()
    rows += [check_l4t(), check_tensorrt(driver.version)]
    rows += check_cuda(driver)
    rows += check_torch()
    rows += check_simplifiers()
    rows.append(check_serve_stack())
    return rows
