"""A TensorRT engine's model spec (I/O and profiles), read from its JSON sidecar.

Shared by the repository writer and the per-device plan checks, which must not import each other.
"""

from __future__ import annotations

from pathlib import Path

from attn_export.serve.config import ConfigError, ModelSpec
from attn_export.serve.model_io import sidecar_io


def engine_spec(name: str, engine: Path) -> ModelSpec:
    from attn_export.runtime.sidecar import read_sidecar

    sidecar = read_sidecar(engine)
    if sidecar is None:
        raise ConfigError(f"engine {engine} has no .engine.json sidecar: its optimization profiles "
                          "are unknown, so max_batch_size cannot be checked; rebuild it with "
                          "`attn-export build`")
    return ModelSpec(name, "tensorrt_plan", sidecar_io(sidecar.io), list(sidecar.profiles))
