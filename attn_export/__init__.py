"""attn-export: classic CNN attention blocks, exported and validated for edge deployment.

Importing the package imports nothing heavy: torch, onnx and onnxruntime load where they are used.
"""

__version__ = "0.1.0"
