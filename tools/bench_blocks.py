"""`make bench`: every tier-1 block at two shapes (SHAPES), naive and deploy as multiples of the
one-pass floor, on ONNX Runtime CPU (2 threads by default), interleaved in the same run.

For the conv-heavy blocks a second table gives, from ONNX Runtime's profile of the deploy graph,
the whole graph's kernel time over that of its Conv/MatMul/Gemm nodes: how far the block is from
"just its convolutions".

    python tools/bench_blocks.py [--blocks se,cbam] [--rounds 15] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from attn_export.bench.graphs import block_onnx
from attn_export.bench.profile import profile_nodes
from attn_export.bench.report import blocks_table, dims
from attn_export.bench.run import BenchSettings, bench_block, input_array
from attn_export.modules.registry import list_blocks

SHAPES = [(1, 256, 56, 56), (1, 64, 160, 160)]
QUADRATIC = {"mhsa": [(1, 256, 28, 28), (1, 64, 40, 40)]}
"""Global self-attention is quadratic in H*W (64x160x160 needs 8 x 25600^2 floats): smaller maps."""
CONV_HEAVY = ("lka", "van", "sk", "epsa", "triplet", "bam", "mhsa", "external", "gc")
CONV_OPS = ("Conv", "FusedConv", "NchwcConv", "MatMul", "FusedMatMul", "Gemm")


def conv_share(block: str, shape, threads: int) -> float:
    """Deploy graph kernel time over its conv/matmul kernel time, from ONNX Runtime's profile."""
    with tempfile.TemporaryDirectory(prefix="attn-export-bench-") as tmp:
        path = block_onnx(block, shape, "deploy", Path(tmp))
        rows = profile_nodes(path, input_array(shape, 0), threads, runs=10)
    convs = sum(r.median_us for r in rows if r.op_type in CONV_OPS)
    return sum(r.median_us for r in rows) / convs if convs else float("nan")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", default=",".join(list_blocks(tier=1)))
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="Also write every result here.")
    args = parser.parse_args(argv)
    settings = BenchSettings(rounds=args.rounds, threads=args.threads)
    groups: dict[tuple, list] = {}
    for block in args.blocks.split(","):
        shapes = QUADRATIC.get(block, SHAPES)
        print(f"bench {block} at {', '.join(dims(s) for s in shapes)} ...", file=sys.stderr,
              flush=True)
        groups.setdefault(tuple(shapes), []).append(bench_block(block, shapes, settings))
    print(f"ONNX Runtime CPU, {args.threads} threads, {args.rounds} interleaved rounds. Each cell: "
          "the median over rounds of (fastest run of the graph / fastest run of the floor in the "
          "same round), and in square brackets the best (fastest run / fastest floor run overall)\n")
    for results in groups.values():
        print(blocks_table(results) + "\n")
    conv = [b for b in args.blocks.split(",") if b in CONV_HEAVY]
    if conv:
        print("| block | " + " | ".join(f"{dims(s)} deploy / its convs" for s in SHAPES) + " |")
        print("|---|" + "---|" * len(SHAPES))
        for block in conv:
            shapes = QUADRATIC.get(block, SHAPES)
            cells = [f"{conv_share(block, s, args.threads):.2f} ({dims(s)})" if block in QUADRATIC
                     else f"{conv_share(block, s, args.threads):.2f}" for s in shapes]
            print(f"| {block} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps([r.to_dict() for rs in groups.values() for r in rs],
                                        indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
