"""The ``attn-export`` command: thin click commands that parse, call the library and print.

Library errors (``AttnExportError``) print one line and exit 1; bad flags exit 2 (click's own).
Nothing heavy is imported at module level, so ``attn-export --help`` works without torch.
"""

from __future__ import annotations

import ast
import functools
import json
import sys
from pathlib import Path

import click

from attn_export.errors import AttnExportError
from attn_export.modules.registry import BLOCKS, SHAPE_MODES, block_info, list_blocks

OPSET_HELP = "ONNX opset, 11..21 (TensorRT 8.5 parses up to 17, 10.x up to 20)."


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def handle_errors(func):
    """Turn library errors into one line on stderr and exit code 1, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except AttnExportError as exc:
            _fail(str(exc))
        except KeyboardInterrupt:
            _fail("interrupted; no partial file was left behind")

    return wrapper


def parse_shape(_ctx, _param, value: str | None) -> tuple[int, ...] | None:
    """``1x64x40x40`` -> (1, 64, 40, 40)."""
    if value is None:
        return None
    try:
        dims = tuple(int(d) for d in value.lower().replace(",", "x").split("x"))
    except ValueError:
        dims = ()
    if len(dims) != 4 or min(dims) < 1:
        raise click.BadParameter(f"{value!r} is not NxCxHxW with 4 positive integers "
                                 "(e.g. 1x64x40x40)")
    return dims


def parse_sets(_ctx, _param, values: tuple[str, ...]) -> dict:
    """``--set reduction=8 --set kernel_size=[3,5]`` -> {"reduction": 8, "kernel_size": [3, 5]}."""
    kwargs = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key.isidentifier():
            raise click.BadParameter(f"{item!r} is not key=value (e.g. --set reduction=8)")
        try:
            kwargs[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            kwargs[key] = raw  # a bare word such as fusion=max
    return kwargs


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
@click.option("--seed", type=int, default=0, show_default=True)
@handle_errors
def export_command(block, opset, exporter, dynamic, simplifier, channels, input_shape, variant,
                   kwargs, inputs, output_dir, seed):
    """Export BLOCK to ONNX, simplify, check, and validate it against PyTorch."""
    block_info(block)  # unknown names fail here, before torch is imported
    from attn_export.export.pipeline import ExportRequest, export_block
    from attn_export.runtime.validate import format_table

    result = export_block(ExportRequest(
        block=block, channels=channels, input_shape=input_shape, opset=opset, exporter=exporter,
        dynamic=dynamic, simplifier=simplifier, variant=variant, kwargs=kwargs,
        output_dir=output_dir, inputs=[Path(p) for p in inputs], seed=seed))
    r = result.report
    click.echo(f"{block} ({variant}) -> {result.onnx_path}  opset {opset}, {exporter}, "
               f"dynamic={dynamic}, {r['graph']['nodes_exported']} -> "
               f"{r['graph']['nodes_simplified']} nodes after {simplifier}")
    click.echo(format_table(result.rows))
    click.echo(f"wrote {result.onnx_path}, {result.golden_path}, {result.report_path}")
    if not result.passed:
        _fail(f"{block}: ONNX Runtime differs from PyTorch beyond tolerance (see the table)")


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
                                   "paper": BLOCKS[n].paper} for n in list_blocks()}, indent=2))
        return
    rows = [("name", "tier", "shape modes", "hazards", "checkpoint sources")]
    rows += [(n, str(BLOCKS[n].tier), ",".join(BLOCKS[n].shape_modes),
              ",".join(BLOCKS[n].hazards) or "-", ",".join(("reference", *BLOCKS[n].sources)))
             for n in list_blocks()]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


@main.command("validate")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--golden", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The BLOCK.golden.npz written at export time.")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp32",
              show_default=True, help="Tolerance row to judge by.")
@handle_errors
def validate_command(model: Path, golden: Path, precision: str) -> None:
    """Check MODEL against the golden outputs (needs no torch)."""
    from attn_export.export.check import load_onnx
    from attn_export.runtime.golden import load_golden
    from attn_export.runtime.onnxruntime_runner import OnnxRuntimeRunner
    from attn_export.runtime.validate import format_table, validate_runner

    load_onnx(model)  # a missing or truncated file fails with its own message
    gold = load_golden(golden)
    with OnnxRuntimeRunner(model) as runner:
        rows = validate_runner(runner, gold, precision)
    click.echo(format_table(rows))
    if not all(r.comparison.passed for r in rows):
        _fail(f"{model} differs from the golden outputs beyond the {precision} tolerance")


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
