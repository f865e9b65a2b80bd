"""ONNX Runtime backend: CPU everywhere, CUDA when onnxruntime-gpu and a device are present."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from attn_export.errors import MissingDependencyError, ModelFileError
from attn_export.runtime.base import Feed, Runner, TensorSpec

_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def available_providers(prefer_cuda: bool = True) -> list[str]:
    import onnxruntime as ort

    have = ort.get_available_providers()
    order = ["CUDAExecutionProvider", "CPUExecutionProvider"] if prefer_cuda else []
    chosen = [p for p in order if p in have]
    return chosen or ["CPUExecutionProvider"]


class OnnxRuntimeRunner(Runner):
    """Runs an ONNX file (or serialized bytes) in an ``InferenceSession``."""

    name = "onnxruntime"

    def __init__(self, model: str | Path | bytes, providers: list[str] | None = None) -> None:
        super().__init__()
        self.model = model
        self.providers = providers
        self._session = None

    def _load(self) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise MissingDependencyError(
                "onnxruntime is not installed; install it with `pip install onnxruntime`"
            ) from exc
        source = self.model if isinstance(self.model, bytes) else str(self.model)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self._configure(options)
        try:
            self._session = ort.InferenceSession(
                source, sess_options=options, providers=self.providers or available_providers()
            )
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/NoSuchFile types
            where = "the given bytes" if isinstance(self.model, bytes) else str(self.model)
            raise ModelFileError(
                f"ONNX Runtime cannot load {where}: {str(exc).splitlines()[0][:300]}; "
                "expected a complete .onnx file (re-export it with `attn-export BLOCK`)"
            ) from None
        self.name = f"onnxruntime[{self._session.get_providers()[0].replace('ExecutionProvider', '')}]"

    def _configure(self, options) -> None:
        """Adjust the ``SessionOptions`` before the session is made (a server pins threads)."""

    def _close(self) -> None:
        self._session = None

    def _input_spec(self) -> list[TensorSpec]:
        return [
            TensorSpec(
                i.name,
                np.dtype(_ORT_DTYPES.get(i.type, np.float32)),
                tuple(d if isinstance(d, int) else None for d in i.shape),
            )
            for i in self._session.get_inputs()
        ]

    def output_names(self) -> list[str]:
        self.load()
        return [o.name for o in self._session.get_outputs()]

    def _infer(self, feed: Feed) -> Feed:
        names = self.output_names()
        return dict(zip(names, self._session.run(names, feed)))
