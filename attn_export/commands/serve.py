"""``attn-export serve``: a Triton-compatible server (HTTP, gRPC, metrics) over a model repository,
and ``attn-export health``: the probe a container HEALTHCHECK runs against it.

The address options also read environment variables (``ATTN_EXPORT_HOST``,
``ATTN_EXPORT_HTTP_PORT``, ...), which ``health`` reads too: setting one variable in a container
moves the server and its health probe together, with no port hard-coded in the image.
"""

from __future__ import annotations

from pathlib import Path

import click

from attn_export.commands.common import fail, handle_errors

ENV_HOST, ENV_HTTP_PORT = "ATTN_EXPORT_HOST", "ATTN_EXPORT_HTTP_PORT"


@click.command("serve")
@click.argument("repo", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, envvar=ENV_HOST, show_envvar=True,
              help="Address to bind (0.0.0.0 or :: to serve other machines).")
@click.option("--http-port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              envvar=ENV_HTTP_PORT, show_envvar=True)
@click.option("--grpc-port", type=click.IntRange(0, 65535), default=8001, show_default=True,
              envvar="ATTN_EXPORT_GRPC_PORT", show_envvar=True)
@click.option("--metrics-port", type=click.IntRange(-1, 65535), default=8002, show_default=True,
              envvar="ATTN_EXPORT_METRICS_PORT", show_envvar=True,
              help="Prometheus /metrics port (-1: no metrics server).")
@click.option("--backend", type=click.Choice(["auto", "onnxruntime", "tensorrt"]), default="auto",
              show_default=True, help="Force a runtime [each model's platform decides].")
@click.option("--strict", is_flag=True, help="Exit 1 if any model fails to load or its golden check.")
@click.option("--max-request-bytes", type=click.IntRange(min=1), default=64 << 20, show_default=True,
              help="Larger request bodies are refused with 413 (gRPC: RESOURCE_EXHAUSTED).")
@click.option("--max-inflight-bytes", type=click.IntRange(min=1 << 20), default=256 << 20,
              show_default=True, help="Memory all requests in flight may hold together (bodies, "
              "decoded tensors, outputs; estimated from each request's size before it is read). "
              "Past it requests get 503 (gRPC: RESOURCE_EXHAUSTED). The default suits an 8 GB Jetson "
              "Orin Nano.")
@click.option("--grace", type=click.FloatRange(min=0), default=5.0, show_default=True,
              help="Seconds accepted requests get to finish after SIGTERM, then the process exits "
              "(keep it under the container's stop timeout: Docker's is 10 s).")
@click.option("--keep-alive", "keep_alive", type=click.FloatRange(min=1), default=75.0,
              show_default=True, help="Seconds an idle HTTP keep-alive connection stays open; keep "
              "it above the idle timeout of any load balancer in front (60 s for AWS ALB, nginx).")
@handle_errors
def serve_command(repo, host, http_port, grpc_port, metrics_port, backend, strict, max_request_bytes,
                  max_inflight_bytes, grace, keep_alive):
    """Serve REPO (a Triton model repository) to any Triton client, HTTP/REST and gRPC."""
    from attn_export.serve.server import ServeOptions, run_server

    if max_request_bytes > max_inflight_bytes:
        fail(f"--max-request-bytes {max_request_bytes} exceeds --max-inflight-bytes {max_inflight_bytes}: "
             "no request that large could ever be accepted; lower one or raise the other")
    run_server(repo, ServeOptions(host=host, http_port=http_port, grpc_port=grpc_port,
                                  metrics_port=metrics_port, backend=backend, strict=strict,
                                  max_request_bytes=max_request_bytes,
                                  max_inflight_bytes=max_inflight_bytes, grace_s=grace,
                                  keep_alive_s=keep_alive))


@click.command("health")
@click.option("--host", default="127.0.0.1", show_default=True, envvar=ENV_HOST, show_envvar=True,
              help="The server's --host (0.0.0.0 and :: are probed on 127.0.0.1).")
@click.option("--http-port", type=click.IntRange(1, 65535), default=8000, show_default=True,
              envvar=ENV_HTTP_PORT, show_envvar=True)
@click.option("--timeout", type=click.FloatRange(min=0.1), default=3.0, show_default=True,
              help="Seconds to wait for the answer.")
def health_command(host, http_port, timeout):
    """Exit 0 when the local server answers /v2/health/ready with 200 (a HEALTHCHECK probe)."""
    import http.client

    host = host.strip("[]")
    # a wildcard bind is probed on IPv4 loopback: '::' binds dual-stack, and containers often
    # have no IPv6 loopback
    host = {"0.0.0.0": "127.0.0.1", "::": "127.0.0.1", "": "127.0.0.1"}.get(host, host)
    where = f"[{host}]:{http_port}" if ":" in host else f"{host}:{http_port}"
    try:
        conn = http.client.HTTPConnection(host, http_port, timeout=timeout)
        conn.request("GET", "/v2/health/ready")
        status = conn.getresponse().status
        conn.close()
    except OSError as exc:
        fail(f"server at {where} is not answering ({exc.strerror or exc}); is `attn-export serve` "
             f"running with --http-port {http_port} (or {ENV_HTTP_PORT})?")
    if status != 200:
        fail(f"server at {where} is not ready (HTTP {status}): models still loading, one failed, "
             "or it is shutting down")
    click.echo(f"ready: {where}")
