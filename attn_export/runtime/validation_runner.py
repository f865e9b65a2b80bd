"""The runner that validates a model file faithfully, chosen from what the file is.

``attn-export validate``, ``build`` and ``serve`` all judge a file with the runner picked here, so
an FP16 graph is always run with its FP16 rounding and an engine with TensorRT.
"""

from __future__ import annotations

from pathlib import Path

from attn_export.runtime.base import Runner
from attn_export.runtime.fp16_rounding import Fp16RoundingRunner, is_fp16_graph
from attn_export.runtime.onnx_file import load_onnx
from attn_export.runtime.onnxruntime_runner import OnnxRuntimeRunner

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


def graph_kind(model) -> str:
    """``qdq`` (has QuantizeLinear), ``fp16`` (computes in float16) or ``fp32``."""
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node):
        return "qdq"
    return "fp16" if is_fp16_graph(model) else "fp32"


def validation_runner(model_path: str | Path) -> tuple[Runner, str]:
    """The runner that validates ``model_path`` faithfully, and the precision it was built for:
    an engine -> TensorRT (precision from its sidecar); a float16 ONNX -> ONNX Runtime with FP16
    rounding; a Q/DQ ONNX -> ONNX Runtime (int8); any other ONNX -> ONNX Runtime (fp32)."""
    path = Path(model_path)
    if path.suffix in ENGINE_SUFFIXES:
        from attn_export.runtime.sidecar import read_sidecar
        from attn_export.runtime.tensorrt_runner import TensorRTRunner

        sidecar = read_sidecar(path)
        return TensorRTRunner(path), (sidecar.precision if sidecar else "fp32")
    kind = graph_kind(load_onnx(path))
    if kind == "fp16":
        return Fp16RoundingRunner(path), "fp16"
    return OnnxRuntimeRunner(path), ("int8" if kind == "qdq" else "fp32")
