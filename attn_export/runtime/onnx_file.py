"""Loading an ONNX file with one clear error for a missing, truncated or foreign file.

In ``runtime/`` because validation and serving load the graphs they run (the FP16 rounding runner,
the runner factory) without the export pipeline; ``export/check.py`` re-exports it.
"""

from __future__ import annotations

from pathlib import Path

from attn_export.errors import ModelFileError


def load_onnx(path: str | Path):
    """Load an ONNX file, turning a missing, truncated or foreign file into a clear error."""
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"ONNX file {path} does not exist")
    _check_external_data(path)
    try:
        model = onnx.load(str(path))
    except (DecodeError, ValueError, RuntimeError, OSError, onnx.checker.ValidationError) as exc:
        raise ModelFileError(
            f"{path} is not a readable ONNX model ({str(exc)[:200]}); it may be truncated: "
            "re-export it with `attn-export BLOCK`"
        ) from None
    if not model.graph.node and not model.graph.input:
        raise ModelFileError(f"{path} holds no graph; expected an ONNX model, re-export it")
    return model


def _check_external_data(path: Path) -> None:
    """A graph whose weights live in separate files needs every one of them beside it; say which
    is missing (onnx and ONNX Runtime report it as a checker or path-validation failure)."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError):
        return  # unreadable: load_onnx says so with its own message
    for tensor in onnx.external_data_helper._get_all_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        if not (path.parent / location).is_file():
            raise ModelFileError(
                f"{path} keeps tensor {tensor.name!r} in the external data file {location!r}, "
                f"which is not beside it in {path.parent}; copy it there with the model")


def default_opset(model, missing=None):
    """The opset of ONNX's default domain (``""`` or ``"ai.onnx"``) the model imports, else
    ``missing``."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), missing)
