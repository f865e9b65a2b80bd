"""``attn-export export BLOCK`` (or ``attn-export BLOCK``): one block to ONNX, checked and validated.

With ``--precision`` it also writes the FP16/INT8 graph, with ``--engine`` the TensorRT engine;
Engine building is shared with ``build`` and ``model`` (``commands/engine_build.py``). Heavy
imports happen inside.
"""

from __future__ import annotations

from pathlib import Path

import click

from attn_export.commands.common import (
    OPSET_HELP,
    echo_warnings,
    fail,
    handle_errors,
    parse_sets,
    parse_shape,
    parse_target_trt,
)
from attn_export.commands.engine_build import build_and_validate, installed_trt
from attn_export.commands.report import REPORT_HELP, html_report_after
from attn_export.modules.registry import SHAPE_MODES, block_info


@click.command("export")
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
@click.option("--natural-inputs", is_flag=True,
              help="Also validate on natural images (scikit-learn's sample photographs for 3 "
              "channels, its digits shaped to the input otherwise).")
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
@click.option("--report", "html_report", is_flag=True, help=REPORT_HELP)
@handle_errors
def export_command(block, opset, exporter, dynamic, simplifier, channels, input_shape, variant,
                   kwargs, inputs, natural_inputs, output_dir, seed, precision, engine,
                   calib_data, quantize_gates, target_trt, html_report):
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
        output_dir=output_dir, inputs=[Path(p) for p in inputs], seed=seed,
        calib_data=calib_data, natural=natural_inputs))  # held-out calibration samples validate
    check_request(req)  # every refusal before the folder is even created
    if calib_data is not None:
        from attn_export.export.preflight import check_calibration_dir

        check_calibration_dir(calib_data)
    if precision == "int8":
        from attn_export.export.precision import check_int8_opset

        check_int8_opset(opset, f"--opset {opset}")
    with folder_lock(req.output_dir, on_wait=_say_waiting), \
            html_report_after(req.output_dir, html_report):  # export, precision, engine: one writer
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

        build_and_validate(result.onnx_path, BuildOptions(
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
            quantize_gates=quantize_gates, trt_version=target_trt or installed_trt(), seed=seed)
    echo_warnings(caught)
    click.echo(f"{precision} graph -> {out.path}  ({len(out.kept_float)} nodes kept float"
               + (f"; {out.quantization.describe()}" if out.quantization else "")
               + (f"; calibration: {out.calibration}" if out.calibration else "") + ")")
    for note in out.plan.notes:
        click.echo(f"TensorRT {out.plan.trt_version} plan: {note}")
    click.echo(format_table(out.rows))
    if not out.passed:
        fail(f"{out.path} differs from PyTorch beyond the {precision} tolerance (see the table)")
