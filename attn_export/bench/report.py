"""Text for people: one run's latency table, and the many-block table of ``make bench``."""

from __future__ import annotations

from collections.abc import Sequence

from attn_export.bench.graphs import FLOOR
from attn_export.bench.run import BenchResult, ShapeResult

BACKEND_LABELS = {"ort-cpu": "ONNX Runtime CPU", "ort-cuda": "ONNX Runtime CUDA",
                  "tensorrt": "TensorRT"}


def dims(shape: Sequence[int]) -> str:
    return "x".join(map(str, shape))


def header(result: BenchResult, shape: ShapeResult) -> str:
    s = result.settings
    threads = f", {s.threads} threads" if s.threads and s.backend != "tensorrt" else ""
    return (f"{result.target} @ {dims(shape.shape)}: {BACKEND_LABELS[s.backend]}{threads}, "
            f"{s.rounds} rounds x {shape.iters_per_round} runs per graph, interleaved")


def shape_table(result: BenchResult, shape: ShapeResult) -> str:
    """Percentiles, throughput and the ratio to the floor of every graph at one shape."""
    rows = [("graph", "p50 ms", "p90 ms", "p99 ms", "mean ms", "items/s", "x floor", "best",
             "range", "noise")]
    for role, lat in shape.latency.items():
        r = shape.vs_floor.get(role)
        rows.append((role, f"{lat.p50_ms:.3f}", f"{lat.p90_ms:.3f}", f"{lat.p99_ms:.3f}",
                     f"{lat.mean_ms:.3f}", f"{lat.throughput_per_s:.0f}",
                     "1" if role == FLOOR else f"{r.median:.2f}" if r else "-",
                     f"{r.best:.2f}" if r else "-",
                     f"{r.min:.2f}..{r.max:.2f}" if r else "-",
                     f"±{100 * r.noise:.1f}%" if r else "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [header(result, shape)]
    lines += ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                        enumerate(zip(row, widths))) for row in rows]
    if shape.vs_naive is not None:
        v = shape.vs_naive
        verdict = "faster" if v.median < 1 - v.noise else "slower" if v.median > 1 + v.noise \
            else "the same within noise"
        lines.append(f"deploy / naive: {v.median:.2f} (best {v.best:.2f}, rounds {v.min:.2f}.."
                     f"{v.max:.2f}, noise ±{100 * v.noise:.1f}%): {verdict}")
    return "\n".join(lines)


def result_text(result: BenchResult) -> str:
    parts = [shape_table(result, s) for s in result.shapes]
    parts += [f"note: {n}" for n in result.notes]
    return "\n\n".join(parts)


def blocks_table(results: Sequence[BenchResult]) -> str:
    """The speed table: per block and shape, naive and deploy as multiples of the floor.

    Every figure is the median over rounds of the per-round ratio (fastest run of the graph over
    fastest run of the floor in the same round), with ``best`` (fastest run over fastest run in the
    whole run) in brackets; the floor row gives the fastest run of the one-pass ``Mul`` at each
    shape, the last column the largest noise (half the IQR of the per-round ratios).
    """
    shapes = [s.shape for s in results[0].shapes]
    head = ["block"]
    for shape in shapes:
        head += [f"{dims(shape)} naive", "deploy", "deploy/naive"]
    lines = ["| " + " | ".join(head + ["noise"]) + " |", "|" + "---|" * (len(head) + 1)]
    floor = ["floor (ms, best)"]
    for s in results[0].shapes:
        floor += [f"{s.latency[FLOOR].min_ms:.3f}", "", ""]
    lines.append("| " + " | ".join(floor + [""]) + " |")
    for res in results:
        cells, noise = [res.target], 0.0
        for s in res.shapes:
            naive, deploy, vs = s.vs_floor.get("naive"), s.vs_floor["deploy"], s.vs_naive
            cells += [_pair(naive, 1), _pair(deploy, 1), _pair(vs, 2)]
            noise = max([noise, deploy.noise] + ([vs.noise] if vs else []))
        lines.append("| " + " | ".join(cells + [f"±{100 * noise:.0f}%"]) + " |")
    return "\n".join(lines)


def _pair(r, digits: int) -> str:
    """``median [best]`` of a ratio, or ``-``."""
    return "-" if r is None else f"{r.median:.{digits}f} [{r.best:.{digits}f}]"
