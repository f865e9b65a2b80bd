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

TRT_INSTALL_HINT = (
    "TensorRT's Python package is not importable. x86: `pip install tensorrt` (CUDA 12 wheels "
    "from NVIDIA); Jetson: JetPack ships it (`sudo apt install python3-libnvinfer`; create the "
    "venv with --system-site-packages). Then `pip install cuda-python` (or use a CUDA torch)"
)

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


def make_logger(trt, min_severity: str = "WARNING"):
    """A ``trt.ILogger`` that keeps the messages, so failures can quote TensorRT's own reason."""

    class CapturingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.messages: list[tuple[str, str]] = []
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
    """Device buffers as torch CUDA tensors; the stream is torch's current stream."""

    name = "torch"

    def __init__(self) -> None:
        import torch

        if not torch.cuda.is_available():
            raise MissingDependencyError("torch is installed without CUDA (or no GPU is visible)")
        self.torch = torch
        self.stream = torch.cuda.current_stream()

    def device(self) -> tuple[str, str, str]:
        props = self.torch.cuda.get_device_properties(0)
        return props.name, f"{props.major}.{props.minor}", str(self.torch.version.cuda or "")

    def upload(self, array: np.ndarray):
        return self.torch.from_numpy(np.ascontiguousarray(array)).to("cuda")

    def empty(self, shape: tuple[int, ...], dtype: np.dtype):
        like = self.torch.from_numpy(np.empty(0, dtype=dtype))
        return self.torch.empty(shape, dtype=like.dtype, device="cuda")

    @staticmethod
    def pointer(buffer) -> int:
        return int(buffer.data_ptr())

    def stream_handle(self) -> int:
        return int(self.stream.cuda_stream)

    def download(self, buffer) -> np.ndarray:
        self.stream.synchronize()
        return buffer.cpu().numpy()

    def close(self) -> None:
        self.torch.cuda.synchronize()


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
                    "neither torch with CUDA nor cuda-python is installed; `pip install "
                    "cuda-python` to give TensorRT device memory"
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
    """

    name = "tensorrt"

    def __init__(self, engine_path: str | Path, check_sidecar: bool = True,
                 memory: str = "auto") -> None:
        super().__init__()
        self.engine_path = Path(engine_path)
        self.check_sidecar = check_sidecar
        self.memory = memory
        self.sidecar = None
        self._io: list[EngineTensor] = []
        self._engine = self._context = self._cuda = self._runtime = self._logger = None

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
        self._runtime = trt.Runtime(logger)
        if self.sidecar is not None and self.sidecar.version_compatible:
            self._runtime.engine_host_code_allowed = True  # the plan embeds its lean runtime
        self._engine = self._runtime.deserialize_cuda_engine(data)
        if self._engine is None:
            reason = "; ".join(logger.errors()[-2:]) or "no reason given"
            raise ModelFileError(
                f"TensorRT cannot deserialize {self.engine_path} ({reason}); the file is corrupt, "
                "truncated, or built for another TensorRT version/GPU: rebuild it on this machine"
            )
        self._io = describe_engine(self._engine, trt)
        self._context = self._engine.create_execution_context()
        self.name = f"tensorrt[{trt.__version__}, {self._cuda.device()[0]}]"

    def _close(self) -> None:
        if self._cuda is not None:
            self._cuda.close()
        self._context = self._engine = self._runtime = self._cuda = None

    def _input_spec(self) -> list[TensorSpec]:
        return input_specs(self._io)

    def _infer(self, feed: Feed) -> Feed:
        check_profile_shapes(self._io, feed, self.name)
        return self._execute(feed)

    def _execute(self, feed: Feed) -> Feed:
        """The GPU part: shapes, addresses, ``execute_async_v3``, copies back."""
        cuda, context = self._cuda, self._context
        keep = []
        for t in self._io:
            if t.is_input:
                buffer = cuda.upload(feed[t.name])
                if not context.set_input_shape(t.name, tuple(feed[t.name].shape)):
                    raise ValidationError(f"{self.name}: TensorRT refused shape "
                                          f"{feed[t.name].shape} for input {t.name!r}")
                context.set_tensor_address(t.name, cuda.pointer(buffer))
                keep.append(buffer)
        outputs = {}
        for t in self._io:
            if not t.is_input:
                shape = tuple(int(d) for d in context.get_tensor_shape(t.name))
                outputs[t.name] = cuda.empty(shape, t.dtype)
                context.set_tensor_address(t.name, cuda.pointer(outputs[t.name]))
        if not context.execute_async_v3(cuda.stream_handle()):
            raise ValidationError(f"{self.name}: execute_async_v3 failed for input shapes "
                                  f"{ {k: v.shape for k, v in feed.items()} }")
        result = {name: cuda.download(buffer) for name, buffer in outputs.items()}
        if hasattr(cuda, "release"):
            cuda.release()
        del keep
        return result

    def output_names(self) -> list[str]:
        self.load()
        return [t.name for t in self._io if not t.is_input]
