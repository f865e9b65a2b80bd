"""The structural checks every graph passes before anyone runs it."""

from __future__ import annotations

from pathlib import Path

from attn_export.errors import ModelFileError
from attn_export.runtime.onnx_file import load_onnx

__all__ = ["checked_onnx", "load_onnx", "op_types"]


def checked_onnx(path: str | Path):
    """Full ``onnx.checker`` pass and strict shape inference; returns the inferred model."""
    import onnx

    model = load_onnx(path)
    try:
        onnx.checker.check_model(model, full_check=True)
        return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ModelFileError(f"{path} fails the ONNX checker: {str(exc).splitlines()[0][:300]}") \
            from None


def op_types(model) -> dict[str, int]:
    """Op type -> count over the graph, as the forbidden-construct tests read it."""
    counts: dict[str, int] = {}
    for node in model.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts
