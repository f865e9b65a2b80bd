"""A model's real inputs and outputs, read from the ONNX graph or from an engine's sidecar.

The config generator and its checks compare the config against these, never against what the
export's report says, so a config can only describe the file it sits beside.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from attn_export.errors import ModelFileError
from attn_export.runtime.base import TensorSpec


@dataclass(frozen=True)
class ModelIO:
    """A model's inputs and outputs, in graph order."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


def _value_io(value) -> TensorSpec:
    import onnx

    tensor = value.type.tensor_type
    dims = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                 for d in tensor.shape.dim)
    return TensorSpec(value.name, np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)), dims)


def onnx_io(path: str | Path) -> ModelIO:
    """Inputs (initializers excluded) and outputs of an ONNX file; output shapes are inferred when
    the graph does not state them."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, OSError, ...
        raise ModelFileError(f"cannot read ONNX file {path}: {str(exc).splitlines()[0][:200]}; "
                             "expected a complete .onnx file (re-export it)") from None
    if any(not o.type.tensor_type.HasField("shape") for o in model.graph.output):
        model = onnx.shape_inference.infer_shapes(model)
    initializers = {t.name for t in model.graph.initializer}
    inputs = tuple(_value_io(v) for v in model.graph.input if v.name not in initializers)
    outputs = tuple(_value_io(v) for v in model.graph.output)
    return ModelIO(inputs, outputs)


def _sidecar_dtype(name: str) -> np.dtype:
    """numpy names (what our sidecars write) or TensorRT's DataType names (FLOAT, HALF, ...)."""
    from attn_export.runtime.tensorrt_runner import TRT_DTYPES

    if name in TRT_DTYPES:
        return TRT_DTYPES[name]
    try:
        return np.dtype(name)
    except TypeError:
        raise ModelFileError(f"engine sidecar names tensor dtype {name!r}, which has no numpy "
                             "equivalent; keep the engine's I/O in FP32/FP16/INT32/INT64") from None


def sidecar_io(io: list[dict]) -> ModelIO:
    """The ``io`` list of an engine sidecar ({name, mode, dtype, shape with -1}) as a ModelIO."""
    def one(entry: dict) -> TensorSpec:
        return TensorSpec(str(entry["name"]), _sidecar_dtype(str(entry["dtype"])),
                        tuple(None if int(d) < 0 else int(d) for d in entry["shape"]))

    if not io:
        raise ModelFileError("the engine sidecar lists no inputs/outputs (io); rebuild the engine "
                             "with `attn-export build` so its I/O can be checked")
    return ModelIO(tuple(one(e) for e in io if e.get("mode") == "input"),
                   tuple(one(e) for e in io if e.get("mode") != "input"))
