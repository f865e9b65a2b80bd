"""Samples -> latency percentiles, throughput, and ratios with their per-round spread.

Ratios are taken round by round (the fastest run of graph A in round r over the fastest of graph B
in the same round), so both sides of each ratio saw the same machine, and a run that a busy
neighbour preempted does not count. The reported ratio is the
median over rounds, ``min``/``max`` the extreme rounds, ``best`` the fastest run of A over the
fastest run of B in the whole run (best-of-N, the figure least moved by a busy machine: a long
graph is preempted more often than the floor, which inflates its per-round ratios under load);
the noise is half the interquartile range of the per-round ratios, relative to their median.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from attn_export.bench.timing import Samples


@dataclass(frozen=True)
class Latency:
    """One graph's latency in milliseconds over every timed iteration, and its throughput."""

    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    iterations: int
    throughput_per_s: float  # samples (batch items) per second at the median latency

    def to_dict(self) -> dict:
        return {k: round(v, 5) if isinstance(v, float) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Ratio:
    """A/B from per-round minima: median over rounds, least-disturbed round, relative noise."""

    median: float
    min: float
    max: float
    noise: float
    best: float

    def to_dict(self) -> dict:
        return {k: round(v, 4) for k, v in asdict(self).items()}


def latency(samples: Samples, batch: int) -> Latency:
    flat = samples.flat() * 1e3
    p50, p90, p99 = (float(v) for v in np.percentile(flat, [50, 90, 99]))
    return Latency(p50, p90, p99, float(flat.mean()), float(flat.min()), int(flat.size),
                   batch * 1e3 / p50 if p50 > 0 else float("inf"))


def ratio(a: Samples, b: Samples) -> Ratio:
    per_round = a.round_minima() / b.round_minima()
    q1, med, q3 = (float(v) for v in np.percentile(per_round, [25, 50, 75]))
    best = float(a.flat().min() / b.flat().min())
    return Ratio(med, float(per_round.min()), float(per_round.max()),
                 (q3 - q1) / 2 / med if med > 0 else 0.0, best)
