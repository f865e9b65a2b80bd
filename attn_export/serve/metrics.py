"""Prometheus metrics, served on their own port: requests, failures, queue and compute time,
batch sizes and queue depth per model.

Each server owns a registry (not prometheus-client's global one), so two servers in one process
(the tests) do not collide. Names map onto Triton's: ``attn_serve_requests_total{outcome}`` ~
``nv_inference_request_success/failure``, ``attn_serve_queue_seconds`` ~
``nv_inference_queue_duration_us``, ``attn_serve_compute_seconds`` ~
``nv_inference_compute_infer_duration_us``, ``attn_serve_batch_rows`` ~ inference/exec count.
"""

from __future__ import annotations

LATENCY_BUCKETS = (1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """The server's metric families on a private registry."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        labels = ("model", "version")
        self.requests = Counter("attn_serve_requests", "Inference requests answered",
                                (*labels, "protocol", "outcome"), registry=self.registry)
        self.failures = Counter("attn_serve_request_failures", "Failed inference requests by HTTP status",
                                (*labels, "protocol", "status"), registry=self.registry)
        self.request_seconds = Histogram("attn_serve_request_seconds", "End-to-end request time in the "
                                         "server", (*labels, "protocol"), buckets=LATENCY_BUCKETS,
                                         registry=self.registry)
        self.queue_seconds = Histogram("attn_serve_queue_seconds", "Time a request waited for a batch",
                                       labels, buckets=LATENCY_BUCKETS, registry=self.registry)
        self.compute_seconds = Histogram("attn_serve_compute_seconds", "Time one batch ran in the model",
                                         labels, buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_rows = Histogram("attn_serve_batch_rows", "Rows per executed batch", labels,
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=self.registry)
        self.queue_depth = Gauge("attn_serve_queue_depth", "Requests waiting", labels,
                                 registry=self.registry)
        self.ready = Gauge("attn_serve_model_ready", "1 when the model is ready", labels,
                           registry=self.registry)

    def exposition(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


def start_metrics_server(metrics: Metrics, host: str, port: int):
    """prometheus-client's own HTTP server in a daemon thread; returns (server, thread)."""
    from prometheus_client import start_http_server

    from attn_export.errors import AttnExportError

    try:
        return start_http_server(port, addr=host, registry=metrics.registry)
    except OSError as exc:
        raise AttnExportError(f"cannot serve metrics on {host}:{port} ({exc.strerror}); pass "
                              "--metrics-port (-1 for none)") from None
