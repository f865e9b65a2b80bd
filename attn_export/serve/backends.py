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

        return TensorRTRunner(path, share_engine=True)  # one engine, a context per instance
    return serving_onnx_runner(path, providers)


def serving_onnx_runner(path: Path, providers: list[str] | None = None, threads: int = 1):
    """An OnnxRuntimeRunner tuned for serving: ``threads`` intra-op threads that sleep when idle.

    ONNX Runtime's default (one spinning thread per core) suits one caller owning the machine; in a
    server the event loop, gRPC's threads and every instance's pool share the cores, and spinning
    pools starve the loop (measured here: ~1 ms added to a 23 us SE call). Parallelism comes from
    ``instance_group`` count instead: one worker thread per instance.
    """
    from attn_export.runtime.onnxruntime_runner import OnnxRuntimeRunner

    class ServingOnnxRuntimeRunner(OnnxRuntimeRunner):
        def _configure(self, options) -> None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.enable_cpu_mem_arena = False  # memory back after each call, not kept at the peak

    return ServingOnnxRuntimeRunner(path, providers)
