"""Opening a TensorRT plan, in one place: runtime, lean runtime, deserialisation, I/O description.

Everything that opens an engine (the runner, the bench, the server's instances) goes through
:func:`open_engine`, so each gets the same care: a version-compatible plan is deserialised by a
runtime allowed to run the lean runtime it embeds (``engine_host_code_allowed``), or by the lean
runtime loaded from its library for plans built with ``EXCLUDE_LEAN_RUNTIME``; a ``None`` engine
becomes one line with TensorRT's reason (captured from the process logger); input shapes are set
through :func:`set_input_shapes`, which refuses the ones TensorRT refuses.

What does not need a GPU (the I/O description, the profile checks) is plain Python over
:class:`EngineTensor` values and is tested without TensorRT.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from attn_export.errors import ModelFileError, ValidationError
from attn_export.runtime.base import Feed, TensorSpec
from attn_export.runtime.sidecar import EngineSidecar
from attn_export.runtime.trt_env import LEAN_RUNTIME_ENV, lean_runtime_path
from attn_export.runtime.trt_logger import capture_log, get_trt_logger
from attn_export.runtime.trt_version import trt_version

TRT_DTYPES: dict[str, np.dtype] = {
    "FLOAT": np.dtype(np.float32), "HALF": np.dtype(np.float16), "INT8": np.dtype(np.int8),
    "INT32": np.dtype(np.int32), "INT64": np.dtype(np.int64), "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
}
"""``trt.DataType`` member name -> numpy dtype (BF16, FP8, INT4 have no numpy twin)."""


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


@dataclass
class OpenedEngine:
    """A deserialised ``ICudaEngine`` with the runtimes it lives in (TensorRT keeps pointers into
    them: they must outlive the engine) and its I/O description."""

    engine: object
    io: list[EngineTensor]
    runtimes: list = field(default_factory=list)
    version: str = ""


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


def data_dependent_outputs(io: list[EngineTensor], shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """Outputs whose shape is still unknown (-1) once every input shape is set: their size depends
    on the data (NonZero, NMS, ...), which needs an ``IOutputAllocator`` this runner lacks."""
    return [t.name for t in io if not t.is_input and any(d < 0 for d in shapes[t.name])]


def set_input_shapes(context, shapes: dict[str, tuple[int, ...]], label: str) -> None:
    """``IExecutionContext.set_input_shape`` for each input; a refused shape is an error here,
    not a wrong answer (or a crash) at execution."""
    for name, shape in shapes.items():
        if not context.set_input_shape(name, tuple(int(d) for d in shape)):
            raise ValidationError(f"{label}: TensorRT refused shape {'x'.join(map(str, shape))} "
                                  f"for input {name!r} (outside the engine's profile?)")


def make_runtime(trt, path: Path, sidecar: EngineSidecar | None,
                 lean_runtime: str | Path | None = None) -> list:
    """The runtimes that deserialise ``path``: ``[trt.Runtime]``, or for a plan built with
    ``EXCLUDE_LEAN_RUNTIME`` ``[trt.Runtime, lean runtime]`` (the last one deserialises). A
    version-compatible plan that embeds its lean runtime needs ``engine_host_code_allowed``."""
    runtime = trt.Runtime(get_trt_logger(trt))
    if sidecar is None or not sidecar.version_compatible:
        return [runtime]
    if "EXCLUDE_LEAN_RUNTIME" not in sidecar.plan.get("builder_flags", ()):
        runtime.engine_host_code_allowed = True  # the plan embeds its lean runtime
        return [runtime]
    library = lean_runtime_path(trt_version(trt).major, lean_runtime)
    with capture_log(trt) as log:
        lean = runtime.load_runtime(library)
    if lean is None:
        raise ModelFileError(
            f"{path} was built with --exclude-lean-runtime and needs TensorRT's lean runtime, "
            f"which cannot be loaded from {library} ({log.reason(2)}); install it (pip install "
            f"tensorrt-lean-cu12 or -cu13) or point {LEAN_RUNTIME_ENV} at libnvinfer_lean.so")
    return [runtime, lean]


def open_engine(trt, path: str | Path, sidecar: EngineSidecar | None = None,
                lean_runtime: str | Path | None = None, data: bytes | None = None
                ) -> OpenedEngine:
    """Deserialise the plan at ``path`` (``data``: its bytes, when already read).

    Raises:
        ModelFileError: the file is missing or empty, the lean runtime cannot be loaded, or
            TensorRT refuses the plan (with TensorRT's reason, on one line).
    """
    path = Path(path)
    if data is None:
        if not path.is_file():
            raise ModelFileError(f"engine {path} does not exist; build it with "
                                 "`attn-export build MODEL.onnx`")
        data = path.read_bytes()
    if not data:
        raise ModelFileError(f"engine {path} is empty; rebuild it")
    runtimes = make_runtime(trt, path, sidecar, lean_runtime)
    with capture_log(trt) as log:
        engine = runtimes[-1].deserialize_cuda_engine(data)
    if engine is None:
        raise ModelFileError(
            f"TensorRT {trt.__version__} cannot deserialize {path} ({log.reason(2)}); the file is "
            "corrupt, truncated, or built for another TensorRT version/GPU: rebuild it on this "
            "machine")
    return OpenedEngine(engine, describe_engine(engine, trt), runtimes, str(trt.__version__))
