"""bench-serve runs briefly against the real server and prints sane, measured numbers."""

from __future__ import annotations

import re

from click.testing import CliRunner

from attn_export.cli import main


def test_bench_serve_prints_percentiles_and_ratios(server, repo):
    result = CliRunner().invoke(main, ["bench-serve", server.http, "se", "--grpc-url", server.grpc,
                                       "--repo", str(repo), "--requests", "24", "--concurrency", "1,4"])
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines()
            if re.match(r"^(in-process|http|grpc)\s+\S+\s+\d+\s", line)]
    assert {r[0] for r in rows} == {"in-process", "http", "grpc"} and len(rows) == 5
    for r in rows:
        p50, p90, p99, rate, errors = map(float, r[3:8])
        assert 0 < p50 <= p90 <= p99 and rate > 0 and errors == 0, r
    assert "http p50 overhead over in-process" in result.output
    assert "grpc se: throughput at concurrency 4" in result.output


def test_bench_serve_raw_clients_measure_the_server_alone(server, repo):
    result = CliRunner().invoke(main, ["bench-serve", server.http, "se", "--grpc-url", server.grpc,
                                       "--repo", str(repo), "--requests", "24", "--concurrency", "1,2",
                                       "--client", "raw"])
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines()
            if re.match(r"^(http|grpc)\s+\S+\s+\d+\s", line)]
    assert len(rows) == 4 and all(float(r[7]) == 0 and float(r[6]) > 0 for r in rows), result.output
    assert "(raw)" in result.output


def test_bench_serve_refuses_a_url_with_a_scheme():
    result = CliRunner().invoke(main, ["bench-serve", "http://localhost:8000", "se"])
    assert result.exit_code == 1 and "without a scheme" in result.output
