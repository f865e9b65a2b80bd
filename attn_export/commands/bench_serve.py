"""``attn-export bench-serve``: latency and throughput of a running server against in-process."""

from __future__ import annotations

from pathlib import Path

import click

from attn_export.commands.common import fail, handle_errors


def _levels(_ctx, _param, value: str) -> list[int]:
    try:
        levels = sorted({int(v) for v in value.split(",")})
    except ValueError:
        levels = []
    if not levels or min(levels) < 1:
        raise click.BadParameter(f"{value!r} is not a list of positive integers (e.g. 1,4,16)")
    return levels


@click.command("bench-serve")
@click.argument("url")
@click.argument("model")
@click.option("--grpc-url", help="gRPC host:port [URL's host, port 8001].")
@click.option("--unbatched-model", help="The same model served without dynamic_batching, for the "
              "batching on/off comparison (make it with `attn-export repo --no-dynamic-batching`).")
@click.option("--onnx", "onnx_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The model file for the in-process baseline [REPO/MODEL/1/model.onnx with --repo].")
@click.option("--repo", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The repository the server serves (to find the in-process baseline's file).")
@click.option("--shape", help="Request shape, e.g. 1x64x32x32 [the metadata shape, -1 -> 1].")
@click.option("--concurrency", default="1,4,16", show_default=True, callback=_levels)
@click.option("--requests", type=click.IntRange(min=1), default=400, show_default=True,
              help="Requests per concurrency level.")
@click.option("--protocols", type=click.Choice(["both", "http", "grpc"]), default="both",
              show_default=True)
@click.option("--client", "client_kind", type=click.Choice(["tritonclient", "raw"]),
              default="tritonclient", show_default=True,
              help="tritonclient (what applications use) or raw: prebuilt request bytes on a "
              "keep-alive connection / plain gRPC channel, nothing decoded (the server's own share).")
@handle_errors
def bench_serve_command(url, model, grpc_url, unbatched_model, onnx_path, repo, shape, concurrency,
                        requests, protocols, client_kind):
    """Load a running server (URL = HTTP host:port) with MODEL and print p50/p90/p99 and req/s."""
    import numpy as np
    import tritonclient.http as httpclient

    from attn_export.serve.bench import format_levels, in_process, run_level, summary

    if "://" in url:
        fail(f"URL {url!r} must be host:port without a scheme (as tritonclient expects)")
    grpc_url = grpc_url or f"{url.rsplit(':', 1)[0]}:8001"
    meta = httpclient.InferenceServerClient(url).get_model_metadata(model)
    feed, datatypes = _feed(meta, shape)
    onnx_path = onnx_path or (repo / model / "1" / "model.onnx" if repo else None)
    levels = []
    if onnx_path is not None:
        levels.append(in_process(str(onnx_path), feed, requests))
    chosen = ["http", "grpc"] if protocols == "both" else [protocols]
    for protocol in chosen:
        target = url if protocol == "http" else grpc_url
        for name in [model, *([unbatched_model] if unbatched_model else [])]:
            for c in concurrency:
                click.echo(f"... {protocol} ({client_kind}) {name} concurrency {c}", err=True)
                levels.append(run_level(protocol, target, name, feed, datatypes, c, requests,
                                        client=client_kind))
    click.echo(format_levels(levels))
    for line in summary(levels, model):
        click.echo(line)
    if not np.isfinite([lv.percentile(50) for lv in levels]).all():
        fail("some levels produced no successful request (see the errors column)")


def _feed(meta: dict, shape: str | None):
    import numpy as np

    from attn_export.serve.dtypes import numpy_dtype

    feed, datatypes = {}, {}
    rng = np.random.default_rng(0)
    for t in meta["inputs"]:
        dims = [int(d) for d in shape.lower().split("x")] if shape and len(meta["inputs"]) == 1 else \
            [1 if d < 0 else d for d in t["shape"]]
        dtype = numpy_dtype(t["datatype"])
        value = rng.standard_normal(dims) if dtype.kind == "f" else rng.integers(0, 4, dims)
        feed[t["name"]] = value.astype(dtype)
        datatypes[t["name"]] = t["datatype"]
    return feed, datatypes
