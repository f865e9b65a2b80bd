"""CUDA memory for the TensorRT runner: torch or cuda-python, whichever is there (lazy).

A backend offers the primitives (a stream of its own, device and pinned host allocations, async
copies on that stream, one synchronise); :class:`ResidentBuffers` keeps one device buffer and one
pinned staging buffer per engine tensor for the life of a runner and grows them only when a
larger shape arrives, as Polygraphy's ``TrtRunner`` does. Allocating per request would cost a
``cudaMalloc``/``cudaFree`` per tensor (a device allocation synchronises the device, so server
instances could never overlap) and copies from pageable memory, which the driver stages through
a pinned buffer of its own before the DMA.
"""

from __future__ import annotations

import ctypes

import numpy as np

from attn_export.errors import MissingDependencyError, ModelFileError, ValidationError

CUDA_PYTHON_HINT = (
    "`pip install 'cuda-python>=12,<13'` for CUDA 12 (JetPack 6 is CUDA 12.6; cuda-python 13 "
    "needs a CUDA 13 driver, r580+), `pip install 'cuda-python>=13,<14'` for CUDA 13 (JetPack 7; "
    "or use a CUDA build of torch)"
)
"""cuda-python's major version must be the CUDA major the driver supports: an unpinned install
now resolves to 13.x, which fails on CUDA 12 drivers such as JetPack 6's."""


class TorchCuda:
    """Buffers as torch CUDA / pinned tensors, on a stream of our own: ``execute_async_v3`` on the
    default stream costs extra ``cudaDeviceSynchronize`` calls (TensorRT's documentation)."""

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

    def alloc(self, nbytes: int):
        with self.torch.cuda.stream(self.stream):
            return self.torch.empty(max(1, nbytes), dtype=self.torch.uint8, device="cuda")

    def pinned(self, nbytes: int) -> np.ndarray:
        # the numpy view keeps the pinned tensor alive
        return self.torch.empty(max(1, nbytes), dtype=self.torch.uint8, pin_memory=True).numpy()

    @staticmethod
    def pointer(buffer) -> int:
        return int(buffer.data_ptr())

    def free(self, buffer) -> None:
        del buffer  # the caching allocator takes it back once the stream is done with it

    def to_device(self, buffer, host: np.ndarray, nbytes: int) -> None:
        with self.torch.cuda.stream(self.stream):
            buffer[:nbytes].copy_(self.torch.from_numpy(host[:nbytes]), non_blocking=True)

    def to_host(self, host: np.ndarray, buffer, nbytes: int) -> None:
        with self.torch.cuda.stream(self.stream):
            self.torch.from_numpy(host[:nbytes]).copy_(buffer[:nbytes], non_blocking=True)

    def stream_handle(self) -> int:
        return int(self.stream.cuda_stream)

    def synchronize(self) -> None:
        self.stream.synchronize()

    def close(self) -> None:
        self.stream.synchronize()


class CudaPython:
    """Buffers from cuda-python's runtime bindings (``cudaMalloc``, ``cudaMallocHost``,
    ``cudaMemcpyAsync`` on a stream of our own)."""

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
        self._pinned: list[int] = []

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

    def alloc(self, nbytes: int) -> int:
        return int(self._check(self.rt.cudaMalloc(max(1, nbytes))))

    def pinned(self, nbytes: int) -> np.ndarray:
        ptr = int(self._check(self.rt.cudaMallocHost(max(1, nbytes))))
        self._pinned.append(ptr)
        return np.ctypeslib.as_array((ctypes.c_uint8 * max(1, nbytes)).from_address(ptr))

    @staticmethod
    def pointer(buffer) -> int:
        return int(buffer)

    def free(self, buffer) -> None:
        self.rt.cudaFree(buffer)

    def to_device(self, buffer, host: np.ndarray, nbytes: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self.rt.cudaMemcpyAsync(buffer, host.ctypes.data, nbytes, kind, self.stream))

    def to_host(self, host: np.ndarray, buffer, nbytes: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self.rt.cudaMemcpyAsync(host.ctypes.data, buffer, nbytes, kind, self.stream))

    def stream_handle(self) -> int:
        return int(self.stream)

    def synchronize(self) -> None:
        self._check(self.rt.cudaStreamSynchronize(self.stream))

    def close(self) -> None:
        self.rt.cudaStreamSynchronize(self.stream)
        for ptr in self._pinned:
            self.rt.cudaFreeHost(ptr)
        self._pinned.clear()
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


class ResidentBuffers:
    """One device buffer and one pinned host staging buffer per tensor name, kept between calls
    and replaced only by a larger one (capacity in bytes, so a smaller batch reuses the buffer).

    The calls a request makes: :meth:`upload` per input (staged copy, async), :meth:`device` per
    output, the engine's launch, :meth:`start_download` per output, one ``synchronize``, then
    :meth:`result` per output (a copy out of the staging buffer, which the next call reuses).
    """

    def __init__(self, backend) -> None:
        self.backend = backend
        self._device: dict[str, tuple[object, int]] = {}
        self._host: dict[str, np.ndarray] = {}

    def device(self, name: str, nbytes: int):
        """The device buffer of ``name``, grown to at least ``nbytes``."""
        buffer, capacity = self._device.get(name, (None, -1))
        if capacity < nbytes:
            if buffer is not None:
                self.backend.synchronize()  # the last launch may still read it
                self.backend.free(buffer)
            buffer = self.backend.alloc(nbytes)
            self._device[name] = (buffer, nbytes)
        return buffer

    def staging(self, name: str, nbytes: int) -> np.ndarray:
        """The pinned host buffer of ``name``, grown to at least ``nbytes``."""
        host = self._host.get(name)
        if host is None or host.nbytes < nbytes:
            host = self._host[name] = self.backend.pinned(nbytes)
        return host

    def upload(self, name: str, array: np.ndarray) -> int:
        """Stage ``array`` and enqueue its copy to the device; returns the device address."""
        array = np.ascontiguousarray(array)
        host = self.staging(name, array.nbytes)
        host[:array.nbytes] = array.reshape(-1).view(np.uint8)
        buffer = self.device(name, array.nbytes)
        self.backend.to_device(buffer, host, array.nbytes)
        return self.backend.pointer(buffer)

    def address(self, name: str, nbytes: int) -> int:
        return self.backend.pointer(self.device(name, nbytes))

    def start_download(self, name: str, nbytes: int) -> None:
        self.backend.to_host(self.staging(name, nbytes), self.device(name, nbytes), nbytes)

    def result(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """The output after ``synchronize``: a copy, since the staging buffer is reused."""
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        return self._host[name][:nbytes].view(dtype).reshape(shape).copy()

    def release(self) -> None:
        for buffer, _ in self._device.values():
            self.backend.free(buffer)
        self._device.clear()
        self._host.clear()
