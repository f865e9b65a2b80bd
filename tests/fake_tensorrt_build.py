"""The build side of the fake TensorRT (``tests/fake_tensorrt.py``): network, parser, builder
config, timing cache and builder, with the real names and the documented return values our code
must check. Checked against the real bindings with the rest of the fake
(``tests/runtime/test_trt_surface.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

DEVICE = "FakeGPU sm87"
"""The device every fake timing cache is made on; a cache from another device mismatches."""

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
