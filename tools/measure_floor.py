"""Measure how far our reduced-precision graphs land from their precision floor.

For each block given (default: the whole catalog) at 1x64x32x32, seed 0, this exports the block,
writes its FP16 graph (and INT8 with ``--int8``), validates it and prints, per golden case, our
rel l2, the floor's rel l2 and their ratio: the numbers behind ``FLOOR_FACTOR`` in
``attn_export/runtime/floor.py``. Run on an idle machine:
``python tools/measure_floor.py --json /tmp/floor.json [--int8] [BLOCK ...]``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import warnings
from pathlib import Path

from attn_export.export.pipeline import ExportRequest, export_block
from attn_export.export.precision import precision_onnx_from_export
from attn_export.modules.registry import list_blocks


def measure(block: str, precisions: list[str]) -> dict:
    """``{precision: {case: {ours, floor, factor, verdict}}}`` for one block."""
    found: dict = {}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = export_block(ExportRequest(block=block, output_dir=Path(tmp)))
        for precision in precisions:
            out = precision_onnx_from_export(res.onnx_path, res.golden_path, precision)
            found[precision] = {
                r.case: {"ours": r.comparison.rel_l2,
                         "floor": r.verdict.floor.rel_l2 if r.verdict.floor else None,
                         "factor": r.verdict.factor, "verdict": r.verdict.verdict}
                for r in out.rows}
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("blocks", nargs="*")
    parser.add_argument("--int8", action="store_true", help="Also the INT8 graph.")
    parser.add_argument("--json", type=Path, help="Write the numbers here.")
    args = parser.parse_args()
    precisions = ["fp16", "int8"] if args.int8 else ["fp16"]
    results = {}
    for block in args.blocks or list_blocks():
        try:
            results[block] = measure(block, precisions)
        except Exception as exc:  # noqa: BLE001 - a tool run reports every block it can
            results[block] = {"error": str(exc).splitlines()[0]}
            print(f"{block}: {results[block]['error']}")
            continue
        for precision, cases in results[block].items():
            factors = [c["factor"] for c in cases.values() if c["factor"] is not None]
            words = sorted({c["verdict"] for c in cases.values()})
            print(f"{block:10s} {precision}: factor {min(factors, default=0):.2f}.."
                  f"{max(factors, default=0):.2f}  {words}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
