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

SNAPSHOTS = Path(__file__).resolve().parent / "trt_snapshots"

MODELLED_ENUMS = ("BuilderFlag", "NetworkDefinitionCreationFlag", "MemoryPoolType",
                  "HardwareCompatibilityLevel", "DataType", "LayerType", "TensorIOMode",
                  "ILogger.Severity")
MODELLED_VALUES = ("float32",)

DEVICE = "FakeGPU sm87"
"""The device every fake timing cache is made on; a cache from another device mismatches."""

MEMORY: dict[int, np.ndarray] = {}
"""Fake device memory: address -> array. Filled by :class:`FakeCuda`."""
_ADDRESSES = itertools.count(0x1000, 0x1000)

_LAYER_TYPES = {"Conv": "CONVOLUTION", "ConvTranspose": "DECONVOLUTION", "Gemm": "MATRIX_MULTIPLY",
                "MatMul": "MATRIX_MULTIPLY", "ReduceMean": "REDUCE", "ReduceMax": "REDUCE",
                "ReduceSum": "REDUCE", "LayerNormalization": "NORMALIZATION",
                "InstanceNormalization": "NORMALIZATION", "Sigmoid": "ACTIVATION",
                "Relu": "ACTIVATION", "NonZero": "NON_ZERO", "QuantizeLinear": "QUANTIZE",
                "DequantizeLinear": "DEQUANTIZE"}


PROCESS_LOGGERS: dict[str, object] = {}
"""Version -> the logger TensorRT uses for the whole process: the first one handed to a Builder,
Runtime or parser. TensorRT treats the logger as a singleton (``ILogger``'s documentation); a
later object's logger receives nothing. :func:`reset_process_logger` starts a "new process"."""


def _process_logger(trt, given):
    return PROCESS_LOGGERS.setdefault(trt.__version__, given)


def reset_process_logger() -> None:
    PROCESS_LOGGERS.clear()


class ILogger:
    def __init__(self) -> None:
        pass

    def log(self, severity, msg) -> None:
        raise NotImplementedError


class ITensor:
    def __init__(self, name: str, dtype, shape: tuple[int, ...]) -> None:
        self._name, self._dtype, self._shape = name, dtype, shape

    name = property(lambda self: self._name, lambda self, v: setattr(self, "_name", v))
    shape = property(lambda self: self._shape, lambda self, v: setattr(self, "_shape", v))
    dtype = property(lambda self: self._dtype)  # settable on 10.x only: read-only is the safe side


class ILayer:
    def __init__(self, trt, op_type: str) -> None:
        kind = _LAYER_TYPES.get(op_type, "ELEMENTWISE")
        self._type = getattr(trt.LayerType, kind)
        self._trt, self._precision, self._output_types = trt, None, {}

    type = property(lambda self: self._type)
    num_outputs = property(lambda self: 1)

    @property
    def precision(self):
        return self._precision

    @precision.setter
    def precision(self, value) -> None:
        self._precision = value

    def set_output_type(self, index, dtype) -> None:
        self._output_types[index] = dtype


class INetworkDefinition:
    def __init__(self, trt, flags: int) -> None:
        self._trt, self._flags = trt, flags
        self._inputs: list[ITensor] = []
        self._outputs: list[ITensor] = []
        self._layers: list[ILayer] = []
        self._onnx: str | None = None

    num_inputs = property(lambda self: len(self._inputs))
    num_outputs = property(lambda self: len(self._outputs))
    num_layers = property(lambda self: len(self._layers))

    def get_input(self, index):
        return self._inputs[index]

    def get_output(self, index):
        return self._outputs[index]

    def get_layer(self, index):
        return self._layers[index]

    def _strongly_typed(self) -> bool:
        trt = self._trt
        if trt.__version__.startswith("11."):
            return True
        return bool(self._flags & (1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)))


class ParserError:
    def __init__(self, index: int, name: str, op: str, desc: str) -> None:
        self._index, self._name, self._op, self._desc = index, name, op, desc

    def code(self):
        return 1

    def desc(self):
        return self._desc

    def node(self):
        return self._index

    def node_name(self):
        return self._name

    def node_operator(self):
        return self._op


class OnnxParser:
    """Reads the graph's I/O (shapes from ONNX shape inference, -1 for a dim no input fixes or
    names) and one layer per node; ops outside the default domain are errors."""

    def __init__(self, network, logger) -> None:
        self._network, self._errors = network, []
        _process_logger(network._trt, logger)

    num_errors = property(lambda self: len(self._errors))

    def get_error(self, index):
        return self._errors[index]

    def parse_from_file(self, model) -> bool:
        import onnx

        graph = onnx.shape_inference.infer_shapes(onnx.load(str(model))).graph
        self._errors = [ParserError(i, n.name, n.op_type, f"No importer registered for op: "
                                    f"{n.op_type}") for i, n in enumerate(graph.node) if n.domain]
        if self._errors:
            return False
        net, trt = self._network, self._network._trt
        symbols = {d.dim_param for v in graph.input for d in v.type.tensor_type.shape.dim}
        net._inputs = [ITensor(v.name, trt.DataType.FLOAT, _dims(v, symbols)) for v in graph.input]
        net._outputs = [ITensor(v.name, trt.DataType.FLOAT, _dims(v, symbols))
                        for v in graph.output]
        net._layers = [ILayer(trt, n.op_type) for n in graph.node]
        net._onnx = str(model)
        return True


def _dims(value, symbols: set[str]) -> tuple:
    """-1 for a dynamic dim; -2 marks (inside the fake) a dim no input determines."""
    dims = []
    for d in value.type.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            dims.append(d.dim_value)
        else:
            dims.append(-1 if d.dim_param in symbols else -2)
    return tuple(dims)


class IOptimizationProfile:
    def __init__(self) -> None:
        self._shapes: dict[str, tuple] = {}

    def set_shape(self, input, min, opt, max) -> None:  # noqa: A002 (TensorRT's names)
        self._shapes[input] = (tuple(min), tuple(opt), tuple(max))


class IHostMemory:
    def __init__(self, data: bytes) -> None:
        self._data = data

    nbytes = property(lambda self: len(self._data))

    def __bytes__(self) -> bytes:
        return self._data


class ITimingCache:
    def __init__(self, device: str, entries: list[str]) -> None:
        self._device, self._entries = device, list(entries)

    def serialize(self):
        return IHostMemory(json.dumps({"device": self._device, "entries": self._entries}).encode())

    def combine(self, input_cache, ignore_mismatch) -> bool:
        if input_cache._device != self._device and not ignore_mismatch:
            return False
        self._entries += [e for e in input_cache._entries if e not in self._entries]
        return True


class IBuilderConfig:
    def __init__(self, trt) -> None:
        self._trt = trt
        self._flags: set[str] = {"TF32"}  # TensorRT's default
        self._profiles: list[IOptimizationProfile] = []
        self._cache: ITimingCache | None = None
        self._pools: dict[str, int] = {}
        self._level, self._hardware = 3, trt.HardwareCompatibilityLevel.NONE

    def set_memory_pool_limit(self, pool, pool_size) -> None:
        self._pools[pool.name] = pool_size

    def set_flag(self, flag) -> None:
        self._flags.add(flag.name)

    def clear_flag(self, flag) -> None:
        self._flags.discard(flag.name)

    def get_flag(self, flag) -> bool:
        return flag.name in self._flags

    hardware_compatibility_level = property(lambda self: self._hardware,
                                            lambda self, v: setattr(self, "_hardware", v))
    builder_optimization_level = property(lambda self: self._level,
                                          lambda self, v: setattr(self, "_level", v))

    def add_optimization_profile(self, profile) -> int:
        valid = profile._shapes and all(
            all(a <= b <= c for a, b, c in zip(lo, opt, hi)) and len(lo) == len(hi)
            for lo, opt, hi in profile._shapes.values())
        if not valid:
            return -1
        self._profiles.append(profile)
        return len(self._profiles) - 1

    def create_timing_cache(self, serialized_timing_cache):
        data = bytes(serialized_timing_cache)
        if not data:
            return ITimingCache(DEVICE, [])
        loaded = json.loads(data)
        return ITimingCache(loaded["device"], loaded["entries"])

    def set_timing_cache(self, cache, ignore_mismatch) -> bool:
        if cache._device != DEVICE and not ignore_mismatch:
            return False
        self._cache = cache
        return True

    def get_timing_cache(self):
        return self._cache


class Builder:
    def __init__(self, logger) -> None:
        self._given = logger
        self._trt = None  # set by fake_tensorrt()

    _logger = property(lambda self: _process_logger(self._trt, self._given))

    def create_network(self, flags=0):
        return INetworkDefinition(self._trt, flags)

    def create_builder_config(self):
        return IBuilderConfig(self._trt)

    def create_optimization_profile(self):
        return IOptimizationProfile()

    def build_serialized_network(self, network, config):
        problem = _build_problem(network, config)
        if problem:
            self._logger.log(self._trt.ILogger.Severity.ERROR, problem)
            return None
        if config._cache is not None:
            config._cache._entries.append(f"tactics:{Path(network._onnx).name}")
        plan = {"fake_plan": self._trt.__version__, "onnx": network._onnx,
                "flags": sorted(config._flags), "pools": config._pools,
                "optimization_level": config._level, "hardware": config._hardware.name,
                "io": [(t.name, True, t.shape) for t in network._inputs]
                + [(t.name, False, t.shape) for t in network._outputs],
                "profile": {k: v for p in config._profiles[:1] for k, v in p._shapes.items()}}
        return IHostMemory(json.dumps(plan).encode())


def _build_problem(network, config) -> str | None:
    """What TensorRT's builder rejects that our code could get wrong."""
    dynamic = any(d < 0 for t in network._inputs for d in t.shape)
    if dynamic and not config._profiles:
        return "Network has dynamic or shape inputs, but no optimization profile has been defined."
    if network._strongly_typed():
        weak = {"FP16", "INT8", "BF16", "FP8"} & config._flags
        if weak:
            return f"BuilderFlag {sorted(weak)} is not allowed with a strongly typed network"
        if any(layer._precision is not None or layer._output_types for layer in network._layers):
            return "setting layer precision is not allowed in a strongly typed network"
    return None


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
