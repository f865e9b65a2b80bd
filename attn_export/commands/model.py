"""``attn-export model NAME|FILE.py:FUNCTION``: export a whole network, blocks swapped and proven.

``attn-export model list`` shows the registered networks. Heavy imports happen inside the command.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from attn_export.commands.common import (
    fail,
    handle_errors,
    parse_sets,
    parse_shape,
    parse_target_trt,
)
from attn_export.commands.report import REPORT_HELP, html_report_after
from attn_export.commands.scan import MAP_HELP, parse_maps

OPSET_HELP = "ONNX opset, 11..21 (TensorRT 8.5 parses up to 17, 10.x up to 20)."


def _progress():
    start = time.perf_counter()

    def echo(message: str) -> None:
        click.echo(f"[{time.perf_counter() - start:6.1f} s] {message}", err=True)

    return echo


def _say_waiting(message: str) -> None:
    click.echo(message, err=True)


def format_swaps(swaps, network_diff: float) -> str:
    """The swap table the command prints: every block, the recogniser that found it, what
    replaced it, the difference; kept modules with their reason."""
    from attn_export.models.swap_report import format_swap_records

    return format_swap_records(swaps, network_diff)


def _list(as_json: bool, markdown: bool) -> None:
    from attn_export.models.registry import MODELS, list_models

    if markdown:
        click.echo(markdown_table())
        return
    if as_json:
        click.echo(json.dumps({n: {k: (list(v) if isinstance(v, tuple) else v)
                                   for k, v in MODELS[n].__dict__.items()}
                               for n in list_models()}, indent=2))
        return
    rows = [("name", "task", "block", "params", "checkpoint layouts")]
    rows += [(n, c.task, c.attn or "(--attn)", f"{c.params:,}" if c.params else "-",
              ",".join(("ours", *c.sources))) for n, c in ((n, MODELS[n]) for n in list_models())]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


def markdown_table() -> str:
    """The network table of docs/networks.md, generated from the model registry
    (tools/update_docs_tables.py writes it; tests/test_docs.py keeps it in sync)."""
    from attn_export.models.registry import MODELS, list_models

    lines = ["| network | task | block slots | params | test size | checkpoint layouts | "
             "published weights |", "|---|---|---|---|---|---|---|"]
    for n in list_models():
        c = MODELS[n]
        params = f"{c.params:,}" if c.params else "-"
        if c.official_params:
            params += f" (official {c.official_params:,})"
        lines.append(f"| `{n}` | {c.task} | {c.slot} | {params} | {c.test_size[0]}x"
                     f"{c.test_size[1]} | {', '.join(('ours', *c.sources))} | "
                     f"{c.checkpoint or '-'} |")
    return "\n".join(lines)


@click.command("model")
@click.argument("network")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A state_dict file (module. prefixes and ['state_dict'] wrappers accepted).")
@click.option("--source", default="auto", show_default=True,
              help="Checkpoint layout: ours, official, timm, torchvision, houqb, smp, or auto.")
@click.option("--attn", help="Block for the network's slots (`attn-export list`).")
@click.option("--set", "sets", multiple=True, callback=parse_sets, metavar="KEY=VALUE",
              help="Builder argument (position=stage, stages=[0,1,1,1], width=8) or, if the "
              "builder has no such argument, the block's (reduction=8). Repeatable.")
@click.option("--input-shape", callback=parse_shape,
              help="Export shape NxCxHxW [the card's test size, e.g. 1x3x64x64].")
@click.option("--dynamic", type=click.Choice(["none", "batch", "all"]), default="none",
              show_default=True, help="Dynamic dims: none, batch (N), all (N, H and W).")
@click.option("--num-classes", type=click.IntRange(min=1), help="Classifier / head width.")
@click.option("--opset", type=int, default=17, show_default=True, help=OPSET_HELP)
@click.option("--exporter", type=click.Choice(["torchscript", "dynamo"]), default="torchscript",
              show_default=True)
@click.option("--simplifier", type=click.Choice(["onnxslim", "onnxsim", "none"]),
              default="onnxslim", show_default=True)
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where to write NETWORK.onnx, NETWORK.golden.npz, report.json "
              "[exports/NETWORK].")
@click.option("--inputs", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Extra validation input (.npy, NCHW), repeatable.")
@click.option("--natural-inputs", is_flag=True,
              help="Also validate on natural images (scikit-learn's sample photographs for 3 "
              "channels, its digits shaped to the input otherwise).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp32",
              show_default=True, help="Also write NETWORK.fp16.onnx / NETWORK.int8.onnx (host "
              "convolutions quantized, gates float) and validate it.")
@click.option("--calib-data", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="INT8 calibration inputs: a folder of .npy images (default: seeded samples).")
@click.option("--engine", is_flag=True, help="Also build a TensorRT engine and validate it.")
@click.option("--trt-version", "target_trt", callback=parse_target_trt,
              help="TensorRT the precision plan targets, e.g. 10.3 (JetPack 6) or 11.0 "
              "[the installed one, else 10.3].")
@click.option("--map", "maps", multiple=True, callback=parse_maps, metavar="CLASS=BLOCK[:SOURCE]",
              help=MAP_HELP)
@click.option("--report", "html_report", is_flag=True, help=REPORT_HELP)
@click.option("--json", "as_json", is_flag=True, help="With `model list`: machine-readable.")
@click.option("--markdown", is_flag=True, help="With `model list`: the Markdown table of docs/networks.md.")
@handle_errors
def model_command(network, checkpoint, source, attn, sets, input_shape, dynamic, num_classes,
                  opset, exporter, simplifier, output_dir, inputs, natural_inputs, seed,
                  precision, calib_data,
                  engine, target_trt, maps, html_report, as_json, markdown):
    """Export NETWORK (a registered name, or FILE.py:FUNCTION) with its blocks swapped.

    Builds (or loads with --checkpoint), swaps every attention block for its deploy twin (proven
    equal), exports, simplifies, validates ONNX Runtime against PyTorch and writes the golden file
    and a report naming every swap. `attn-export model list` shows the networks.
    """
    if network == "list":
        _list(as_json, markdown)
        return
    from attn_export.export.user_file import is_user_spec

    if not is_user_spec(network):
        from attn_export.models.registry import model_card

        model_card(network)  # unknown names fail before torch is imported
    if attn is not None:
        from attn_export.modules.registry import block_info

        block_info(attn)
    if engine:
        from attn_export.runtime.tensorrt_runner import import_tensorrt

        import_tensorrt()
    from attn_export.atomic import folder_lock
    from attn_export.export.pipeline import export, resolve
    from attn_export.export.request import network_request

    req = resolve(network_request(
        network, sets, checkpoint=checkpoint, layout=source, attn=attn, input_shape=input_shape,
        dynamic=dynamic, num_classes=num_classes, opset=opset, exporter=exporter,
        simplifier=simplifier, output_dir=output_dir, inputs=[Path(p) for p in inputs],
        seed=seed, calib_data=calib_data, natural=natural_inputs, maps=maps))
    if precision == "int8":
        from attn_export.export.precision import check_int8_opset

        check_int8_opset(opset, f"--opset {opset}")
    with folder_lock(req.output_dir, on_wait=_say_waiting), \
            html_report_after(req.output_dir, html_report):  # export, precision, engine: one writer
        result = export(req, on_wait=_say_waiting, progress=_progress())
        _print_export(result, network, opset, dynamic)
        if precision != "fp32":
            _reduced_precision(result, precision, calib_data, target_trt, seed)
        if engine:
            from attn_export.commands.engine_build import build_and_validate
            from attn_export.export.engine_from_onnx import BuildOptions

            build_and_validate(result.onnx_path, BuildOptions(
                precision=precision, shape_mode=dynamic, calib_data=calib_data),
                result.golden_path, target_trt)


def _print_export(result, network: str, opset: int, dynamic: str) -> None:
    """The checkpoint, the swap table, the validation table; exit 1 beyond tolerance."""
    from attn_export.runtime.network_rule import tolerance_note
    from attn_export.runtime.validate import format_table

    r = result.report
    loaded = r["network"]["checkpoint"]
    click.echo(f"{network}: {r['network']['parameters']:,} parameters, "
               + (f"checkpoint {loaded['path']} ({loaded['source']} layout, {loaded['tensors']} "
                  "tensors)" if loaded else "seeded weights (no --checkpoint)"))
    if loaded and loaded["rebuilt_blocks"]:
        click.echo("rebuilt from the checkpoint's tensors: " + "; ".join(loaded["rebuilt_blocks"]))
    click.echo(format_swaps(result.swaps, r["swap_network_max_abs_diff"]))
    click.echo(f"-> {result.onnx_path}  opset {opset}, dynamic={dynamic}, "
               f"{r['graph']['nodes_exported']} -> {r['graph']['nodes_simplified']} nodes")
    click.echo(format_table(result.rows))
    click.echo(tolerance_note("fp32"))
    click.echo(f"wrote {result.onnx_path}, {result.golden_path}, {result.report_path}")
    if not result.passed:
        fail(f"{result.onnx_path}: ONNX Runtime differs from PyTorch beyond the fp32 tolerance "
             "(see the table)")


def _reduced_precision(result, precision, calib_data, target_trt, seed) -> None:
    """NETWORK.fp16.onnx / NETWORK.int8.onnx, validated, with the per-block gate error (INT8)."""
    from attn_export.commands.engine_build import installed_trt
    from attn_export.export.network_precision import network_precision
    from attn_export.runtime.validate import format_table

    _progress()(f"writing and validating the {precision} graph"
                + (" (calibrating; gates stay float)" if precision == "int8" else ""))
    out = network_precision(result.onnx_path, result.golden_path, precision, calib_data,
                            target_trt or installed_trt(), seed, [s.path for s in result.swaps],
                            result.task == "classify")
    for message in out.warnings:
        click.echo(f"warning: {message}", err=True)
    e = out.export
    click.echo(f"{precision} graph -> {e.path}  ({len(e.kept_float)} nodes kept float"
               + (f"; calibration: {e.calibration}" if e.calibration else "") + ")")
    for note in e.plan.notes:
        click.echo(f"TensorRT {e.plan.trt_version} plan: {note}")
    click.echo(format_table(e.rows))
    from attn_export.runtime.network_rule import tolerance_note

    if tolerance_note(precision):
        click.echo(tolerance_note(precision))
    if precision == "int8":
        for path, err in out.gate_error.items():
            click.echo(f"gate error {path}: max |int8 - fp32| {err:.3g}")
        if out.gate_error:
            click.echo(f"gates kept float (F2): {', '.join(out.gate_error)}")
        click.echo(f"overall cosine {out.cosine:.6f}" + (
            f"; top-1 agreement with fp32 on the {out.samples} calibration inputs "
            f"{out.top1_agreement:.1%}" if out.top1_agreement is not None else ""))
    if not e.passed:
        fail(f"{e.path} differs from PyTorch beyond the {precision} tolerance (see the table)")
