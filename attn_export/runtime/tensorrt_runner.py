"""TensorRT backend: a serialized engine behind the common Runner interface (TensorRT 10.x, 11.x).

Uses the name-based tensor API of TensorRT 10 (kept in 11): per call ``set_input_shape``, then the
output shapes re-read, ``set_tensor_address`` and ``execute_async_v3`` on a stream of our own.
Opening the plan is :func:`~attn_export.runtime.trt_engine.open_engine` (lean runtime, host code,
TensorRT's reason on failure); device memory is :mod:`~attn_export.runtime.cuda_memory` (torch or
cuda-python, buffers resident and grown only when shapes grow); before deserialising, the
engine's sidecar (``.engine.json``) is checked against this machine. This module imports with
numpy alone.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from attn_export.atomic import sha256_file
from attn_export.errors import ModelFileError, ValidationError
from attn_export.runtime import cuda_memory, engine_cache
from attn_export.runtime.base import Feed, Runner, TensorSpec
from attn_export.runtime.sidecar import check_compatible, read_sidecar
from attn_export.runtime.trt_engine import (
    TRT_DTYPES,
    EngineTensor,
    OpenedEngine,
    check_profile_shapes,
    data_dependent_outputs,
    describe_engine,
    input_specs,
    open_engine,
    set_input_shapes,
)
from attn_export.runtime.trt_env import (
    TRT_INSTALL_HINT,
    import_tensorrt,
    installed_trt_version,
    lean_runtime_path,
    probe_env,
)
from attn_export.runtime.trt_logger import get_trt_logger

__all__ = ["TRT_DTYPES", "TRT_INSTALL_HINT", "EngineTensor", "TensorRTRunner", "describe_engine",
           "import_tensorrt", "installed_trt_version", "lean_runtime_path"]


class TensorRTRunner(Runner):
    """Runs a serialized TensorRT engine (``.engine`` / ``.plan``) on the first GPU.

    Args:
        engine_path: the plan file; its ``.engine.json`` sidecar is checked when present.
        check_sidecar: refuse engines whose sidecar names another TensorRT, CUDA, JetPack or GPU.
        memory: CUDA memory backend: ``auto`` (torch with CUDA, else cuda-python), ``torch``,
            ``cuda-python``.
        lean_runtime: the lean runtime library for engines built with ``--exclude-lean-runtime``
            (see :func:`~attn_export.runtime.trt_env.lean_runtime_path` for the default).
        share_engine: take the engine from the process-wide cache (one deserialised engine per
            plan and device, each runner with its own execution context, stream and buffers);
            what a server's instances of one model do.
    """

    name = "tensorrt"

    def __init__(self, engine_path: str | Path, check_sidecar: bool = True,
                 memory: str = "auto", *, lean_runtime: str | Path | None = None,
                 share_engine: bool = False) -> None:
        super().__init__()
        self.engine_path = Path(engine_path)
        self.check_sidecar = check_sidecar
        self.memory = memory
        self.lean_runtime = lean_runtime
        self.share_engine = share_engine
        self.sidecar = None
        self._io: list[EngineTensor] = []
        self._opened: OpenedEngine | None = None
        self._shared_key = None
        self._context = self._cuda = self._buffers = self._logger = None

    def _load(self) -> None:
        if not self.engine_path.is_file():
            raise ModelFileError(f"engine {self.engine_path} does not exist; build it with "
                                 "`attn-export build MODEL.onnx`")
        if self.engine_path.stat().st_size == 0:
            raise ModelFileError(f"engine {self.engine_path} is empty; rebuild it")
        trt = import_tensorrt()
        self.sidecar = read_sidecar(self.engine_path)
        self._cuda = cuda_memory.cuda_backend(self.memory)
        try:
            self._open(trt)
        except BaseException:
            self._close()
            raise

    def _open(self, trt) -> None:
        if self.sidecar is None:
            warnings.warn(f"{self.engine_path} has no .engine.json sidecar: its TensorRT version "
                          "and GPU cannot be checked before loading", UserWarning, stacklevel=3)
        elif self.check_sidecar:
            check_compatible(self.engine_path, self.sidecar, probe_env(trt, self._cuda),
                             sha256_file(self.engine_path))
        self._logger = get_trt_logger(trt)

        def load() -> OpenedEngine:
            return open_engine(trt, self.engine_path, self.sidecar, self.lean_runtime)

        if self.share_engine:
            self._shared_key, self._opened = engine_cache.share_engine(self.engine_path, load)
        else:
            self._opened = load()
        self._io = self._opened.io
        if not any(d is None for t in self._io if t.is_input for d in t.shape):
            self._refuse_data_dependent({t.name: tuple(-1 if d is None else d for d in t.shape)
                                         for t in self._io})
        engine = self._opened.engine
        self._context = engine.create_execution_context()
        if self._context is None:
            raise ModelFileError(f"TensorRT could not create an execution context for "
                                 f"{self.engine_path} (out of device memory?)")
        self._buffers = cuda_memory.ResidentBuffers(self._cuda)
        self.name = f"tensorrt[{trt.__version__}, {self._cuda.device()[0]}]"

    def _refuse_data_dependent(self, shapes: dict[str, tuple[int, ...]]) -> None:
        names = data_dependent_outputs(self._io, shapes)
        if names:
            raise ModelFileError(
                f"{self.engine_path}: output(s) {names} have data-dependent shapes (unknown until "
                "the engine runs); this runner sizes outputs before execution and has no "
                "IOutputAllocator. Export a graph whose output shapes follow from its input "
                "shapes (no NonZero / NMS at the outputs)")

    def _close(self) -> None:
        if self._buffers is not None:
            self._buffers.release()
        if self._cuda is not None:
            self._cuda.close()
        self._context = self._buffers = self._cuda = None
        if self._shared_key is not None:
            engine_cache.release_engine(self._shared_key)
        self._opened = self._shared_key = None

    def _input_spec(self) -> list[TensorSpec]:
        return input_specs(self._io)

    def _infer(self, feed: Feed) -> Feed:
        check_profile_shapes(self._io, feed, self.name)
        return self._execute(feed)

    def _execute(self, feed: Feed) -> Feed:
        """The GPU part: shapes, staged uploads into resident buffers, ``execute_async_v3`` on our
        own stream, copies back, one synchronise."""
        context, buffers = self._context, self._buffers
        inputs = [t for t in self._io if t.is_input]
        set_input_shapes(context, {t.name: feed[t.name].shape for t in inputs}, self.name)
        for t in inputs:
            self._bind(t.name, buffers.upload(t.name, feed[t.name]))
        shapes = {t.name: tuple(int(d) for d in context.get_tensor_shape(t.name))
                  for t in self._io if not t.is_input}
        self._refuse_data_dependent(shapes)
        outputs = {t.name: (shapes[t.name], t.dtype, _nbytes(shapes[t.name], t.dtype))
                   for t in self._io if not t.is_input}
        for name, (_, _, nbytes) in outputs.items():
            self._bind(name, buffers.address(name, nbytes))
        stream = self._cuda.stream_handle()
        if not stream:  # invariant of both backends; the default stream costs extra syncs
            raise ModelFileError(f"{self.name}: the CUDA backend gave the default stream")
        if not context.execute_async_v3(stream):
            raise ValidationError(f"{self.name}: execute_async_v3 failed for input shapes "
                                  f"{ {k: v.shape for k, v in feed.items()} }")
        for name, (_, _, nbytes) in outputs.items():
            buffers.start_download(name, nbytes)
        self._cuda.synchronize()
        return {name: buffers.result(name, shape, dtype)
                for name, (shape, dtype, _) in outputs.items()}

    def _bind(self, name: str, address: int) -> None:
        if not self._context.set_tensor_address(name, address):
            raise ModelFileError(f"{self.name}: TensorRT refused the device address of tensor "
                                 f"{name!r} (see its log: {'; '.join(self._logger.errors()[-2:])})")

    def output_names(self) -> list[str]:
        self.load()
        return [t.name for t in self._io if not t.is_input]


def _nbytes(shape: tuple[int, ...], dtype) -> int:
    import numpy as np

    return int(np.prod(shape)) * np.dtype(dtype).itemsize
