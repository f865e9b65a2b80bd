"""HTTP/REST bodies of the Open Inference Protocol with Triton's binary tensor extension.

A request is a JSON header optionally followed by raw tensors; ``Inference-Header-Content-Length``
gives the header's size (tritonclient sends no Content-Type, so we branch on that header). Each
input with ``parameters.binary_data_size`` takes that many bytes, in the order of the JSON inputs.
Outputs go back binary when the request's ``binary_data_output`` or the output's ``binary_data``
parameter says so, else as flat JSON arrays.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from attn_export.errors import ValidationError
from attn_export.serve.dtypes import numpy_dtype, protocol_dtype
from attn_export.serve.errors import BadRequest


@dataclass
class HttpRequest:
    id: str | None
    inputs: dict[str, np.ndarray]
    outputs: list[tuple[str, bool]] | None  # (name, binary) as requested; None = all
    binary_default: bool


def _shape(entry: dict, name: str) -> tuple[int, ...]:
    shape = entry.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise BadRequest(f"input {name!r}: 'shape' must be a list of non-negative integers, got {shape!r}")
    return tuple(shape)


def _dtype(entry: dict, name: str) -> np.dtype:
    try:
        return numpy_dtype(str(entry.get("datatype")))
    except ValidationError as exc:
        raise BadRequest(f"input {name!r}: {exc}") from None


def _binary_input(name, dtype, shape, size, binary: memoryview, offset: int) -> tuple[np.ndarray, int]:
    if not isinstance(size, int) or size < 0:
        raise BadRequest(f"input {name!r}: binary_data_size must be a non-negative integer, got {size!r}")
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if size != expected:
        raise BadRequest(f"input {name!r}: binary_data_size {size} bytes, but shape {list(shape)} of "
                         f"{protocol_dtype(dtype)} needs {expected}")
    if offset + size > len(binary):
        raise BadRequest(f"input {name!r}: needs {size} bytes of binary data at offset {offset}, the body "
                         f"has {len(binary) - offset} left")
    array = np.frombuffer(binary[offset:offset + size], dtype=dtype.newbyteorder("<")).reshape(shape)
    return array.astype(dtype, copy=False), offset + size


def _json_input(name, dtype, shape, data) -> np.ndarray:
    if data is None:
        raise BadRequest(f"input {name!r} has neither 'data' nor parameters.binary_data_size")
    try:
        array = np.asarray(data, dtype=dtype)
    except (TypeError, ValueError, OverflowError) as exc:
        raise BadRequest(f"input {name!r}: data is not a {protocol_dtype(dtype)} array ({exc})") from None
    count = int(np.prod(shape, dtype=np.int64))
    if array.size != count:
        raise BadRequest(f"input {name!r}: {array.size} values for shape {list(shape)} ({count} expected)")
    return array.reshape(shape)


def decode_request(body: bytes, header_length: str | None) -> HttpRequest:
    """Parse an infer body; every malformation is a BadRequest with a one-line reason."""
    if header_length is None:
        json_part, binary = body, memoryview(b"")
    else:
        try:
            n = int(header_length)
        except ValueError:
            raise BadRequest(f"Inference-Header-Content-Length {header_length!r} is not an integer") from None
        if not 0 < n <= len(body):
            raise BadRequest(f"Inference-Header-Content-Length {n} is outside the body's {len(body)} bytes")
        json_part, binary = body[:n], memoryview(body)[n:]
    try:
        header = json.loads(json_part)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"request body is not valid JSON ({exc})") from None
    if not isinstance(header, dict) or not isinstance(header.get("inputs"), list):
        raise BadRequest("request JSON must be an object with an 'inputs' list")
    inputs, offset = {}, 0
    for entry in header["inputs"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise BadRequest("every input must be an object with a 'name'")
        name = entry["name"]
        if name in inputs:
            raise BadRequest(f"input {name!r} is given twice")
        dtype, shape = _dtype(entry, name), _shape(entry, name)
        params = entry.get("parameters") or {}
        if "binary_data_size" in params:
            inputs[name], offset = _binary_input(name, dtype, shape, params["binary_data_size"], binary,
                                                 offset)
        else:
            inputs[name] = _json_input(name, dtype, shape, entry.get("data"))
    if offset != len(binary):
        raise BadRequest(f"body has {len(binary) - offset} bytes of binary data no input accounts for")
    params = header.get("parameters") or {}
    binary_default = bool(params.get("binary_data_output", False))
    outputs = None
    if header.get("outputs") is not None:
        if not isinstance(header["outputs"], list) or not all(
                isinstance(o, dict) and isinstance(o.get("name"), str) for o in header["outputs"]):
            raise BadRequest("'outputs' must be a list of objects with a 'name'")
        outputs = [(o["name"], bool((o.get("parameters") or {}).get("binary_data", binary_default)))
                   for o in header["outputs"]]
    rid = header.get("id")
    return HttpRequest(None if rid is None else str(rid), inputs, outputs, binary_default)


def decode_raw_request(body: bytes, inputs: dict[str, tuple[np.dtype, tuple[int, ...]]],
                       batching: bool) -> HttpRequest:
    """Triton's raw binary request (``Inference-Header-Content-Length: 0``): the body is the one
    input's bytes, at batch 1, every output returned binary. Needs a single input whose
    non-batch dims are all fixed, since no header says the shape."""
    if len(inputs) != 1:
        raise BadRequest(f"a raw binary request needs a single-input model; this one has {sorted(inputs)}")
    (name, (dtype, dims)), = inputs.items()
    if any(d < 0 for d in dims):
        raise BadRequest(f"a raw binary request needs fixed dims, input {name!r} has {list(dims)}; "
                         "send a JSON header with the shape")
    shape = ((1,) if batching else ()) + tuple(dims)
    array, _ = _binary_input(name, dtype, shape, len(body), memoryview(body), 0)
    return HttpRequest(None, {name: array}, None, True)


JSON_CHUNK = 4096
"""Values per ``tolist``/``dumps`` step of a JSON tensor: each step holds the GIL (C code) for
under a millisecond here, so the event loop gets it back between steps while a worker encodes."""


def json_values(value: np.ndarray) -> bytes:
    """A tensor as a flat JSON array, encoded in :data:`JSON_CHUNK`-value steps."""
    flat = value.ravel()
    parts = [json.dumps(flat[i:i + JSON_CHUNK].tolist(), separators=(",", ":"))[1:-1]
             for i in range(0, flat.size, JSON_CHUNK)]
    return ("[" + ",".join(parts) + "]").encode()


def json_value_count(outputs: dict[str, np.ndarray], wanted: list[tuple[str, bool]]) -> int:
    """How many values of the response go out as JSON numbers (what makes encoding costly)."""
    return sum(int(outputs[name].size) for name, binary in wanted if not binary)


def encode_response(model: str, version: str, rid: str | None, outputs: dict[str, np.ndarray],
                    wanted: list[tuple[str, bool]]) -> tuple[list, int | None]:
    """(body parts, JSON header length or None when no output is binary): the JSON header, then
    each binary tensor's own buffer (no copy when it is little-endian and contiguous). JSON
    tensors are spliced into the header text by placeholder, each encoded by :func:`json_values`."""
    entries, blobs, arrays = [], [], []
    for name, binary in wanted:
        value = np.ascontiguousarray(outputs[name])
        entry = {"name": name, "datatype": protocol_dtype(value.dtype), "shape": list(value.shape)}
        if binary:
            little = value.astype(value.dtype.newbyteorder("<"), copy=False)
            blob = memoryview(little).cast("B") if little.size else b""
            entry["parameters"] = {"binary_data_size": len(blob) if isinstance(blob, bytes) else blob.nbytes}
            blobs.append(blob)
        else:
            entry["data"] = f"\0{len(arrays)}\0"  # replaced below; "\0" cannot come from a name
            arrays.append(value)
        entries.append(entry)
    header = {"model_name": model, "model_version": version, "outputs": entries}
    if rid is not None:  # after the outputs: a client's id never precedes a placeholder
        header["id"] = rid
    text = json.dumps(header, separators=(",", ":")).encode()
    for k, value in enumerate(arrays):
        text = text.replace(f'"\\u0000{k}\\u0000"'.encode(), json_values(value), 1)
    return [text, *blobs], (len(text) if blobs else None)
