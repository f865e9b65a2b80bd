"""The report's pictures, drawn by matplotlib as inline SVG (text kept as text, no network).

matplotlib rather than a JavaScript plotting library: the page must open from disk on a Jetson
with nothing to fetch, and an SVG of a histogram is a few kilobytes where an embedded plotting
runtime is megabytes. Each function returns an ``<svg>`` string, or "" when there is nothing to
draw.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence

import numpy as np

COLORS = {"fp32": "#4c72b0", "fp16": "#dd8452", "int8": "#55a868", "bf16": "#8172b3"}
TINY = 1e-12


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "none", "font.size": 9, "axes.spines.top": False,
                         "axes.spines.right": False})
    return plt, plt.figure(figsize=(width, height))


def _svg(plt, fig) -> str:
    buf = io.StringIO()
    fig.tight_layout()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    text = buf.getvalue()
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)  # RDF: date, creator URLs
    return text[text.index("<svg"):]


def error_distribution(samples: Mapping[str, np.ndarray], floors: Mapping[str, float],
                       bounds: Mapping[str, float]) -> str:
    """Histogram of element-wise |error| per precision on a log axis, with each precision's floor
    (what PyTorch at that precision reaches) and its tolerance bound as vertical lines."""
    present = {p: v[np.isfinite(v)] for p, v in samples.items() if v.size}
    if not present:
        return ""
    plt, fig = _figure(7.5, 3.0)
    ax = fig.add_subplot(111)
    top = max(float(v.max(initial=TINY)) for v in present.values())
    bins = np.logspace(-12, np.log10(max(top, TINY) * 2), 60)
    for precision, values in present.items():
        ax.hist(np.clip(values, TINY, None), bins=bins, histtype="step", linewidth=1.6,
                color=COLORS.get(precision), label=f"{precision} ({values.size:,} elements)")
    for precision, floor in floors.items():
        if floor > 0:
            ax.axvline(floor, color=COLORS.get(precision), linestyle="--", linewidth=1,
                       label=f"{precision} floor (max abs)")
    for precision, bound in bounds.items():
        if bound > 0 and precision in present:
            ax.axvline(bound, color=COLORS.get(precision), linestyle=":", linewidth=1,
                       label=f"{precision} tolerance (atol)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("|graph - PyTorch fp32| per element (values below 1e-12 drawn at 1e-12)")
    ax.set_ylabel("elements")
    ax.legend(fontsize=7, frameon=False, loc="upper left")
    return _svg(plt, fig)


def error_growth(path: Sequence[Mapping]) -> str:
    """Relative L2 error of each node's output along the path ``--locate`` followed."""
    points = [p for p in path if p.get("rel_l2") is not None]
    if not points:
        return ""
    plt, fig = _figure(7.5, 2.8)
    ax = fig.add_subplot(111)
    ys = [max(float(p["rel_l2"]), TINY) for p in points]
    ax.plot(range(len(ys)), ys, marker="o", markersize=3, color=COLORS["fp16"])
    ax.set_yscale("log")
    labels = [str(p.get("op", "")) for p in points]
    step = max(1, len(labels) // 25)
    ax.set_xticks(range(0, len(labels), step))
    ax.set_xticklabels(labels[::step], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("rel L2 vs reference")
    ax.set_xlabel("nodes along the path, inputs first")
    return _svg(plt, fig)


def error_map(channel: np.ndarray | None, position: np.ndarray | None, title: str) -> str:
    """Mean |error| per channel (bars) and per position (heat map) of one output."""
    if channel is None or position is None:
        return ""
    plt, fig = _figure(7.5, 2.6)
    left = fig.add_subplot(121)
    left.bar(range(channel.size), channel, color=COLORS["fp16"], width=1.0)
    left.set_xlabel("channel")
    left.set_ylabel("mean |error|")
    left.set_title(title, fontsize=8)
    right = fig.add_subplot(122)
    image = right.imshow(position, cmap="magma", aspect="auto")
    right.set_xlabel("W")
    right.set_ylabel("H")
    right.set_title("mean |error| per position", fontsize=8)
    fig.colorbar(image, ax=right, fraction=0.046)
    return _svg(plt, fig)


def latency(bench: Mapping) -> str:
    """p50 per graph with a whisker from the fastest run to p99, one panel per bench shape."""
    results = [r for r in bench.get("results", []) if r.get("latency_ms")]
    if not results:
        return ""
    plt, fig = _figure(7.5, 1.0 + 0.9 * len(results))
    for i, result in enumerate(results, 1):
        ax = fig.add_subplot(len(results), 1, i)
        names = list(result["latency_ms"])
        lat = [result["latency_ms"][n] for n in names]
        p50 = [v["p50_ms"] for v in lat]
        low = [v["p50_ms"] - v["min_ms"] for v in lat]
        high = [v["p99_ms"] - v["p50_ms"] for v in lat]
        ax.barh(names, p50, xerr=[low, high], color=COLORS["fp32"], capsize=3)
        ax.set_title("x".join(str(d) for d in result["shape"]) + ": p50, whisker min..p99",
                     fontsize=8)
        ax.set_xlabel("ms")
    return _svg(plt, fig)
