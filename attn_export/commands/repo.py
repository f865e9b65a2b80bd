"""``attn-export repo``: export folders -> a Triton model repository, every config checked."""

from __future__ import annotations

from pathlib import Path

import click

from attn_export.commands.common import fail, handle_errors


@click.command("repo")
@click.argument("export_dirs", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="The repository folder to write (replaced only with --force).")
@click.option("--prefer", type=click.Choice(["plan", "onnx"]), default="plan", show_default=True,
              help="Platform when an export has both an engine and an ONNX (both are copied).")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp32",
              show_default=True, help="Which of the export's graphs/engines to serve.")
@click.option("--max-batch", type=click.IntRange(min=1),
              help="max_batch_size [the engine profile's max batch; 8 for a dynamic-batch ONNX].")
@click.option("--max-queue-delay-us", type=click.IntRange(min=0), default=0, show_default=True,
              help="dynamic_batching max_queue_delay_microseconds.")
@click.option("--max-queue-size", type=click.IntRange(min=1), default=128, show_default=True,
              help="Requests queued per model before new ones are refused (503 / UNAVAILABLE).")
@click.option("--instances", type=click.IntRange(min=1), default=1, show_default=True,
              help="instance_group count: model copies, one worker each.")
@click.option("--name", "names", multiple=True,
              help="Model name, one per EXPORT_DIR in order [the block name].")
@click.option("--no-dynamic-batching", is_flag=True,
              help="Keep max_batch_size but run each request alone (a baseline for benchmarks).")
@click.option("--force", is_flag=True, help="Replace an existing, non-empty --out.")
@handle_errors
def repo_command(export_dirs, out, prefer, precision, max_batch, max_queue_delay_us, max_queue_size,
                 instances, names, no_dynamic_batching, force):
    """Write EXPORT_DIRS as a Triton model repository (config.pbtxt, model.onnx/model.plan, golden).

    Engines of one model built on different GPUs (several folders under one name, or one folder
    holding several engines) become one model with a plan per compute capability
    (model.sm87.plan, model.sm110.plan) named in config.pbtxt's cc_model_filenames.
    """
    from attn_export.serve.config import BatchOptions, model_config_pb2
    from attn_export.serve.repository import plan_models, source_from_export, write_repository

    if names and len(names) != len(export_dirs):
        fail(f"{len(names)} --name for {len(export_dirs)} export folders; give one per folder, in order")
    model_config_pb2()  # a missing serving extra fails before any work
    options = BatchOptions(max_batch, max_queue_delay_us, max_queue_size, instances,
                           dynamic_batching=not no_dynamic_batching)
    sources = [source_from_export(folder, precision) for folder in export_dirs]
    planned = plan_models([(names[i] if names else s.block, s) for i, s in enumerate(sources)],
                          prefer, options)
    write_repository(planned, out, force)
    for p in planned:
        cfg = p.config
        devices = f", engines for compute capability {', '.join(p.plans)}" if p.plans else ""
        click.echo(f"{p.name}: {cfg.platform}{devices}, max_batch_size {cfg.max_batch_size}, "
                   f"{cfg.instance_group[0].count} instance(s) <- {p.source.export_dir}"
                   + ("" if p.source.golden else " (no golden file)"))
    click.echo(f"wrote {out} ({len(planned)} models); serve it with `attn-export serve {out}` or "
               f"`tritonserver --model-repository {out}`")
