"""``attn-export bench BLOCK|MODEL.onnx|ENGINE``: latency percentiles and ratios to a one-pass floor.

For a block: its deploy graph, its naive export (the published form, as ``--variant reference``
exports it) and the floor (one ``Mul`` over the same tensor), interleaved in the same run. For an
ONNX file: the model and the floor. For a TensorRT engine: CUDA-event timing of the engine (and a
CUDA graph with ``--use-cuda-graph``). Timing only: no test here asserts a speed.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import click

from attn_export.commands.common import fail, handle_errors, parse_sets

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
DEFAULT_SPATIAL = (56, 56)


def parse_shapes(_ctx, _param, value: str | None) -> list[tuple[int, ...]]:
    """``1x64x56x56,8x64x56x56`` -> [(1, 64, 56, 56), (8, 64, 56, 56)]."""
    if not value:
        return []
    shapes = []
    for item in value.split(","):
        try:
            dims = tuple(int(d) for d in item.strip().lower().split("x"))
        except ValueError:
            dims = ()
        if len(dims) != 4 or min(dims) < 1:
            raise click.BadParameter(f"{item!r} is not NxCxHxW with 4 positive integers; give "
                                     "shapes like 1x64x56x56,8x64x56x56")
        shapes.append(dims)
    return shapes


def target_kind(target: str) -> str:
    """``block``, ``onnx`` or ``engine``; a name that is none of them fails with the choices."""
    from attn_export.modules.registry import BLOCKS, list_blocks

    if target in BLOCKS:
        return "block"
    path = Path(target)
    if path.suffix in (".onnx", *ENGINE_SUFFIXES):
        if not path.is_file():
            fail(f"{target} does not exist; expected an exported .onnx or a built .engine")
        return "onnx" if path.suffix == ".onnx" else "engine"
    fail(f"{target!r} is neither a block ({', '.join(list_blocks())}) nor an .onnx or "
         f".engine file")
    return ""


@contextlib.contextmanager
def progress(total: int, label: str, enabled: bool):
    """A click progress bar on stderr over ``total`` rounds; yields the per-round callback.

    Only on a terminal: piped output (``--json``, ``make bench > file``) stays clean.
    """
    if not enabled or total <= 1 or not sys.stderr.isatty():
        yield None
        return
    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
        yield lambda: bar.update(1)


@click.command("bench")
@click.argument("target")
@click.option("--shapes", callback=parse_shapes,
              help="Comma-separated NxCxHxW shapes [a block: 1xCx56x56; a model: its static "
              "input shape].")
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True,
              help="ONNX Runtime intra-op threads.")
@click.option("--rounds", type=click.IntRange(min=2), default=20, show_default=True,
              help="Interleaved rounds; each runs every graph once for a burst.")
@click.option("--warmup", type=click.IntRange(min=0), default=5, show_default=True,
              help="Untimed runs of each graph before the first round.")
@click.option("--iters", type=click.IntRange(min=1),
              help="Runs per graph per round [enough for a ~0.1 s burst, 5..200].")
@click.option("--backend", type=click.Choice(["ort-cpu", "ort-cuda", "tensorrt"]),
              help="[ort-cpu for blocks and .onnx files, tensorrt for engines]")
@click.option("--use-cuda-graph", is_flag=True,
              help="TensorRT: replay the engine as a CUDA graph where it can be captured.")
@click.option("--set", "kwargs", multiple=True, callback=parse_sets, metavar="KEY=VALUE",
              help="Block keyword argument, repeatable (e.g. --set reduction=8).")
@click.option("--no-naive", is_flag=True, help="A block: skip its naive export.")
@click.option("--profile", "show_profile", is_flag=True,
              help="ONNX Runtime: also print the op-by-op profile of the deploy graph/model.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")
@handle_errors
def bench_command(target, shapes, threads, rounds, warmup, iters, backend, use_cuda_graph, kwargs,
                  no_naive, show_profile, as_json):
    """Time TARGET (a block name, MODEL.onnx or ENGINE) against a one-pass floor, interleaved."""
    from attn_export.bench.run import BenchSettings

    kind = target_kind(target)
    backend = backend or ("tensorrt" if kind == "engine" else "ort-cpu")
    if (kind == "engine") != (backend == "tensorrt"):
        fail(f"--backend {backend} cannot run {target}: engines run on tensorrt, blocks and "
             ".onnx files on ort-cpu or ort-cuda (build an engine with `attn-export build`)")
    if use_cuda_graph and backend != "tensorrt":
        fail("--use-cuda-graph applies to TensorRT engines only")
    settings = BenchSettings(rounds=rounds, warmup=warmup, threads=threads, backend=backend,
                             iters=iters)
    result = _run(kind, target, shapes, settings, kwargs, no_naive, use_cuda_graph, as_json)
    profiles = _profiles(kind, target, result, kwargs, threads) if show_profile else {}
    if as_json:
        out = result.to_dict()
        if profiles:
            out["profiles"] = {k: [r.to_dict() for r in v] for k, v in profiles.items()}
        click.echo(json.dumps(out, indent=2))
        return
    from attn_export.bench.report import result_text

    click.echo(result_text(result))
    _echo_profiles(profiles, result)


def _run(kind, target, shapes, settings, kwargs, no_naive, use_cuda_graph, quiet):
    from attn_export.bench import run
    from attn_export.modules.registry import block_info

    if kind == "engine":
        from attn_export.bench.tensorrt_timing import bench_engine

        return bench_engine(Path(target), shapes, settings, use_cuda_graph)
    if kind == "onnx":
        count = settings.rounds * max(1, len(shapes))
        with progress(count, f"bench {Path(target).name}", not quiet) as tick:
            return run.bench_onnx(Path(target), shapes, settings, tick)
    shapes = shapes or [(1, block_info(target).default_channels, *DEFAULT_SPATIAL)]
    with progress(settings.rounds * len(shapes), f"bench {target}", not quiet) as tick:
        return run.bench_block(target, shapes, settings, kwargs, not no_naive, tick)


def _profiles(kind, target, result, kwargs, threads) -> dict:
    """Op-by-op profile of the deploy graph (a block) or the model, and the floor, per shape."""
    import tempfile

    from attn_export.bench.graphs import block_onnx, floor_onnx
    from attn_export.bench.profile import profile_nodes
    from attn_export.bench.run import input_array, onnx_input

    if kind == "engine":
        return {}
    out = {}
    with tempfile.TemporaryDirectory(prefix="attn-export-profile-") as tmp:
        for s in result.shapes:
            x = input_array(s.shape, 0)
            name = onnx_input(Path(target))[0] if kind == "onnx" else "input"
            path = Path(target) if kind == "onnx" else block_onnx(target, s.shape, "deploy",
                                                                   Path(tmp), kwargs)
            tag = "x".join(map(str, s.shape))
            out[f"floor@{tag}"] = profile_nodes(floor_onnx(s.shape, Path(tmp) / "f.onnx", name),
                                                x, threads, input_name=name)
            out[tag] = profile_nodes(path, x, threads, input_name=name)
    return out


def _echo_profiles(profiles: dict, result) -> None:
    from attn_export.bench.profile import format_profile

    for tag, rows in profiles.items():
        if tag.startswith("floor@"):
            continue
        floor_us = sum(r.median_us for r in profiles[f"floor@{tag}"])
        click.echo(f"\nONNX Runtime profile of {result.target} @ {tag} (kernel time per run; "
                   f"floor Mul {floor_us:.1f} us):")
        click.echo(format_profile(rows, floor_us))
