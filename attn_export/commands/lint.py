"""``attn-export lint MODEL.onnx``: will TensorRT's ONNX parser accept it, node by node."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from attn_export.commands.common import handle_errors


def parse_trt_version(_ctx, _param, value: str) -> str:
    """A version without a support table is a bad flag (exit 2); a known one passes as given, so
    the report can say when it is read with another release's table (``10.16`` -> 10.15)."""
    from attn_export.export.lint import UnknownTrtVersionError, resolve_trt_version

    try:
        resolve_trt_version(value)
        return value
    except UnknownTrtVersionError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("lint")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--trt-version", "--trt", "trt_version", default="10.3", show_default=True,
              callback=parse_trt_version,
              help="TensorRT version: 8.5, 10.3, 10.15 (10, 10.x), 10.16 (JetPack 7.2, read with "
                   "10.15's table), 11.0, 11.5 (11, 11.x).")
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
