"""Measure the scale-aware metrics (relative L2 error, gain error) the tolerance table bounds.

For every block of the catalog, at the shapes the export validates (default 1x64x32x32 and
1x64x16x16), this prints and writes (``--json``) the worst relative L2 error and worst |gain|
over the golden cases of:

- ``fp32_floor``: PyTorch float32 against PyTorch float64 on the same weights and inputs (the
  noise floor of float32 arithmetic itself);
- ``fp32``: ONNX Runtime's float32 graph against PyTorch float32 (what the fp32 row judges);
- ``fp16``: the float16 graph (ONNX Runtime with FP16 rounding) against PyTorch float32;
- ``int8``: the Q/DQ graph (seeded calibration, gates float) against PyTorch float32, and whether
  it passes the elementwise/cosine criteria of the int8 row (some blocks fail them today).

The bounds in ``attn_export/runtime/compare.py`` are derived from these numbers (see the comment
there). Run: ``python tools/measure_tolerances.py --json /tmp/tolerances.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from attn_export.export.pipeline import ExportRequest, export_block, resolve
from attn_export.export.precision import precision_onnx_from_export
from attn_export.export.sources import build_block
from attn_export.modules.registry import BLOCKS, list_blocks
from attn_export.runtime.compare import TOLERANCES, scale_metrics
from attn_export.runtime.golden import load_golden


def _worst(pairs, atol: float) -> dict:
    """Worst rel_l2 and |gain| over (actual, expected) pairs; cases whose reference is ~0 skip
    the gain (it is undefined there and compare() sets it to 0)."""
    rel, gain = 0.0, 0.0
    for actual, expected in pairs:
        r, g = scale_metrics(np.asarray(actual, np.float64).ravel(),
                             np.asarray(expected, np.float64).ravel(), atol)
        rel, gain = max(rel, r), max(gain, abs(g))
    return {"rel_l2": rel, "gain": gain}


def _old_criteria(c) -> bool:
    """The allclose + cosine part of the verdict alone (the worst element has the largest
    excess over the bound, so checking it checks every element)."""
    t = c.tolerance
    excess = abs(c.worst_actual - c.worst_expected) - (t.atol + t.rtol * abs(c.worst_expected))
    return c.nonfinite == 0 and excess <= 0 and c.cosine >= t.min_cosine


def _rows_metrics(rows) -> dict:
    return {"rel_l2": max(r.comparison.rel_l2 for r in rows),
            "gain": max((abs(r.comparison.gain) for r in rows if r.comparison.gain_judged),
                        default=0.0),
            "cosine": min(r.comparison.cosine for r in rows),
            "passes_elementwise_and_cosine": all(_old_criteria(r.comparison) for r in rows)}


def float64_floor(req: ExportRequest, golden) -> dict:  # every case: the floor has no exceptions
    """PyTorch float32 (the golden outputs) against the same block in float64."""
    import torch

    module = build_block(resolve(req)).double()
    pairs = []
    with torch.no_grad():
        for case in golden.cases:
            x = torch.from_numpy(case.inputs["input"].astype(np.float64))
            pairs.append((case.outputs["output"], module(x).numpy()))
    return _worst(pairs, TOLERANCES["fp32"].atol)


def measure_block(block: str, hw: int, folder: Path) -> dict:
    shape = (1, BLOCKS[block].default_channels, hw, hw)
    req = ExportRequest(block=block, input_shape=shape, output_dir=folder)
    result = export_block(req)
    golden = load_golden(result.golden_path)
    out = {"block": block, "shape": list(shape),
           "fp32_floor": float64_floor(ExportRequest(block=block, input_shape=shape), golden),
           "fp32": _rows_metrics(result.rows)}
    for precision in ("fp16", "int8"):
        graph = precision_onnx_from_export(result.onnx_path, result.golden_path, precision)
        out[precision] = _rows_metrics(graph.rows) | {"passed_today": graph.passed}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--blocks", nargs="*", default=list_blocks())
    parser.add_argument("--sizes", nargs="*", type=int, default=[32, 16])
    parser.add_argument("--json", type=Path, help="Write every measurement here.")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for block in args.blocks:
            for hw in args.sizes:
                m = measure_block(block, hw, Path(tmp) / f"{block}{hw}")
                results.append(m)
                print(f"{block:14s} {hw:3d}  floor {m['fp32_floor']['rel_l2']:.1e}/"
                      f"{m['fp32_floor']['gain']:.1e}  fp32 {m['fp32']['rel_l2']:.1e}/"
                      f"{m['fp32']['gain']:.1e}  fp16 {m['fp16']['rel_l2']:.1e}/"
                      f"{m['fp16']['gain']:.1e}  int8 {m['int8']['rel_l2']:.1e}/"
                      f"{m['int8']['gain']:.1e} cos {m['int8']['cosine']:.4f} "
                      f"{'ok' if m['int8']['passes_elementwise_and_cosine'] else 'FAILS-TODAY'}",
                      flush=True)
    for key in ("fp32_floor", "fp32", "fp16", "int8"):
        rows = [r for r in results if key != "int8" or r["int8"]["passes_elementwise_and_cosine"]]
        print(f"{key:10s} worst rel_l2 {max(r[key]['rel_l2'] for r in rows):.3e}  worst |gain| "
              f"{max(r[key]['gain'] for r in rows):.3e}  over {len(rows)} block x size")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
