"""``attn-export serve``: a Triton-compatible server (HTTP, gRPC, metrics) over a model repository."""

from __future__ import annotations

from pathlib import Path

import click

from attn_export.commands.common import handle_errors


@click.command("serve")
@click.argument("repo", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind (0.0.0.0 to serve other machines).")
@click.option("--http-port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--grpc-port", type=click.IntRange(0, 65535), default=8001, show_default=True)
@click.option("--metrics-port", type=click.IntRange(-1, 65535), default=8002, show_default=True,
              help="Prometheus /metrics port (-1: no metrics server).")
@click.option("--backend", type=click.Choice(["auto", "onnxruntime", "tensorrt"]), default="auto",
              show_default=True, help="Force a runtime [each model's platform decides].")
@click.option("--strict", is_flag=True, help="Exit 1 if any model fails to load or its golden check.")
@click.option("--max-request-bytes", type=click.IntRange(min=1), default=64 << 20, show_default=True,
              help="Larger request bodies are refused with 413 (gRPC: RESOURCE_EXHAUSTED).")
@click.option("--grace", type=click.FloatRange(min=0), default=5.0, show_default=True,
              help="Seconds accepted requests get to finish after SIGTERM, then the process exits "
              "(keep it under the container's stop timeout: Docker's is 10 s).")
@handle_errors
def serve_command(repo, host, http_port, grpc_port, metrics_port, backend, strict, max_request_bytes,
                  grace):
    """Serve REPO (a Triton model repository) to any Triton client, HTTP/REST and gRPC."""
    from attn_export.serve.server import ServeOptions, run_server

    run_server(repo, ServeOptions(host, http_port, grpc_port, metrics_port, backend, strict,
                                  max_request_bytes, grace))
