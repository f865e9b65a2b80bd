"""Statistics of a bench: per-round ratios of the fastest runs, percentiles, throughput."""

import pytest

from attn_export.bench.stats import latency, ratio
from attn_export.bench.timing import Samples, interleaved_bursts


def test_ratio_uses_each_rounds_fastest_run():
    a = Samples("a", [[0.004, 0.009], [0.006, 0.002], [0.003, 0.003]])
    b = Samples("b", [[0.002, 0.050], [0.001, 0.001], [0.001, 0.004]])
    r = ratio(a, b)
    assert (r.min, r.median, r.max) == pytest.approx((2.0, 2.0, 3.0))
    assert r.best == pytest.approx(0.002 / 0.001)
    assert r.noise == pytest.approx((2.5 - 2.0) / 2 / 2.0)


def test_latency_percentiles_and_throughput():
    lat = latency(Samples("x", [[0.001] * 98 + [0.002, 0.010]]), batch=4)
    assert lat.p50_ms == pytest.approx(1.0) and lat.min_ms == pytest.approx(1.0)
    assert lat.p99_ms > lat.p90_ms and lat.iterations == 100
    assert lat.throughput_per_s == pytest.approx(4000.0)


def test_rounds_rotate_the_order_and_every_graph_runs_every_round():
    calls = []

    def burst(role):
        return lambda n: calls.append((role, n)) or [0.001] * n

    samples = interleaved_bursts({"a": burst("a"), "b": burst("b"), "c": burst("c")}, 3, 2)
    assert [c[0] for c in calls] == list("abc" "bca" "cab")
    assert all(len(s.rounds) == 3 and s.rounds[0] == [0.001, 0.001] for s in samples.values())
