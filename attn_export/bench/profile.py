"""ONNX Runtime's own op-by-op profile (``SessionOptions.enable_profiling``), summed per node.

This is what the deploy forms were tuned from: which node of a graph takes the time. Each node's
kernel time is the median over the profiled runs (a run a busy neighbour preempted does not move
it) and is compared with the floor's single ``Mul``, so a row reads "this ReduceMax costs 3.1
floors".
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from attn_export.bench.timing import ort_session


@dataclass(frozen=True)
class NodeTime:
    """One node's median kernel time per run, in microseconds."""

    name: str
    op_type: str
    median_us: float

    def to_dict(self) -> dict:
        return {"name": self.name, "op_type": self.op_type, "median_us": round(self.median_us, 2)}


def profile_nodes(path: str | Path, x: np.ndarray, threads: int | None, runs: int = 20,
                  input_name: str = "input", warmup: int = 3) -> list[NodeTime]:
    """Kernel time per node of the graph at ``path``, slowest first (median over ``runs``)."""
    with tempfile.TemporaryDirectory(prefix="attn-export-profile-") as tmp:
        session = ort_session(path, threads, profile_prefix=os.path.join(tmp, "ort"))
        names = [o.name for o in session.get_outputs()]
        for _ in range(warmup + runs):
            session.run(names, {input_name: x})
        trace = Path(session.end_profiling())
        events = json.loads(trace.read_text())
    return summarize(events, runs, warmup)


def summarize(events: list[dict], runs: int, warmup: int = 0) -> list[NodeTime]:
    """Median kernel time of every node over the last ``runs`` of the profiled runs."""
    per_node: dict[str, list[float]] = defaultdict(list)
    op_of: dict[str, str] = {}
    for ev in events:
        if ev.get("cat") != "Node" or not ev.get("name", "").endswith("_kernel_time"):
            continue
        name = ev["name"][: -len("_kernel_time")]
        per_node[name].append(float(ev.get("dur", 0)))
        op_of[name] = ev.get("args", {}).get("op_name", "?")
    rows = []
    for name, durs in per_node.items():
        timed = durs[warmup:] if len(durs) > warmup else durs
        rows.append(NodeTime(name, op_of[name], float(np.median(timed[-runs:]))))
    return sorted(rows, key=lambda r: -r.median_us)


def format_profile(rows: list[NodeTime], floor_us: float | None = None, top: int = 15) -> str:
    """A table of the slowest nodes, with each as a multiple of the floor's kernel time."""
    total = sum(r.median_us for r in rows) or 1.0
    lines = [f"{'node':36s}  {'op':22s}  {'us/run':>9s}  {'share':>6s}  {'x floor':>7s}"]
    for r in rows[:top]:
        floors = f"{r.median_us / floor_us:7.2f}" if floor_us else "      -"
        lines.append(f"{r.name[:36]:36s}  {r.op_type[:22]:22s}  {r.median_us:9.1f}  "
                     f"{100 * r.median_us / total:5.1f}%  {floors}")
    lines.append(f"{'total':36s}  {'':22s}  {total:9.1f}  100.0%  "
                 + (f"{total / floor_us:7.2f}" if floor_us else "      -"))
    return "\n".join(lines)
