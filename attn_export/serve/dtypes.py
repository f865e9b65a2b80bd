"""Tensor datatypes in the three spellings serving needs: numpy, the protocol's (``FP32``) and the
model config's (``TYPE_FP32``). One table, so the wire and the config can never disagree."""

from __future__ import annotations

import numpy as np

from attn_export.errors import ValidationError

PROTOCOL_DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_), "UINT8": np.dtype(np.uint8), "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32), "UINT64": np.dtype(np.uint64), "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16), "INT32": np.dtype(np.int32), "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16), "FP32": np.dtype(np.float32), "FP64": np.dtype(np.float64),
}
"""Open Inference Protocol datatype -> numpy (BYTES and BF16 have no fixed-size numpy twin here)."""

_BY_NUMPY = {v: k for k, v in PROTOCOL_DTYPES.items()}


def protocol_dtype(dtype: np.dtype) -> str:
    """numpy dtype -> ``FP32`` etc.; a dtype the protocol has no name for is a ValidationError."""
    try:
        return _BY_NUMPY[np.dtype(dtype)]
    except KeyError:
        raise ValidationError(f"tensor dtype {np.dtype(dtype).name} cannot be served; expected one of "
                              f"{', '.join(np.dtype(d).name for d in PROTOCOL_DTYPES.values())}") from None


def numpy_dtype(datatype: str) -> np.dtype:
    """``FP32`` -> float32; unknown names are a ValidationError naming the accepted ones."""
    try:
        return PROTOCOL_DTYPES[datatype]
    except KeyError:
        raise ValidationError(f"datatype {datatype!r} is not supported; expected one of "
                              f"{', '.join(PROTOCOL_DTYPES)}") from None


def config_dtype(datatype: str) -> str:
    """``FP32`` -> ``TYPE_FP32`` (the model config's enum name)."""
    return f"TYPE_{datatype}"


def datatype_of_config(type_name: str) -> str:
    """``TYPE_FP32`` -> ``FP32``."""
    return type_name[len("TYPE_"):] if type_name.startswith("TYPE_") else type_name
