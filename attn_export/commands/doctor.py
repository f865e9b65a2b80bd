"""``attn-export doctor``: one table of what this machine can do, and the fixes a role needs."""

from __future__ import annotations

import sys

import click


@click.command("doctor")
@click.option("--for", "role", type=click.Choice(["export", "build", "serve"]),
              help="Exit 1 unless this machine can do ROLE [report every role, exit 0].")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
def doctor_command(role: str | None, as_json: bool) -> None:
    """Check Python, numpy, ONNX, ONNX Runtime, TensorRT vs L4T, CUDA, GPU, torch, simplifiers.

    Needs neither torch nor TensorRT: what is absent is reported, with the command that fixes it.
    """
    from attn_export.doctor import ROLES, format_table, judge, run_checks, to_json

    rows = run_checks()
    verdicts = [judge(r, rows) for r in ([role] if role else ROLES)]
    click.echo(to_json(rows, verdicts) if as_json else format_table(rows, verdicts))
    if role and not verdicts[0].ready:
        sys.exit(1)
