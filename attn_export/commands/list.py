"""``attn-export list``: the blocks, their tiers, shape modes, hazards and checkpoint layouts."""

from __future__ import annotations

import json

import click

from attn_export.modules.registry import BLOCKS, list_blocks


def markdown_table() -> str:
    """The block catalog of docs/blocks.md, generated from the registry
    (tools/update_docs_tables.py writes it; tests/test_docs.py keeps it in sync)."""
    lines = ["| block | tier | shape modes | hazards handled | checkpoint sources | paper |",
             "|---|---|---|---|---|---|"]
    for n in list_blocks():
        info = BLOCKS[n]
        lines.append(f"| `{n}` | {info.tier} | {', '.join(info.shape_modes)} | "
                     f"{', '.join(info.hazards) or '-'} | {', '.join(('reference', *info.sources))} "
                     f"| {info.paper} |")
    return "\n".join(lines)


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--markdown", is_flag=True, help="The Markdown catalog table of docs/blocks.md.")
def list_command(as_json: bool, markdown: bool) -> None:
    """List the blocks: name, tier, shape modes, hazards handled."""
    if markdown:
        click.echo(markdown_table())
        return
    if as_json:
        click.echo(json.dumps({n: {"tier": BLOCKS[n].tier, "shape_modes": BLOCKS[n].shape_modes,
                                   "hazards": BLOCKS[n].hazards, "sources": BLOCKS[n].sources,
                                   "paper": BLOCKS[n].paper,
                                   "memory": BLOCKS[n].memory or None}
                               for n in list_blocks()}, indent=2))
        return
    rows = [("name", "tier", "shape modes", "hazards", "checkpoint sources", "attention memory")]
    rows += [(n, str(BLOCKS[n].tier), ",".join(BLOCKS[n].shape_modes),
              ",".join(BLOCKS[n].hazards) or "-", ",".join(("reference", *BLOCKS[n].sources)),
              BLOCKS[n].memory or "-")
             for n in list_blocks()]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    notes = [(n, BLOCKS[n].memory) for n in list_blocks() if BLOCKS[n].memory]
    for n, memory in notes:  # blocks whose cost grows with (H*W)^2 say so before you export them
        click.echo(f"memory: {n}: {memory}")
