"""TensorRT backend: a serialized engine behind the common Runner interface (TensorRT 10.x, 11.x).

Uses the name-based tensor API of TensorRT 10 (kept in 11): ``num_io_tensors``,
``get_tensor_name`` / ``get_tensor_mode`` / ``get_tensor_dtype`` / ``get_tensor_shape``,
``get_tensor_profile_shape``, then per call ``set_input_shape``, ``set_tensor_address`` and
``execute_async_v3``. Device memory comes from torch when it has CUDA, else from cuda-python; both
are imported lazily, so this module imports with numpy alone. Before deserializing, the engine's
sidecar (``.engine.json``) is checked against this machine's TensorRT version and GPU.

What does not need a GPU (the I/O description, the input checks, the compatibility rules) is plain
Python over :class:`EngineTensor` values and is tested without TensorRT.
"""

from __future__ import annotations

import platform
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from attn_export.errors import MissingDependencyError, ModelFileError, ValidationError
from attn_export.export.sidecar import RuntimeEnv, check_compatible, read_sidecar, sha256_file
from attn_export.runtime.base import Feed, Runner, TensorSpec

CUDA_PYTHON_HINT = (
    "`pip install 'cuda-python>=12,<13'` for CUDA 12 (JetPack 6 is CUDA 12.6; cuda-python 13 "
    "needs a CUDA 13 driver, r580+), `pip install 'cuda-python>=13,<14'` for CUDA 13 (or use "
    "a CUDA build of torch)"
)
"""cuda-python's major version must be the CUDA major the driver supports: an unpinned install
now resolves to 13.x, which fails on CUDA 12 drivers such as JetPack 6's."""

TRT_INSTALL_HINT = (
    "TensorRT's Python package is not importable. x86: `pip install tensorrt-cu12` for CUDA 12 "
    "(`tensorrt-cu13` for CUDA 13; plain `pip install tensorrt` now means CUDA 13); Jetson: "
    "JetPack ships it (`sudo apt install python3-libnvinfer`; create the venv with "
    f"--system-site-packages). Then {CUDA_PYTHON_HINT}"
)

TRT_MODULES = ("tensorrt", "tensorrt_lean", "tensorrt_dispatch")
"""The module names a TensorRT install can have: the full package (pip ``tensorrt``,
``tensorrt-cu12``, JetPack's apt bindings), the lean runtime and the dispatch runtime."""

LEAN_RUNTIME_ENV = "ATTN_EXPORT_TRT_LEAN_RUNTIME"
LOG_CAPACITY = 256
"""Messages the capturing logger keeps (the newest): enough to quote TensorRT's reason for a
failure, bounded because a server calls the runner millions of times."""

TRT_DTYPES: dict[str, np.dtype] = {
    "FLOAT": np.dtype(np.float32), "HALF": np.dtype(np.float16), "INT8": np.dtype(np.int8),
    "INT32": np.dtype(np.int32), "INT64": np.dtype(np.int64), "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
}
"""``trt.DataType`` member name -> numpy dtype (BF16, FP8, INT4 have no numpy twin)."""


def import_tensorrt():
    """The ``tensorrt`` module, or a MissingDependencyError saying how to install it."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise MissingDependencyError(TRT_INSTALL_HINT) from exc
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


def make_logger(trt, min_severity: str = "WARNING", capacity: int = LOG_CAPACITY):
    """A ``trt.ILogger`` that keeps the newest ``capacity`` messages, so failures can quote
    TensorRT's own reason without the log growing for the life of a server."""
    from collections import deque

    class CapturingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.messages: deque[tuple[str, str]] = deque(maxlen=capacity)
            self.threshold = int(getattr(trt.ILogger.Severity, min_severity))

        def log(self, severity, msg) -> None:  # noqa: D102 (TensorRT's callback)
            if int(severity) <= self.threshold:
                self.messages.append((severity.name, msg))

        def errors(self) -> list[str]:
            return [m for s, m in self.messages if s in ("ERROR", "INTERNAL_ERROR")]

    return CapturingLogger()


@dataclass(frozen=True)
class EngineTensor:
    """One engine I/O tensor: ``None`` in ``shape`` is a dynamic dim; inputs carry the profile's
    ``min`` / ``max`` shapes (profile 0)."""

    name: str
    is_input: bool
    dtype: np.dtype
    shape: tuple[int | None, ...]
    profile_min: tuple[int, ...] | None = None
    profile_max: tuple[int, ...] | None = None

    def to_dict(self) -> dict:
        return {"name": self.name, "mode": "input" if self.is_input else "output",
                "dtype": np.dtype(self.dtype).name,
                "shape": [-1 if d is None else d for d in self.shape]}


def numpy_dtype(trt_dtype_name: str) -> np.dtype:
    try:
        return TRT_DTYPES[trt_dtype_name]
    except KeyError:
        raise ValidationError(
            f"engine tensor type {trt_dtype_name} has no numpy equivalent; expected one of "
            f"{', '.join(TRT_DTYPES)} at the engine's inputs and outputs (keep I/O in FP32)"
        ) from None


def describe_engine(engine, trt) -> list[EngineTensor]:
    """The I/O tensors of a deserialized ``ICudaEngine`` (TensorRT 10 name-based API)."""
    tensors = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        shape = tuple(None if d < 0 else int(d) for d in engine.get_tensor_shape(name))
        lo = hi = None
        if is_input and any(d is None for d in shape):
            lo, _opt, hi = (tuple(int(d) for d in s) for s in engine.get_tensor_profile_shape(name, 0))
        tensors.append(EngineTensor(name, is_input, numpy_dtype(engine.get_tensor_dtype(name).name),
                                    shape, lo, hi))
    return tensors


def input_specs(io: list[EngineTensor]) -> list[TensorSpec]:
    """The Runner-interface view of an engine's inputs."""
    return [TensorSpec(t.name, t.dtype, t.shape) for t in io if t.is_input]


def check_profile_shapes(io: list[EngineTensor], feed: Feed, runner: str) -> None:
    """Refuse input shapes outside the engine's optimization profile, naming the range."""
    for t in io:
        if not t.is_input or t.profile_min is None or t.name not in feed:
            continue
        shape = feed[t.name].shape
        if not all(lo <= d <= hi for lo, d, hi in zip(t.profile_min, shape, t.profile_max,
                                                      strict=True)):
            fmt = "x".join
            raise ValidationError(
                f"{runner}: input {t.name!r} has shape {'x'.join(map(str, shape))}, outside the "
                f"engine's profile {fmt(map(str, t.profile_min))} .. {fmt(map(str, t.profile_max))}; "
                "rebuild with wider --min-shape/--max-shape"
            )


# --------------------------------------------------------------------------------------------------
# CUDA memory: torch or cuda-python, whichever is there (lazy)
# --------------------------------------------------------------------------------------------------


class TorchCuda:
    """Device buffers as torch CUDA tensors, on a stream of our own: ``execute_async_v3`` on the
    default stream costs extra ``cudaDeviceSynchronize`` calls (TensorRT's documentation), so
    copies and execution are all enqueued on ``self.stream``."""

    name = "torch"

    def __init__(self) -> None:
        import torch

        if not torch.cuda.is_available():
            raise MissingDependencyError("torch is installed without CUDA (or no GPU is visible)")
        self.torch = torch
        self.stream = torch.cuda.Stream()

    def device(self) -> tuple[str, str, str]:
        props = self.torch.cuda.get_device_properties(0)
        return props.name, f"{props.major}.{props.minor}", str(self.torch.version.cuda or "")

    def upload(self, array: np.ndarray):
        with self.torch.cuda.stream(self.stream):
            host = self.torch.from_numpy(np.ascontiguousarray(array))
            buffer = host.to("cuda", non_blocking=False)
        return buffer

    def empty(self, shape: tuple[int, ...], dtype: np.dtype):
        like = self.torch.from_numpy(np.empty(0, dtype=dtype))
        with self.torch.cuda.stream(self.stream):
            return self.torch.empty(shape, dtype=like.dtype, device="cuda")

    @staticmethod
    def pointer(buffer) -> int:
        return int(buffer.data_ptr())

    def stream_handle(self) -> int:
        return int(self.stream.cuda_stream)

    def download(self, buffer) -> np.ndarray:
        self.stream.synchronize()
        with self.torch.cuda.stream(self.stream):
            return buffer.cpu().numpy()

    def close(self) -> None:
        self.stream.synchronize()


class CudaPython:
    """Device buffers from cuda-python's runtime bindings (``cudaMalloc``/``cudaMemcpyAsync``)."""

    name = "cuda-python"

    def __init__(self) -> None:
        try:
            from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
        except ImportError:
            try:
                from cuda import cudart  # older cuda-python
            except ImportError as exc:
                raise MissingDependencyError(
                    "neither torch with CUDA nor cuda-python is installed; to give TensorRT "
                    f"device memory: {CUDA_PYTHON_HINT}"
                ) from exc
        self.rt = cudart
        self.stream = self._check(cudart.cudaStreamCreate())
        self._buffers: list[tuple[int, np.dtype, tuple[int, ...]]] = []

    def _check(self, result):
        err, *rest = result if isinstance(result, tuple) else (result,)
        if err != self.rt.cudaError_t.cudaSuccess:
            raise ModelFileError(f"CUDA call failed: {err}; check the driver and the GPU")
        return rest[0] if len(rest) == 1 else rest

    def device(self) -> tuple[str, str, str]:
        props = self._check(self.rt.cudaGetDeviceProperties(0))
        version = self._check(self.rt.cudaRuntimeGetVersion())
        name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else props.name
        return name.rstrip("\x00"), f"{props.major}.{props.minor}", \
            f"{version // 1000}.{(version % 1000) // 10}"

    def empty(self, shape: tuple[int, ...], dtype: np.dtype):
        nbytes = max(1, int(np.prod(shape)) * np.dtype(dtype).itemsize)
        ptr = int(self._check(self.rt.cudaMalloc(nbytes)))
        buffer = (ptr, np.dtype(dtype), tuple(shape))
        self._buffers.append(buffer)
        return buffer

    def upload(self, array: np.ndarray):
        array = np.ascontiguousarray(array)
        buffer = self.empty(array.shape, array.dtype)
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self.rt.cudaMemcpyAsync(buffer[0], array.ctypes.data, array.nbytes, kind,
                                            self.stream))
        self._check(self.rt.cudaStreamSynchronize(self.stream))  # the host array may go away
        return buffer

    @staticmethod
    def pointer(buffer) -> int:
        return buffer[0]

    def stream_handle(self) -> int:
        return int(self.stream)

    def download(self, buffer) -> np.ndarray:
        ptr, dtype, shape = buffer
        out = np.empty(shape, dtype=dtype)
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self.rt.cudaMemcpyAsync(out.ctypes.data, ptr, out.nbytes, kind, self.stream))
        self._check(self.rt.cudaStreamSynchronize(self.stream))
        return out

    def release(self) -> None:
        for ptr, _, _ in self._buffers:
            self.rt.cudaFree(ptr)
        self._buffers.clear()

    def close(self) -> None:
        self.release()
        self.rt.cudaStreamDestroy(self.stream)


def cuda_backend(prefer: str = "auto"):
    """torch (when it has CUDA) or cuda-python; ``prefer`` forces one of them."""
    if prefer not in ("auto", "torch", "cuda-python"):
        raise ValidationError(f"unknown CUDA memory backend {prefer!r}; expected auto, torch or "
                              "cuda-python")
    if prefer in ("auto", "torch"):
        try:
            return TorchCuda()
        except (ImportError, MissingDependencyError):
            if prefer == "torch":
                raise
    return CudaPython()


def probe_env(trt, backend) -> RuntimeEnv:
    """This machine as the sidecar records it: TensorRT, GPU, compute capability, CUDA."""
    gpu, cc, cuda = backend.device()
    return RuntimeEnv(tensorrt=trt.__version__, gpu=gpu, compute_capability=cc,
                      cuda_runtime=cuda, platform=f"{platform.system()} {platform.machine()}")


def current_env(trt, memory: str = "auto") -> RuntimeEnv:
    """:func:`probe_env` with a backend opened and closed for the purpose."""
    backend = cuda_backend(memory)
    try:
        return probe_env(trt, backend)
    finally:
        backend.close()


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


def data_dependent_outputs(io: list[EngineTensor], shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """Outputs whose shape is still unknown (-1) once every input shape is set: their size depends
    on the data (NonZero, NMS, ...), which needs an ``IOutputAllocator`` this runner lacks."""
    return [t.name for t in io if not t.is_input and any(d < 0 for d in shapes[t.name])]


# --------------------------------------------------------------------------------------------------
# The runner
# --------------------------------------------------------------------------------------------------


class TensorRTRunner(Runner):
    """Runs a serialized TensorRT engine (``.engine`` / ``.plan``) on the first GPU.

    Args:
        engine_path: the plan file; its ``.engine.json`` sidecar is checked when present.
        check_sidecar: refuse engines whose sidecar names another TensorRT version or GPU.
        memory: CUDA memory backend: ``auto`` (torch with CUDA, else cuda-python), ``torch``,
            ``cuda-python``.
        lean_runtime: the lean runtime library for engines built with ``--exclude-lean-runtime``
            (see :func:`lean_runtime_path` for the default).
    """

    name = "tensorrt"

    def __init__(self, engine_path: str | Path, check_sidecar: bool = True,
                 memory: str = "auto", *, lean_runtime: str | Path | None = None) -> None:
        super().__init__()
        self.engine_path = Path(engine_path)
        self.check_sidecar = check_sidecar
        self.memory = memory
        self.lean_runtime = lean_runtime
        self.sidecar = None
        self._io: list[EngineTensor] = []
        self._engine = self._context = self._cuda = self._runtime = self._logger = None
        self._outer_runtime = None

    def _load(self) -> None:
        if not self.engine_path.is_file():
            raise ModelFileError(f"engine {self.engine_path} does not exist; build it with "
                                 "`attn-export build MODEL.onnx`")
        data = self.engine_path.read_bytes()
        if not data:
            raise ModelFileError(f"engine {self.engine_path} is empty; rebuild it")
        trt = import_tensorrt()
        self.sidecar = read_sidecar(self.engine_path)
        self._cuda = cuda_backend(self.memory)
        try:
            self._open(trt, data)
        except BaseException:
            self._close()
            raise

    def _open(self, trt, data: bytes) -> None:
        if self.sidecar is None:
            warnings.warn(f"{self.engine_path} has no .engine.json sidecar: its TensorRT version "
                          "and GPU cannot be checked before loading", UserWarning, stacklevel=3)
        elif self.check_sidecar:
            check_compatible(self.engine_path, self.sidecar, probe_env(trt, self._cuda),
                             sha256_file(self.engine_path))
        self._logger = logger = make_logger(trt)  # TensorRT keeps a pointer: keep it alive
        self._runtime = self._make_runtime(trt, logger)
        self._engine = self._runtime.deserialize_cuda_engine(data)
        if self._engine is None:
            reason = "; ".join(logger.errors()[-2:]) or "no reason given"
            raise ModelFileError(
                f"TensorRT cannot deserialize {self.engine_path} ({reason}); the file is corrupt, "
                "truncated, or built for another TensorRT version/GPU: rebuild it on this machine"
            )
        self._io = describe_engine(self._engine, trt)
        if not any(d is None for t in self._io if t.is_input for d in t.shape):
            self._refuse_data_dependent({t.name: tuple(-1 if d is None else d for d in t.shape)
                                         for t in self._io})
        self._context = self._engine.create_execution_context()
        self.name = f"tensorrt[{trt.__version__}, {self._cuda.device()[0]}]"

    def _make_runtime(self, trt, logger):
        """``trt.Runtime``; for a version-compatible plan, one allowed to run the lean runtime the
        plan embeds, or, for a plan built with ``EXCLUDE_LEAN_RUNTIME``, the lean runtime loaded
        from its library (``IRuntime.load_runtime``)."""
        runtime = trt.Runtime(logger)
        sidecar = self.sidecar
        if sidecar is None or not sidecar.version_compatible:
            return runtime
        if "EXCLUDE_LEAN_RUNTIME" not in sidecar.plan.get("builder_flags", ()):
            runtime.engine_host_code_allowed = True  # the plan embeds its lean runtime
            return runtime
        path = lean_runtime_path(int(trt.__version__.split(".")[0]), self.lean_runtime)
        lean = runtime.load_runtime(path)
        if lean is None:
            reason = "; ".join(logger.errors()[-2:]) or "no reason given"
            raise ModelFileError(
                f"{self.engine_path} was built with --exclude-lean-runtime and needs TensorRT's "
                f"lean runtime, which cannot be loaded from {path} ({reason}); install it (pip "
                f"install tensorrt-lean-cu12) or point {LEAN_RUNTIME_ENV} at libnvinfer_lean.so")
        self._outer_runtime = runtime  # the lean runtime lives inside it: keep both alive
        return lean

    def _refuse_data_dependent(self, shapes: dict[str, tuple[int, ...]]) -> None:
        names = data_dependent_outputs(self._io, shapes)
        if names:
            raise ModelFileError(
                f"{self.engine_path}: output(s) {names} have data-dependent shapes (unknown until "
                "the engine runs); this runner sizes outputs before execution and has no "
                "IOutputAllocator. Export a graph whose output shapes follow from its input "
                "shapes (no NonZero / NMS at the outputs)")

    def _close(self) -> None:
        if self._cuda is not None:
            self._cuda.close()
        self._context = self._engine = self._runtime = self._cuda = None
        self._outer_runtime = None

    def _input_spec(self) -> list[TensorSpec]:
        return input_specs(self._io)

    def _infer(self, feed: Feed) -> Feed:
        check_profile_shapes(self._io, feed, self.name)
        return self._execute(feed)

    def _execute(self, feed: Feed) -> Feed:
        """The GPU part: shapes, addresses, ``execute_async_v3`` on our own stream, copies back.
        Device buffers of this call are released whatever happens (cuda-python's are not
        garbage-collected)."""
        try:
            return self._enqueue(feed)
        finally:
            if hasattr(self._cuda, "release"):
                self._cuda.release()

    def _enqueue(self, feed: Feed) -> Feed:
        cuda, context = self._cuda, self._context
        keep = []  # the input buffers must outlive the execution
        for t in self._io:
            if t.is_input:
                if not context.set_input_shape(t.name, tuple(feed[t.name].shape)):
                    raise ValidationError(f"{self.name}: TensorRT refused shape "
                                          f"{feed[t.name].shape} for input {t.name!r}")
                keep.append(cuda.upload(feed[t.name]))
                self._bind(t.name, cuda.pointer(keep[-1]))
        shapes = {t.name: tuple(int(d) for d in context.get_tensor_shape(t.name))
                  for t in self._io if not t.is_input}
        self._refuse_data_dependent(shapes)
        outputs = {t.name: cuda.empty(shapes[t.name], t.dtype) for t in self._io if not t.is_input}
        for name, buffer in outputs.items():
            self._bind(name, cuda.pointer(buffer))
        stream = cuda.stream_handle()
        if not stream:  # invariant of both backends; the default stream costs extra syncs
            raise ModelFileError(f"{self.name}: the CUDA backend gave the default stream")
        if not context.execute_async_v3(stream):
            raise ValidationError(f"{self.name}: execute_async_v3 failed for input shapes "
                                  f"{ {k: v.shape for k, v in feed.items()} }")
        return {name: cuda.download(buffer) for name, buffer in outputs.items()}

    def _bind(self, name: str, address: int) -> None:
        if not self._context.set_tensor_address(name, address):
            raise ModelFileError(f"{self.name}: TensorRT refused the device address of tensor "
                                 f"{name!r} (see its log: {'; '.join(self._logger.errors()[-2:])})")

    def output_names(self) -> list[str]:
        self.load()
        return [t.name for t in self._io if not t.is_input]
