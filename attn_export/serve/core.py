"""What both protocols share: the models, lookups by name and version, readiness, metadata."""

from __future__ import annotations

import asyncio

from attn_export import __version__
from attn_export.serve.errors import NotFound
from attn_export.serve.served_model import ServedModel

EXTENSIONS = ["binary_tensor_data", "model_configuration", "statistics"]
"""Advertised in server metadata: perf_analyzer asks for statistics only when listed."""


class InferenceCore:
    """The models of one repository and the answers both protocols give about them."""

    def __init__(self, models: list[ServedModel], metrics=None) -> None:
        self.models = {m.name: m for m in models}
        self.metrics = metrics
        self.loaded = False
        self.stopping = False

    def server_metadata(self) -> dict:
        return {"name": "attn-export", "version": __version__, "extensions": EXTENSIONS}

    @property
    def ready(self) -> bool:
        """Triton's strict readiness: every model loaded and ready, and not shutting down."""
        return self.loaded and not self.stopping and all(m.ready for m in self.models.values())

    def model(self, name: str, version: str = "") -> ServedModel:
        model = self.models.get(name)
        if model is None:
            raise NotFound(f"unknown model {name!r}; this server has {sorted(self.models)}")
        if version not in ("", model.version):
            raise NotFound(f"unknown version {version!r} of model {name!r}; it has version "
                           f"{model.version}")
        return model

    async def load_all(self) -> None:
        """Load every model in worker threads (the loop keeps answering live/ready meanwhile)."""
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(None, m.load) for m in self.models.values()))
        for m in self.models.values():
            m.start()
            if self.metrics is not None:
                self.metrics.ready.labels(m.name, m.version).set(1 if m.ready else 0)
        self.loaded = True

    def statistics(self, name: str = "", version: str = "") -> dict:
        models = [self.model(name, version)] if name else list(self.models.values())
        return {"model_stats": [m.stats.to_dict() for m in models]}

    def index(self) -> list[dict]:
        return [{"name": m.name, "version": m.version, "state": m.state, "reason": m.reason}
                for m in self.models.values()]

    def flush_batchers(self) -> None:
        """Shutdown: refuse new requests and run queued ones without waiting out the delay."""
        for m in self.models.values():
            if m.batcher is not None:
                m.batcher.begin_close()

    async def close(self) -> None:
        self.stopping = True
        await asyncio.gather(*(m.close() for m in self.models.values()))
