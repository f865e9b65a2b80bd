"""``attn-export scan NETWORK``: every attention-like module, what it would become, and why not.

A dry run of the recognition ``model`` does: the table lists each module that is a known
attention class (timm, torchvision, Ultralytics, segmentation_models_pytorch, mmcv), a catalog
block, a pasted block whose layout fits one of ours, or holds an attention gate that matches
nothing; with the recogniser that matched, the block it would become and the proven difference
(random maps at two sizes), or the reason it stays. Nothing is exported or written.
"""

from __future__ import annotations

import json

import click

from attn_export.commands.common import handle_errors, parse_sets, parse_shape

MAP_HELP = ("CLASS=BLOCK[:SOURCE]: swap modules of CLASS (a class name or dotted path) for "
            "BLOCK, weights read in layout SOURCE [reference]; for attention classes no "
            "recogniser knows (`attn-export scan` lists them). Repeatable.")


def parse_maps(_ctx, _param, values) -> tuple[str, ...]:
    """Validate each ``--map`` text now (exit 2 with the expected form), keep the texts."""
    if not values:
        return ()
    from attn_export.errors import AttnExportError
    from attn_export.modules.recognise.mapping import parse_map

    for text in values:
        try:
            parse_map(text)
        except AttnExportError as exc:
            raise click.BadParameter(str(exc)) from None
    return tuple(values)


def format_scan(rows) -> str:
    """The scan table: one line per attention-like module, then a count."""
    if not rows:
        return "no attention-like module found (no known class, no block layout, no gate)"
    head = ("module", "class", "recogniser", "becomes", "proven |diff|", "verdict")
    table = [head]
    for r in rows:
        diff = "-" if r.max_abs_diff is None else f"{r.max_abs_diff:.3g}"
        table.append((r.path or "<model>", r.cls.rsplit(".", 1)[-1], r.recogniser, r.block, diff,
                      "swap" if r.swapped else f"kept: {r.reason}"))
    widths = [max(len(row[i]) for row in table) for i in range(len(head) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row[:-1], widths)) + "  " + row[-1]
             for row in table]
    swapped = sum(r.swapped for r in rows)
    lines.append(f"{len(rows)} attention-like modules: {swapped} would be swapped, "
                 f"{len(rows) - swapped} kept")
    return "\n".join(lines)


@click.command("scan")
@click.argument("network")
@click.option("--input-shape", callback=parse_shape,
              help="Network input NxCxHxW, run once to learn each module's width "
              "[the card's test size, or 1x3x224x224].")
@click.option("--map", "maps", multiple=True, callback=parse_maps, metavar="CLASS=BLOCK[:SOURCE]",
              help=MAP_HELP)
@click.option("--set", "sets", multiple=True, callback=parse_sets, metavar="KEY=VALUE",
              help="Builder argument, as for `attn-export model`. Repeatable.")
@click.option("--attn", help="Block for a registered network's slots.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable rows.")
@handle_errors
def scan_command(network, input_shape, maps, sets, attn, seed, as_json):
    """List NETWORK's attention-like modules (a registered name, or FILE.py:FUNCTION).

    For each: the recogniser that matched (a codebase, `structural` for pasted code, `map`),
    the block it would become, the difference proven on random maps, or why it is kept.
    """
    from attn_export.export.user_file import is_user_spec

    if not is_user_spec(network):
        from attn_export.models.registry import model_card

        model_card(network)  # unknown names fail before torch is imported
    import numpy as np
    import torch

    from attn_export.export.network_source import NetworkSource
    from attn_export.export.request import Clock, network_request
    from attn_export.modules.recognise.mapping import resolve_map
    from attn_export.modules.recognise.scan import scan_network

    source = NetworkSource()
    req = source.resolve(network_request(network, sets, attn=attn, input_shape=input_shape,
                                         seed=seed))
    model, _ = source.prepared(req, Clock())
    example = torch.from_numpy(np.random.default_rng(seed).standard_normal(
        req.input_shape, dtype=np.float32))
    rows = scan_network(model, resolve_map(maps, model), example=example)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in rows], indent=2))
        return
    click.echo(format_scan(rows))
