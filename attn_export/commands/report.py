"""``attn-export report``: one self-contained HTML page for one or several export folders."""

from __future__ import annotations

import contextlib
from pathlib import Path

import click

from attn_export.commands.common import handle_errors


@click.command("report")
@click.argument("export_dirs", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="The page to write [EXPORT_DIR/report.html for one folder; required for several].")
@click.option("--title", help="The page title [the export names].")
@handle_errors
def report_command(export_dirs, out, title):
    """Write EXPORT_DIRS (from `attn-export BLOCK` or `attn-export model`) as one HTML page:
    verdicts against the precision floor, error plots, graph summary, TensorRT lint, environment."""
    from attn_export.report.write import write_report

    if out is None and len(export_dirs) > 1:
        raise click.UsageError("several export folders make one page: name it with --out "
                               "report.html")
    path = write_report(export_dirs, out, title)
    click.echo(f"wrote {path}")


REPORT_HELP = "Also write EXPORT_DIR/report.html (one self-contained page; needs the `report` extra)."


@contextlib.contextmanager
def html_report_after(folder: Path, enabled: bool):
    """With ``--report``: check the extra before any work, then write the page once the export
    ends, also when it ends in a failed verdict (that page is the one a user most needs); an
    interrupted or refused export writes none."""
    if not enabled:
        yield
        return
    from attn_export.report.write import check_report_extra, write_report

    check_report_extra()
    try:
        yield
    except SystemExit as exc:
        if exc.code and (folder / "report.json").is_file():
            click.echo(f"report -> {write_report([folder])}", err=True)
        raise
    click.echo(f"report -> {write_report([folder])}")
