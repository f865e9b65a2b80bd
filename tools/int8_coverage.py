"""How much of each block INT8 quantizes: Q/DQ nodes and the share of MACs behind them.

For every block in the registry: the default export (``attn-export BLOCK``: torchscript, opset
17, 1xCx32x32, simplified), then the INT8 Q/DQ graph as ``--precision int8`` writes it (seeded
calibration; F2 keeps gates float; GEMVs and attention BMMs stay float), then the MAC count of
``attn_export/export/macs.py``. Prints the table of docs/precision-tensorrt.md::

    python tools/int8_coverage.py [BLOCK ...]
"""

from __future__ import annotations

import sys
import tempfile
import warnings
from pathlib import Path


def coverage(block: str, folder: Path) -> tuple[int, int, int, int]:
    """(weighted nodes, quantized nodes, INT8 MACs, total MACs) of one block's default export."""
    from attn_export.export.pipeline import ExportRequest, export_block
    from attn_export.export.precision import write_int8_onnx

    result = export_block(ExportRequest(block=block, output_dir=folder / block))
    shape = tuple(result.report["input_shape"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quant = write_int8_onnx(result.onnx_path, shapes={"input": shape})
    return len(quant.macs.per_node), len(quant.quantized), quant.macs.int8, quant.macs.total


def main(blocks: list[str]) -> int:
    from attn_export.modules.registry import list_blocks

    print("| block | weighted nodes | quantized nodes | INT8 MACs / all MACs | INT8 share |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="int8-coverage-") as tmp:
        for block in blocks or list_blocks():
            weighted, quantized, int8, total = coverage(block, Path(tmp))
            share = f"{100 * int8 / total:.1f}%" if total else "-"
            print(f"| `{block}` | {weighted} | {quantized} | {int8:,} / {total:,} | {share} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
