"""The runner behind a model: ONNX Runtime or TensorRT, through :mod:`attn_export.runtime`.

Chosen per model from its platform; ``--backend`` forces one, using the other file of the version
folder when the repository holds both (``model.onnx`` and ``model.plan``). TensorRT is imported
only when a plan is loaded.
"""

from __future__ import annotations

from pathlib import Path

from attn_export.errors import ModelFileError

BACKENDS = ("auto", "onnxruntime", "tensorrt")


def model_file_for(path: Path, platform: str, backend: str) -> tuple[str, Path]:
    """(backend, file) that serves a model whose config names ``path`` for ``platform``."""
    chosen = backend if backend != "auto" else \
        ("tensorrt" if platform == "tensorrt_plan" else "onnxruntime")
    want = path.with_name("model.plan" if chosen == "tensorrt" else "model.onnx")
    if path.suffix == want.suffix:
        return chosen, path
    if not want.is_file():
        raise ModelFileError(f"--backend {chosen} needs {want.name} beside {path.name}, and there is "
                             "none; regenerate the repository from an export that has it")
    return chosen, want


def make_runner(backend: str, path: Path, providers: list[str] | None = None):
    """An unloaded Runner for ``path``; loading (and its errors) happens in the worker."""
    if backend == "tensorrt":
        from attn_export.runtime.tensorrt_runner import TensorRTRunner

        return TensorRTRunner(path)
    from attn_export.runtime.onnxruntime_runner import OnnxRuntimeRunner

    return OnnxRuntimeRunner(path, providers)
