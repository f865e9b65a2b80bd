"""The ``attn-export`` command: thin click commands that parse, call the library and print.

Library errors (``AttnExportError``) print one line and exit 1; bad flags exit 2 (click's own).
Nothing heavy is imported at module level, so ``attn-export --help`` works without torch.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from attn_export.commands.bench import bench_command
from attn_export.commands.bench_serve import bench_serve_command
from attn_export.commands.common import (
    echo_warnings,
    fail,
    handle_errors,
    parse_sets,
    parse_shape,
    parse_target_trt,
)
from attn_export.commands.doctor import doctor_command
from attn_export.commands.model import model_command
from attn_export.commands.repo import repo_command
from attn_export.commands.scan import scan_command
from attn_export.commands.serve import serve_command
from attn_export.modules.registry import BLOCKS, SHAPE_MODES, block_info, list_blocks

OPSET_HELP = "ONNX opset, 11..21 (TensorRT 8.5 parses up to 17, 10.x up to 20)."


class BlockGroup(click.Group):
    """``attn-export cbam ...`` runs ``attn-export export cbam ...``: the block is the command."""

    def resolve_command(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["export", *args]
        return super().resolve_command(ctx, args)

    def format_epilog(self, ctx, formatter):
        formatter.write_paragraph()
        formatter.write_text("Blocks: " + ", ".join(list_blocks()))
        formatter.write_paragraph()
        formatter.write_text("Example: attn-export cbam --opset 17 --dynamic all")


@click.group(cls=BlockGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="attn-export")
def main() -> None:
    """Export attention blocks to ONNX (and TensorRT), validated against PyTorch.

    Run `attn-export BLOCK [options]` to export one block, e.g. `attn-export cbam --opset 17`.
    """


@main.command("export")
@click.argument("block")
@click.option("--opset", type=int, default=17, show_default=True, help=OPSET_HELP)
@click.option("--exporter", type=click.Choice(["torchscript", "dynamo"]), default="torchscript",
              show_default=True, help="torchscript honours opsets 11..21; dynamo only >= 18.")
@click.option("--dynamic", type=click.Choice(SHAPE_MODES), default="none", show_default=True,
              help="Dynamic dims: none, batch (N), all (N, H and W).")
@click.option("--simplifier", type=click.Choice(["onnxslim", "onnxsim", "none"]),
              default="onnxslim", show_default=True)
@click.option("--channels", type=int, help="Input channels (default: from --input-shape, or 64).")
@click.option("--input-shape", callback=parse_shape, help="Export shape NxCxHxW (default 1xCx32x32).")
@click.option("--variant", type=click.Choice(["deploy", "reference"]), default="deploy",
              show_default=True, help="Export the export-safe rewrite or the published form.")
@click.option("--set", "kwargs", multiple=True, callback=parse_sets, metavar="KEY=VALUE",
              help="Block keyword argument, repeatable (e.g. --set reduction=8).")
@click.option("--inputs", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Extra validation input (.npy, NCHW), repeatable.")
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where to write BLOCK.onnx, BLOCK.golden.npz, report.json [exports/BLOCK].")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True,
              help="Seed of the weights, validation inputs and calibration samples (0..2**32-1).")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp32",
              show_default=True, help="Also write BLOCK.fp16.onnx / BLOCK.int8.onnx (Q/DQ) and "
              "validate it on ONNX Runtime CPU; the engine's precision with --engine.")
@click.option("--engine", is_flag=True,
              help="Also build BLOCK.PRECISION.engine with TensorRT and validate it (needs a GPU).")
@click.option("--calib-data", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="INT8 calibration inputs: a folder of .npy maps (default: seeded samples).")
@click.option("--quantize-gates", is_flag=True,
              help="INT8: quantize sigmoid gates and their multiply too (F2: off by default).")
@click.option("--trt-version", "target_trt", callback=parse_target_trt,
              help="TensorRT the precision plan targets, e.g. 10.3 (JetPack 6) or 11.0 "
              "[the installed one, else 10.3].")
@handle_errors
def export_command(block, opset, exporter, dynamic, simplifier, channels, input_shape, variant,
                   kwargs, inputs, output_dir, seed, precision, engine, calib_data,
                   quantize_gates, target_trt):
    """Export BLOCK to ONNX, simplify, check, and validate it against PyTorch."""
    block_info(block)  # unknown names fail here, before torch is imported
    from attn_export.atomic import folder_lock
    from attn_export.export.pipeline import ExportRequest, export_block, resolve
    from attn_export.export.preflight import check_request

    if engine:  # fail before the export, not after it, on a machine without TensorRT
        from attn_export.runtime.tensorrt_runner import import_tensorrt

        import_tensorrt()
    req = resolve(ExportRequest(
        block=block, channels=channels, input_shape=input_shape, opset=opset, exporter=exporter,
        dynamic=dynamic, simplifier=simplifier, variant=variant, kwargs=kwargs,
        output_dir=output_dir, inputs=[Path(p) for p in inputs], seed=seed))
    check_request(req)  # every refusal before the folder is even created
    if calib_data is not None:
        from attn_export.export.preflight import check_calibration_dir

        check_calibration_dir(calib_data)
    with folder_lock(req.output_dir, on_wait=_say_waiting):  # export, precision, engine: one writer
        result = export_block(req, on_wait=_say_waiting)
        _after_export(result, block, variant, opset, exporter, dynamic, simplifier, precision,
                      engine, calib_data, quantize_gates, target_trt, seed)


def _say_waiting(message: str) -> None:
    click.echo(message, err=True)


def _after_export(result, block, variant, opset, exporter, dynamic, simplifier, precision, engine,
                  calib_data, quantize_gates, target_trt, seed) -> None:
    """Print the export's table, then add the precision graph and the engine, if asked."""
    from attn_export.runtime.validate import format_table

    r = result.report
    click.echo(f"{block} ({variant}) -> {result.onnx_path}  opset {opset}, {exporter}, "
               f"dynamic={dynamic}, {r['graph']['nodes_exported']} -> "
               f"{r['graph']['nodes_simplified']} nodes after {simplifier}")
    click.echo(format_table(result.rows))
    click.echo(f"wrote {result.onnx_path}, {result.golden_path}, {result.report_path}")
    if not result.passed:
        fail(f"{block}: ONNX Runtime differs from PyTorch beyond tolerance (see the table)")
    if precision != "fp32":
        _reduced_precision(result.onnx_path, result.golden_path, precision, calib_data,
                           quantize_gates, target_trt, seed)
    if engine:
        from attn_export.export.engine_from_onnx import BuildOptions

        _build_and_validate(result.onnx_path, BuildOptions(
            precision=precision, shape_mode=dynamic, calib_data=calib_data,
            quantize_gates=quantize_gates), result.golden_path, target_trt)


def _reduced_precision(onnx_path, golden_path, precision, calib_data, quantize_gates,
                       target_trt, seed) -> None:
    """Write and validate BLOCK.fp16.onnx / BLOCK.int8.onnx; exit 1 beyond tolerance."""
    import warnings

    from attn_export.export.precision import precision_set_from_export
    from attn_export.runtime.validate import format_table

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = precision_set_from_export(
            onnx_path, golden_path, precision, on_wait=_say_waiting, calib_data=calib_data,
            quantize_gates=quantize_gates, trt_version=target_trt or _installed_trt(), seed=seed)
    echo_warnings(caught)
    click.echo(f"{precision} graph -> {out.path}  ({len(out.kept_float)} nodes kept float"
               + (f"; {out.quantization.describe()}" if out.quantization else "")
               + (f"; calibration: {out.calibration}" if out.calibration else "") + ")")
    for note in out.plan.notes:
        click.echo(f"TensorRT {'.'.join(map(str, out.plan.trt_version))} plan: {note}")
    click.echo(format_table(out.rows))
    if not out.passed:
        fail(f"{out.path} differs from PyTorch beyond the {precision} tolerance (see the table)")


def _installed_trt() -> str:
    """The installed TensorRT's version, else 10.3 (JetPack 6), for planning without a GPU."""
    from attn_export.runtime.tensorrt_runner import installed_trt_version

    return installed_trt_version() or "10.3"


def _build_and_validate(onnx_path, options, golden_path, target_trt, output=None) -> None:
    """Build the engine, print where it went, validate it against the golden file if any."""
    import warnings

    from attn_export.export.engine_from_onnx import build_engine
    from attn_export.runtime.golden import load_golden
    from attn_export.runtime.tensorrt_runner import TensorRTRunner
    from attn_export.runtime.validate import format_table, validate_runner

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        built = build_engine(onnx_path, options, output)
    echo_warnings(caught)
    if target_trt and built.plan.trt_version[0] != int(target_trt.split(".")[0]):
        click.echo(f"warning: --trt-version {target_trt} but TensorRT "
                   f"{built.sidecar.built_with['tensorrt']} built the engine", err=True)
    s = built.sidecar
    click.echo(f"engine -> {built.engine_path} ({s.engine['bytes']} bytes, {s.precision}, "
               f"TensorRT {s.built_with['tensorrt']}, {s.built_with['gpu']} sm"
               f"{s.built_with['compute_capability']}, built in {s.build_time_s:.1f} s)")
    for note in built.notes:
        click.echo(f"plan: {note}")
    click.echo(f"sidecar -> {built.sidecar_path}")
    if golden_path is None or not Path(golden_path).is_file():
        click.echo("no golden file beside the model: engine not validated (pass --golden)")
        return
    with TensorRTRunner(built.engine_path) as runner:
        rows = validate_runner(runner, load_golden(golden_path), s.precision)
    click.echo(format_table(rows))
    if not all(r.comparison.passed for r in rows):
        fail(f"{built.engine_path} differs from PyTorch beyond the {s.precision} tolerance")


def markdown_table() -> str:
    """The README's block table, generated from the registry (a test keeps the README in sync)."""
    lines = ["| block | tier | shape modes | hazards handled | checkpoint sources | paper |",
             "|---|---|---|---|---|---|"]
    for n in list_blocks():
        info = BLOCKS[n]
        lines.append(f"| `{n}` | {info.tier} | {', '.join(info.shape_modes)} | "
                     f"{', '.join(info.hazards) or '-'} | {', '.join(('reference', *info.sources))} "
                     f"| {info.paper} |")
    return "\n".join(lines)


@main.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--markdown", is_flag=True, help="The README's table.")
def list_command(as_json: bool, markdown: bool) -> None:
    """List the blocks: name, tier, shape modes, hazards handled."""
    if markdown:
        click.echo(markdown_table())
        return
    if as_json:
        click.echo(json.dumps({n: {"tier": BLOCKS[n].tier, "shape_modes": BLOCKS[n].shape_modes,
                                   "hazards": BLOCKS[n].hazards, "sources": BLOCKS[n].sources,
                                   "paper": BLOCKS[n].paper,
                                   "memory": BLOCKS[n].extra.get("memory")}
                               for n in list_blocks()}, indent=2))
        return
    rows = [("name", "tier", "shape modes", "hazards", "checkpoint sources", "attention memory")]
    rows += [(n, str(BLOCKS[n].tier), ",".join(BLOCKS[n].shape_modes),
              ",".join(BLOCKS[n].hazards) or "-", ",".join(("reference", *BLOCKS[n].sources)),
              BLOCKS[n].extra.get("memory", "-"))
             for n in list_blocks()]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    notes = [(n, BLOCKS[n].extra["memory"]) for n in list_blocks() if "memory" in BLOCKS[n].extra]
    for n, memory in notes:  # blocks whose cost grows with (H*W)^2 say so before you export them
        click.echo(f"memory: {n}: {memory}")


@main.command("validate")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--golden", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The BLOCK.golden.npz written at export time.")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]),
              help="Tolerance row to judge by [an engine's sidecar precision; fp16 for a float16 "
              "ONNX, int8 for a Q/DQ ONNX, else fp32].")
@handle_errors
def validate_command(model: Path, golden: Path, precision: str | None) -> None:
    """Check MODEL (.onnx or TensorRT .engine) against the golden outputs (needs no torch)."""
    from attn_export.export.precision import validation_runner
    from attn_export.runtime.golden import load_golden
    from attn_export.runtime.provenance import provenance_note
    from attn_export.runtime.validate import format_table, validate_runner

    runner, inferred = validation_runner(model)  # a missing or truncated file fails here
    precision = precision or inferred
    gold = load_golden(golden)
    note = provenance_note(model, golden, gold)  # refuses a pair of two different blocks
    if note:
        click.echo(f"note: {note}", err=True)
    with runner:
        rows = validate_runner(runner, gold, precision)
    click.echo(format_table(rows))
    if not all(r.comparison.passed for r in rows):
        made_for = f" (the golden file was written for {gold.meta['block']!r})" \
            if gold.meta.get("block") else ""
        fail(f"{model} differs from the golden outputs beyond the {precision} tolerance{made_for}")


@main.command("build")
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp16",
              show_default=True)
@click.option("--fp16-mode", type=click.Choice(["typed", "flag"]), default="typed",
              show_default=True, help="typed: the float16 ONNX, strongly typed (10.x, 11.x); "
              "flag: BuilderFlag.FP16 on the FP32 graph (10.x only).")
@click.option("--calib-data", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="INT8 calibration inputs: a folder of .npy maps (default: seeded samples).")
@click.option("--quantize-gates", is_flag=True, help="INT8: quantize sigmoid gates too (F2).")
@click.option("--min-shape", help="Profile minimum, e.g. 1x64x16x16 or input:1x64x16x16.")
@click.option("--opt-shape", help="Profile optimum [the export shape].")
@click.option("--max-shape", help="Profile maximum.")
@click.option("--workspace", type=int, default=1024, show_default=True,
              help="Workspace memory-pool limit, MiB.")
@click.option("--timing-cache", type=click.Path(dir_okay=False, path_type=Path),
              help="Timing cache file [per TensorRT version and GPU, in ~/.cache/attn-export].")
@click.option("--no-timing-cache", is_flag=True, help="Build without loading or saving a cache.")
@click.option("--version-compatible", is_flag=True,
              help="Plan that later TensorRT versions can run (BuilderFlag.VERSION_COMPATIBLE).")
@click.option("--exclude-lean-runtime", is_flag=True,
              help="With --version-compatible: leave the lean runtime out of the plan.")
@click.option("--hardware-compatibility",
              type=click.Choice(["none", "ampere_plus", "same_compute_capability"]),
              default="none", show_default=True, help="Run on other GPUs (not on JetPack).")
@click.option("--optimization-level", type=click.IntRange(0, 5),
              help="Builder optimization level [TensorRT's default, 3].")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Engine path [MODEL's folder, BLOCK.PRECISION.engine].")
@click.option("--golden", type=click.Path(dir_okay=False, path_type=Path),
              help="Validate against this golden file [BLOCK.golden.npz beside MODEL, if any].")
@handle_errors
def build_command(model, precision, fp16_mode, calib_data, quantize_gates, min_shape, opt_shape,
                  max_shape, workspace, timing_cache, no_timing_cache, version_compatible,
                  exclude_lean_runtime, hardware_compatibility, optimization_level, output,
                  golden):
    """Build a TensorRT engine from MODEL.onnx with a JSON sidecar, then validate it."""
    from attn_export.export.engine_from_onnx import BuildOptions

    options = BuildOptions(
        precision=precision, fp16_mode=fp16_mode, workspace_mib=workspace, min_shapes=min_shape,
        opt_shapes=opt_shape, max_shapes=max_shape, timing_cache=timing_cache,
        use_timing_cache=not no_timing_cache, version_compatible=version_compatible,
        exclude_lean_runtime=exclude_lean_runtime, hardware_compatibility=hardware_compatibility,
        optimization_level=optimization_level, calib_data=calib_data,
        quantize_gates=quantize_gates)
    if golden is None:
        stem = model.name.split(".")[0]
        golden = model.with_name(f"{stem}.golden.npz")
    _build_and_validate(model, options, golden, None, output)


def parse_trt_version(_ctx, _param, value: str) -> str:
    """``10.3.0.26`` -> ``10.3``; a version without a support table is a bad flag (exit 2)."""
    from attn_export.export.lint import UnknownTrtVersionError, resolve_trt_version

    try:
        return resolve_trt_version(value)
    except UnknownTrtVersionError as exc:
        raise click.BadParameter(str(exc)) from None


@main.command("lint")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--trt", "trt_version", default="10.3", show_default=True, callback=parse_trt_version,
              help="TensorRT version: 8.5, 10.3, 10.15 (10, 10.x), 11.0, 11.5 (11, 11.x).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
@handle_errors
def lint_command(model: Path, trt_version: str, as_json: bool) -> None:
    """Say whether TensorRT's ONNX parser will accept MODEL, node by node (no TensorRT needed)."""
    from attn_export.export.lint import lint_onnx

    report = lint_onnx(model, trt_version)
    if as_json:
        click.echo(report.to_json())
    else:
        click.echo(report.table())
        for note in report.notes:
            click.echo(f"note: {note}")
        click.echo(report.summary())
    if not report.passed:
        sys.exit(1)


@main.command("convert")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--block", required=True, help="Registry name of the block the checkpoint holds.")
@click.option("--source", default="auto", show_default=True,
              help="Layout it was saved in (timm, official, ...; `attn-export list` shows them per "
              "block), or auto to detect it.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write our reference-layout state_dict [CHECKPOINT.attn.pth].")
@handle_errors
def convert_command(checkpoint: Path, block: str, source: str, output: Path | None) -> None:
    """Convert a single block's CHECKPOINT from another codebase's layout to ours.

    For a whole network holding your own attention classes, call
    `to_deploy(model, mapping={YourCBAM: ("cbam", "official")})` in Python: it needs your model
    class, which a command line cannot import safely.
    """
    block_info(block)
    from attn_export.modules.checkpoints import convert_checkpoint

    out = output or checkpoint.with_name(checkpoint.stem + ".attn.pth")
    done = convert_checkpoint(checkpoint, block, source, out)
    args = ", ".join(f"{k}={v!r}" for k, v in done.kwargs.items())
    click.echo(f"{block}: {done.num_tensors} tensors from the {done.source!r} layout -> {done.path}")
    click.echo(f"load with: load_pretrained({block!r}, {str(done.path)!r})  # builds {block}({args})")


# Verbs that live in their own module (attn_export/commands/<verb>.py) are registered below, one
# line each: `main.add_command(<verb>_command)`. Those modules import only click and
# commands.common at import time, so `attn-export --help` stays torch-free.
main.add_command(repo_command)
main.add_command(serve_command)
main.add_command(bench_serve_command)
main.add_command(bench_command)
main.add_command(model_command)
main.add_command(doctor_command)
main.add_command(scan_command)
