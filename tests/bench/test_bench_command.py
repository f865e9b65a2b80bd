"""``attn-export bench``: the command runs on ONNX Runtime and reports sane numbers (never timed:
no assertion here depends on how fast anything is), refuses what it cannot time in one line, and
says how to get TensorRT where it is missing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from attn_export.bench.graphs import floor_onnx
from attn_export.cli import main

SMALL = "1x16x8x8"
FAST = ["--rounds", "3", "--iters", "2", "--warmup", "1"]


def run(*args):
    return CliRunner().invoke(main, ["bench", *args])


def test_block_bench_prints_floor_naive_deploy_and_their_ratio():
    result = run("se", "--shapes", SMALL, *FAST)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("se @ 1x16x8x8: ONNX Runtime CPU, 2 threads, 3 rounds x 2 runs")
    assert [ln.split()[0] for ln in lines[2:5]] == ["floor", "naive", "deploy"]
    assert "deploy / naive:" in result.output


def test_json_numbers_are_consistent():
    result = run("cbam", "--shapes", f"{SMALL},2x16x5x7", "--json", "--threads", "1", *FAST)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["backend"] == "ort-cpu" and data["threads"] == 1
    assert [r["shape"] for r in data["results"]] == [[1, 16, 8, 8], [2, 16, 5, 7]]
    for res, batch in zip(data["results"], (1, 2)):
        for role in ("floor", "naive", "deploy"):
            lat = res["latency_ms"][role]
            assert lat["iterations"] == 3 * 2
            assert 0 < lat["min_ms"] <= lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"]
            assert lat["throughput_per_s"] == pytest.approx(batch * 1e3 / lat["p50_ms"], rel=1e-3)
        for r in (*res["ratio_to_floor"].values(), res["deploy_over_naive"]):
            assert 0 < r["min"] <= r["median"] <= r["max"] and np.isfinite(r["median"])
            assert r["best"] > 0
            assert r["noise"] >= 0
        assert set(res["ratio_to_floor"]) == {"naive", "deploy"}


def test_profile_lists_the_deploy_graph_ops():
    result = run("se", "--shapes", SMALL, "--profile", *FAST)
    assert result.exit_code == 0, result.output
    assert "ONNX Runtime profile of se @ 1x16x8x8" in result.output
    assert "ReduceMean" in result.output and "Mul" in result.output


def test_onnx_model_is_timed_against_the_floor(tmp_path):
    model = floor_onnx((1, 8, 4, 4), tmp_path / "m.onnx")
    result = run(str(model), "--json", *FAST)
    assert result.exit_code == 0, result.output
    res = json.loads(result.output)["results"][0]
    assert res["shape"] == [1, 8, 4, 4] and set(res["latency_ms"]) == {"floor", "model"}
    wrong = run(str(model), "--shapes", "1x8x5x5", *FAST)
    assert wrong.exit_code == 1
    assert wrong.output.strip().splitlines() == [
        "error: --shapes 1x8x5x5 does not fit " f"{model}'s input 1x8x4x4 ('?' = any size)"]


def test_dynamic_model_needs_shapes(tmp_path):
    from attn_export.export.onnx_from_torch import onnx_from_torch
    from attn_export.modules.factory import create_block

    path = onnx_from_torch(create_block("se", 16), (1, 16, 8, 8), tmp_path / "se.onnx",
                           dynamic="all")
    result = run(str(path), *FAST)
    assert result.exit_code == 1 and "give the shapes to time with --shapes" in result.output
    ok = run(str(path), "--shapes", "2x16x6x9", "--json", *FAST)
    assert ok.exit_code == 0 and json.loads(ok.output)["results"][0]["shape"] == [2, 16, 6, 9]


@pytest.mark.parametrize("args, message", [
    (["nosuch"], "is neither a block"),
    (["missing.onnx"], "missing.onnx does not exist"),
    (["se", "--use-cuda-graph"], "--use-cuda-graph applies to TensorRT engines only"),
    (["se", "--backend", "tensorrt"], "engines run on tensorrt"),
], ids=["unknown", "missing-file", "cuda-graph-on-ort", "trt-for-block"])
def test_what_cannot_be_timed_is_one_line_and_exit_1(args, message):
    result = run(*args)
    assert result.exit_code == 1 and message in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_bad_shapes_are_bad_flags():
    result = run("se", "--shapes", "1x16x8")
    assert result.exit_code == 2 and "is not NxCxHxW" in result.output


def test_missing_ort_cuda_provider_says_how_to_get_it():
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has the CUDA execution provider")
    result = run("se", "--shapes", SMALL, "--backend", "ort-cuda", *FAST)
    assert result.exit_code == 1 and "install onnxruntime-gpu" in result.output
