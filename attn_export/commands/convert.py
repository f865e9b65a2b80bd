"""``attn-export convert CHECKPOINT --block NAME``: another codebase's state_dict to our layout."""

from __future__ import annotations

from pathlib import Path

import click

from attn_export.commands.common import handle_errors
from attn_export.modules.registry import block_info


@click.command("convert")
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
