"""`make bench`: every tier-1 block, naive and deploy, timed end to end on ONNX Runtime CPU.

What `attn-export bench BLOCK` times, for all of them: whole-graph ``session.run`` calls,
interleaved in rounds with a one-pass floor (one ``Mul`` over the same tensor). Per block and
shape the table gives the p50 latency of the naive and the deploy graph, each as a multiple of the
floor (median over rounds of the per-round ratio), deploy/naive with its noise, and the verdict
`attn-export bench` prints (faster / the same within noise / slower).

``--write docs/speed.md`` replaces the page's section between its bench markers, headed by the
conditions of the run (ONNX Runtime version, cores, threads, rounds, load average before and after,
date). A run that starts while the load average exceeds a quarter of the cores is labelled as
measured under load: its absolute figures must not be quoted.

With ``--profile`` a second table gives, from ONNX Runtime's profile of the deploy graph, the sum of
kernel times over that of its Conv/MatMul/Gemm nodes: a profile sum, not an end-to-end figure.

    python tools/bench_blocks.py [--blocks se,cbam] [--rounds 15] [--threads 2] [--profile]
                                 [--write docs/speed.md] [--json out.json]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import sys
import tempfile
from pathlib import Path

from attn_export.bench.graphs import FLOOR, block_onnx
from attn_export.bench.profile import profile_nodes
from attn_export.bench.report import dims
from attn_export.bench.run import BenchResult, BenchSettings, bench_block, input_array, versions
from attn_export.modules.registry import list_blocks

SHAPES = [(1, 256, 56, 56), (1, 64, 160, 160)]
QUADRATIC = {"mhsa": [(1, 256, 28, 28), (1, 64, 40, 40)]}
"""Global self-attention is quadratic in H*W (64x160x160 needs 8 x 25600^2 floats): smaller maps."""
CONV_HEAVY = ("lka", "van", "sk", "epsa", "triplet", "bam", "mhsa", "external", "gc")
CONV_OPS = ("Conv", "FusedConv", "NchwcConv", "MatMul", "FusedMatMul", "Gemm")
MARKERS = ("<!-- bench:start -->", "<!-- bench:end -->")
BUSY = 0.25
"""Load average per core above which a run is labelled as measured under load."""


def verdict(r) -> str:
    """The words `attn-export bench` prints for deploy/naive."""
    if r.median < 1 - r.noise:
        return "faster"
    return "**slower**" if r.median > 1 + r.noise else "same within noise"


def e2e_table(results: list[BenchResult]) -> str:
    """One row per block and shape: p50s, multiples of the floor, deploy/naive and its verdict."""
    lines = ["| block | shape | floor p50 ms | naive p50 ms | deploy p50 ms | naive x floor | "
             "deploy x floor | deploy/naive | verdict |", "|" + "---|" * 9]
    for res in results:
        for s in res.shapes:
            lat, naive, deploy, vs = s.latency, s.vs_floor.get("naive"), s.vs_floor["deploy"], \
                s.vs_naive
            lines.append(
                f"| {res.target} | {dims(s.shape)} | {lat[FLOOR].p50_ms:.3f} | "
                + (f"{lat['naive'].p50_ms:.3f}" if "naive" in lat else "-")
                + f" | {lat['deploy'].p50_ms:.3f} | "
                + (f"{naive.median:.1f}" if naive else "-") + f" | {deploy.median:.1f} | "
                + (f"{vs.median:.2f} ±{100 * vs.noise:.0f}% | {verdict(vs)}" if vs else "- | -")
                + " |")
    return "\n".join(lines)


def not_faster(results: list[BenchResult]) -> str:
    """The sentence that names the blocks whose deploy graph is not faster at some shape."""
    rows = [(res.target, dims(s.shape), verdict(s.vs_naive)) for res in results for s in res.shapes
            if s.vs_naive is not None and verdict(s.vs_naive) != "faster"]
    if not rows:
        return "Every deploy graph is faster than its naive graph end to end at every shape."
    return ("Not faster end to end: " + "; ".join(f"`{b}` at {d} ({v.strip('*')})" for b, d, v in rows)
            + ".")


def conv_share(block: str, shape, threads: int) -> float:
    """Deploy graph kernel time over its conv/matmul kernel time, from ONNX Runtime's profile."""
    with tempfile.TemporaryDirectory(prefix="attn-export-bench-") as tmp:
        path = block_onnx(block, shape, "deploy", Path(tmp))
        rows = profile_nodes(path, input_array(shape, 0), threads, runs=10)
    convs = sum(r.median_us for r in rows if r.op_type in CONV_OPS)
    return sum(r.median_us for r in rows) / convs if convs else float("nan")


def profile_table(blocks: list[str], threads: int) -> str:
    lines = ["| block | shape | deploy kernel time / its Conv+MatMul kernel time |", "|---|---|---|"]
    for block in blocks:
        for shape in QUADRATIC.get(block, SHAPES):
            lines.append(f"| {block} | {dims(shape)} | {conv_share(block, shape, threads):.2f} |")
    return "\n".join(lines)


def conditions(args, load_before: tuple[float, ...], load_after: tuple[float, ...]) -> str:
    cores = os.cpu_count() or 1
    v = versions()
    # the run's own intra-op threads raise the load average during and after it (two threads on
    # two cores read ~2), so only what was running when it began says whether the machine was busy
    busy = load_before[0] > BUSY * cores
    head = (f"Measured {datetime.date.today().isoformat()} by `make bench` "
            f"(`python tools/bench_blocks.py --rounds {args.rounds} --threads {args.threads}`): "
            f"ONNX Runtime {v['onnxruntime']} CPU, {v['machine']}, {cores} cores, "
            f"{args.threads} intra-op threads, {args.rounds} interleaved rounds; load average "
            f"{load_before[0]:.2f} before, {load_after[0]:.2f} after.")
    if busy:
        head += ("\n\n!!! warning \"Measured under load\"\n    The machine was busy during this run "
                 "(load average above a quarter of its cores): the ratios are indicative, the "
                 "absolute milliseconds are not. Re-run `make bench` on an idle machine before "
                 "quoting them.")
    return head


def write_section(page: Path, text: str) -> None:
    """Replace the page's section between the bench markers with ``text``."""
    start, end = MARKERS
    old = page.read_text()
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    if not pattern.search(old):
        raise SystemExit(f"{page}: the markers {start} ... {end} are missing")
    page.write_text(pattern.sub(lambda _: f"{start}\n{text}\n{end}", old))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", default=",".join(list_blocks(tier=1)))
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--shapes", help="NxCxHxW,... instead of the two standard shapes.")
    parser.add_argument("--profile", action="store_true",
                        help="Also the kernel-profile table of the conv-heavy blocks.")
    parser.add_argument("--write", type=Path, help="Put the tables into this page's bench section.")
    parser.add_argument("--json", type=Path, help="Also write every result here.")
    args = parser.parse_args(argv)
    settings = BenchSettings(rounds=args.rounds, threads=args.threads)
    blocks = args.blocks.split(",")
    load_before = os.getloadavg()
    results = []
    asked = [tuple(int(d) for d in s.split("x")) for s in args.shapes.split(",")] \
        if args.shapes else None
    for block in blocks:
        shapes = asked or QUADRATIC.get(block, SHAPES)
        print(f"bench {block} at {', '.join(dims(s) for s in shapes)} ...", file=sys.stderr,
              flush=True)
        results.append(bench_block(block, shapes, settings))
    parts = [conditions(args, load_before, os.getloadavg()), e2e_table(results),
             not_faster(results)]
    conv = [b for b in blocks if b in CONV_HEAVY]
    if args.profile and conv:
        parts += ["Kernel-profile sums (not end to end): the deploy graph's summed kernel time "
                  "over that of its convolutions and matmuls, from ONNX Runtime's profiler.",
                  profile_table(conv, args.threads)]
    text = "\n\n".join(parts)
    print(text)
    if args.write:
        write_section(args.write, text)
    if args.json:
        args.json.write_text(json.dumps([r.to_dict() for r in results], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
