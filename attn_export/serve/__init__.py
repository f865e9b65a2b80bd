"""Serving: a Triton model repository generated from our exports, and a server that speaks the
protocol Triton's own clients speak (HTTP/REST with the binary tensor extension, gRPC).

Torch-free by design: it imports numpy, onnx (for the repository checks), onnxruntime or TensorRT
(through :mod:`attn_export.runtime`) and the server stack (Starlette, uvicorn, grpcio,
prometheus-client), each inside the function that needs it, so it runs in a Jetson image.
"""
