"""A fake ``tensorrt`` module for the engine and runner tests, held to the real bindings' surface.

TensorRT cannot run here (no GPU), so the build and run paths are exercised against this fake:
the classes, methods, properties and enums our code touches, with the real names, parameter
names and settable/read-only properties. ``fake_tensorrt(version)`` builds the module for one
real binding version from ``tests/trt_snapshots/<version>.json`` (a snapshot of that version's
real surface): a member the real version lacks is absent here too (``ILayer.precision`` on 11.x),
and enums hold exactly the real members. ``tests/runtime/test_trt_surface.py`` checks the
snapshot against the real wheels and every member defined below against the real signatures, so
the fake cannot drift from the API.

Behaviour is the documented one where our code depends on it: ``add_optimization_profile`` returns
-1 for an invalid profile, ``get_timing_cache`` returns None when no cache is set,
``set_timing_cache`` / ``combine`` return False for a cache from another device, plans built with
``EXCLUDE_LEAN_RUNTIME`` deserialize only in a runtime from ``load_runtime``. Execution runs the
parsed ONNX on ONNX Runtime over "device" buffers that are numpy arrays keyed by address.
"""

from __future__ import annotations

import enum
import itertools
import json
import types
from functools import cache
from pathlib import Path

import numpy as np

from tests.fake_tensorrt_build import (  # noqa: F401 (DEVICE, reset_process_logger: for tests)
    DEVICE,
    Builder,
    IBuilderConfig,
    IHostMemory,
    ILayer,
    INetworkDefinition,
    IOptimizationProfile,
    ITensor,
    ITimingCache,
    OnnxParser,
    ParserError,
    _process_logger,
    reset_process_logger,
)

SNAPSHOTS = Path(__file__).resolve().parent / "trt_snapshots"

MODELLED_ENUMS = ("BuilderFlag", "NetworkDefinitionCreationFlag", "MemoryPoolType",
                  "HardwareCompatibilityLevel", "DataType", "LayerType", "TensorIOMode",
                  "ILogger.Severity")
MODELLED_VALUES = ("float32",)

MEMORY: dict[int, np.ndarray] = {}
"""Fake device memory: address -> byte array. Filled by :class:`FakeCuda`."""
_ADDRESSES = itertools.count(0x1000, 0x1000)


class ILogger:
    def __init__(self) -> None:
        pass

    def log(self, severity, msg) -> None:
        raise NotImplementedError


class ICudaEngine:
    def __init__(self, trt, plan: dict) -> None:
        self._trt, self._plan = trt, plan
        self._io = [(name, is_input, tuple(shape)) for name, is_input, shape in plan["io"]]

    num_io_tensors = property(lambda self: len(self._io))

    def get_tensor_name(self, index):
        return self._io[index][0]

    def _tensor(self, name):
        return next(t for t in self._io if t[0] == name)

    def get_tensor_mode(self, name):
        mode = self._trt.TensorIOMode
        return mode.INPUT if self._tensor(name)[1] else mode.OUTPUT

    def get_tensor_dtype(self, name):
        return self._trt.DataType.FLOAT

    def get_tensor_shape(self, name):
        return tuple(-1 if d < 0 else d for d in self._tensor(name)[2])

    def get_tensor_profile_shape(self, name, profile_index):
        return [list(s) for s in self._plan["profile"][name]]

    def create_execution_context(self):
        return IExecutionContext(self)


class IExecutionContext:
    def __init__(self, engine: ICudaEngine) -> None:
        self._engine, self._shapes, self._addresses = engine, {}, {}
        self.streams: list[int] = []

    def set_input_shape(self, name, shape) -> bool:
        declared = self._engine._tensor(name)[2]
        lo, _, hi = self._engine._plan["profile"].get(name, (declared, None, declared))
        fits = len(shape) == len(declared) and all(a <= d <= b for a, d, b in zip(lo, shape, hi))
        if fits:
            self._shapes[name] = tuple(shape)
        return fits

    def get_tensor_shape(self, name):
        _, is_input, declared = self._engine._tensor(name)
        if is_input:
            return self._shapes.get(name, declared)
        batch = next(iter(self._shapes.values()), declared)[0]
        return tuple(batch if d == -1 else (-1 if d < 0 else d) for d in declared)

    def set_tensor_address(self, name, memory) -> bool:
        if memory not in MEMORY or all(t[0] != name for t in self._engine._io):
            return False
        self._addresses[name] = memory
        return True

    def execute_async_v3(self, stream_handle) -> bool:
        """Runs the ONNX on ONNX Runtime over the bound byte buffers; False (as TensorRT's
        enqueue failure) when an address is missing or a buffer is too small."""
        import onnxruntime as ort

        self.streams.append(stream_handle)
        io = self._engine._io
        if any(t[0] not in self._addresses for t in io):
            return False
        session = ort.InferenceSession(self._engine._plan["onnx"], providers=["CPUExecutionProvider"])
        feed = {}
        for name, is_input, _ in io:
            if is_input:
                shape = self.get_tensor_shape(name)
                raw = MEMORY[self._addresses[name]]
                size = int(np.prod(shape)) * 4
                if raw.nbytes < size:
                    return False
                feed[name] = raw[:size].view(np.float32).reshape(shape).copy()
        outputs = session.run(None, feed)
        for (name, _, _), value in zip([t for t in io if not t[1]], outputs):
            target = MEMORY[self._addresses[name]]
            value = np.ascontiguousarray(value, dtype=np.float32)
            if target.nbytes < value.nbytes:
                return False
            target[:value.nbytes] = value.reshape(-1).view(np.uint8)
        return True


class Runtime:
    def __init__(self, logger) -> None:
        self._given, self._host_code, self._lean = logger, False, False
        self._trt = None  # set by fake_tensorrt()

    _logger = property(lambda self: _process_logger(self._trt, self._given))

    engine_host_code_allowed = property(lambda self: self._host_code,
                                        lambda self, v: setattr(self, "_host_code", v))

    def load_runtime(self, path):
        if not Path(path).is_file():
            return None
        lean = type(self)(self._given)
        lean._trt, lean._lean = self._trt, True
        return lean

    def deserialize_cuda_engine(self, serialized_engine):
        try:
            plan = json.loads(bytes(serialized_engine))
        except ValueError:
            plan = None
        if not isinstance(plan, dict) or plan.get("fake_plan") != self._trt.__version__ and \
                "VERSION_COMPATIBLE" not in plan.get("flags", ()):
            return self._error("the plan is not a TensorRT engine of this version")
        if "EXCLUDE_LEAN_RUNTIME" in plan["flags"] and not self._lean:
            return self._error("the plan excludes the lean runtime: load one with load_runtime")
        if "VERSION_COMPATIBLE" in plan["flags"] and not self._lean and not self._host_code:
            return self._error("version-compatible plan needs engine_host_code_allowed")
        return ICudaEngine(self._trt, plan)

    def _error(self, message: str):
        self._logger.log(self._trt.ILogger.Severity.ERROR, message)
        return None


MODELLED = (ILogger, ITensor, ILayer, INetworkDefinition, ParserError, OnnxParser,
            IOptimizationProfile, IHostMemory, ITimingCache, IBuilderConfig, Builder, ICudaEngine,
            IExecutionContext, Runtime)
MODELLED_CLASSES = tuple(c.__name__ for c in MODELLED)


def load_snapshot(version: str) -> dict:
    return json.loads((SNAPSHOTS / f"{version}.json").read_text())


@cache
def fake_tensorrt(version: str = "10.3.0") -> types.ModuleType:
    """The fake module for one real binding version (cached: classes are per version)."""
    snap = load_snapshot(version)
    trt = types.ModuleType("tensorrt", f"fake TensorRT {version} (tests/fake_tensorrt.py)")
    trt.__version__ = snap["version"]
    for name, members in snap["enums"].items():
        if "." not in name:
            setattr(trt, name, enum.IntEnum(name, {m: i for i, m in enumerate(members)}))
    for cls in MODELLED:
        real = snap["classes"][cls.__name__]
        attrs = {k: v for k, v in vars(cls).items() if k.startswith("_") or k in real}
        setattr(trt, cls.__name__, type(cls.__name__, cls.__bases__, attrs))
    trt.ILogger.Severity = enum.IntEnum("Severity", {m: i for i, m in
                                                     enumerate(snap["enums"]["ILogger.Severity"])})
    trt.float32 = trt.DataType.FLOAT
    for name in ("Builder", "Runtime"):
        _bind_module(getattr(trt, name), trt)
    return trt


def _bind_module(cls, trt) -> None:
    init = cls.__init__

    def __init__(self, logger):
        init(self, logger)
        self._trt = trt

    cls.__init__ = __init__


class FakeCuda:
    """The runner's CUDA memory backend over :data:`MEMORY` (the primitives of ``TorchCuda`` and
    ``CudaPython``): device buffers are byte arrays keyed by address; every allocation is
    counted, so tests can tell resident buffers from per-request ones."""

    name = "fake-cuda"

    def __init__(self, stream: int = 7) -> None:
        self.stream, self.closed = stream, False
        self.allocations = self.pinned_allocations = self.syncs = 0
        self.live: set[int] = set()

    def device(self) -> tuple[str, str, str]:
        return "FakeGPU", "8.7", "12.6"

    def alloc(self, nbytes: int) -> int:
        address = next(_ADDRESSES)
        MEMORY[address] = np.zeros(max(1, nbytes), np.uint8)
        self.allocations += 1
        self.live.add(address)
        return address

    def pinned(self, nbytes: int) -> np.ndarray:
        self.pinned_allocations += 1
        return np.zeros(max(1, nbytes), np.uint8)

    @staticmethod
    def pointer(buffer) -> int:
        return buffer

    def free(self, buffer) -> None:
        MEMORY.pop(buffer, None)
        self.live.discard(buffer)

    def to_device(self, buffer, host, nbytes: int) -> None:
        MEMORY[buffer][:nbytes] = host[:nbytes]

    def to_host(self, host, buffer, nbytes: int) -> None:
        host[:nbytes] = MEMORY[buffer][:nbytes]

    def stream_handle(self) -> int:
        return self.stream

    def synchronize(self) -> None:
        self.syncs += 1

    def close(self) -> None:
        self.closed = True


def install(monkeypatch, version: str = "10.3.0"):
    """Make ``import tensorrt`` give the fake of ``version`` and the runner's CUDA memory the
    fake device, for one test (``monkeypatch`` undoes both)."""
    import sys

    from attn_export.runtime import cuda_memory

    trt = fake_tensorrt(version)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(cuda_memory, "cuda_backend", lambda prefer="auto": FakeCuda())
    return trt
