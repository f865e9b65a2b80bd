"""Measure which exporter/opset/shape-mode combinations work, per block and form (`make matrix`).

Prints one line per combination: pass, FAIL (ORT differs from PyTorch at some validated shape, with
the worst error) or ERROR (export refused or failed, with the first line of the reason). Reference
forms are included: they show which published forms break, and how, without the rewrite.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
from collections import Counter

from attn_export.errors import AttnExportError
from attn_export.export.pipeline import ExportRequest, export_block
from attn_export.modules.registry import BLOCKS, SHAPE_MODES, list_blocks


def outcome(block: str, variant: str, exporter: str, opset: int, mode: str) -> str:
    shape = (1, BLOCKS[block].default_channels, 16, 16)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            result = export_block(ExportRequest(block=block, variant=variant, input_shape=shape,
                                                opset=opset, exporter=exporter, dynamic=mode,
                                                output_dir=tmp))
        except AttnExportError as exc:
            return f"ERROR {str(exc)[:110]}"
        except Exception as exc:  # a crash is a measured outcome here, not a reason to stop
            return f"CRASH {type(exc).__name__}: {str(exc).splitlines()[0][:100]}"
    bad = [r for r in result.rows if not r.comparison.passed]
    if bad:
        worst = max(bad, key=lambda r: r.comparison.max_abs)
        return f"FAIL max abs {worst.comparison.max_abs:.2e} at {worst.case}"
    return "pass"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--blocks", nargs="*", default=list_blocks())
    parser.add_argument("--variants", nargs="*", default=["deploy", "reference"])
    parser.add_argument("--exporters", nargs="*", default=["torchscript", "dynamo"])
    parser.add_argument("--opsets", nargs="*", type=int, default=[11, 13, 17, 18])
    parser.add_argument("--modes", nargs="*", default=list(SHAPE_MODES))
    args = parser.parse_args()
    tally: Counter = Counter()
    for block, variant, exporter, opset, mode in itertools.product(
            args.blocks, args.variants, args.exporters, args.opsets, args.modes):
        if variant == "deploy" and mode not in BLOCKS[block].shape_modes:
            continue  # refused by design; the refusal itself is tested
        result = outcome(block, variant, exporter, opset, mode)
        tally[(variant, result.split()[0])] += 1
        print(f"{block:14} {variant:9} {exporter:11} {opset:>2} {mode:5} {result}", flush=True)
    print("summary: " + ", ".join(f"{v} {k}: {n}" for (v, k), n in sorted(tally.items())))


if __name__ == "__main__":
    main()
