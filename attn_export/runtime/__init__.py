"""Backends and comparison. Imports numpy only; each backend imports its framework lazily, so this
package runs alone on a Jetson with just onnxruntime or TensorRT."""

from attn_export.runtime.base import Runner, TensorSpec
from attn_export.runtime.compare import TOLERANCES, Comparison, Tolerance, compare

__all__ = ["TOLERANCES", "Comparison", "Runner", "TensorSpec", "Tolerance", "compare"]
