"""``attn-export validate MODEL --golden FILE``: an ONNX or engine against the golden outputs.

Torch-free: it runs where only ONNX Runtime (or TensorRT) is installed.
"""

from __future__ import annotations

from pathlib import Path

import click

from attn_export.commands.common import fail, handle_errors


@click.command("validate")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--golden", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The BLOCK.golden.npz written at export time.")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]),
              help="Tolerance row to judge by [an engine's sidecar precision; fp16 for a float16 "
              "ONNX, int8 for a Q/DQ ONNX, else fp32].")
@click.option("--locate", is_flag=True,
              help="Find the first node whose own error leaves its bound (FP16/INT8 graph vs its "
              "FP32 sibling; an FP32 graph vs PyTorch) and print the error along the path.")
@click.option("--reference", help="With --locate: the FP32 ONNX to compare node by node, or "
              "`pytorch` (the module rebuilt from the export's report.json).")
@handle_errors
def validate_command(model: Path, golden: Path, precision: str | None, locate: bool,
                     reference: str | None) -> None:
    """Check MODEL (.onnx or TensorRT .engine) against the golden outputs (needs no torch)."""
    from attn_export.runtime.golden import load_golden
    from attn_export.runtime.provenance import provenance_note
    from attn_export.runtime.validate import format_table, validate_runner
    from attn_export.runtime.validation_runner import validation_runner

    runner, inferred = validation_runner(model)  # a missing or truncated file fails here
    precision = precision or inferred
    gold = load_golden(golden)
    note = provenance_note(model, golden, gold)  # refuses a pair of two different blocks
    if note:
        click.echo(f"note: {note}", err=True)
    with runner:
        rows = validate_runner(runner, gold, precision)
    click.echo(format_table(rows))
    if locate:
        from attn_export.commands.locate import locate_for_cli, record_location

        location = locate_for_cli(model, golden, gold, rows, precision, reference)
        click.echo("\n".join(location.lines()))
        record_location(golden, location)
    if not all(r.comparison.passed for r in rows):
        made_for = f" (the golden file was written for {gold.meta['block']!r})" \
            if gold.meta.get("block") else ""
        fail(f"{model} differs from the golden outputs beyond the {precision} tolerance{made_for}")
