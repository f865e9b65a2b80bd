"""FP16 and INT8 graphs of the catalog's tail (TAIL: tier 2 and 3 blocks) run on ONNX Runtime
and stay within their precision's tolerance; the export at opset 13 (the matrix covers 11, 17 and
18) validates."""

from __future__ import annotations

import numpy as np
import pytest

from attn_export.export.int8_from_onnx import int8_from_onnx
from attn_export.export.onnx_from_torch import io_names
from attn_export.export.precision import write_fp16_onnx
from attn_export.modules.registry import BLOCKS
from attn_export.runtime.compare import compare, has_spread
from attn_export.runtime.fp16_rounding import Fp16RoundingRunner
from attn_export.runtime.inputs import extra_feeds
from attn_export.runtime.onnxruntime_runner import OnnxRuntimeRunner

TAIL = [n for n in ("ema", "shuffle_attention", "criss_cross", "psa_p", "psa_s", "bilinear",
                    "soca", "residual_attention", "dia", "sca") if n in BLOCKS]
SHAPE_HW = (12, 10)
INT8_BEYOND_TOLERANCE = {"ema": 0.85, "residual_attention": 0.95}
"""Blocks whose Q/DQ graph runs but misses the int8 row on ORT CPU, with the cosine it keeps
(measured; the precision notes of the documentation say why): EMA divides each channel by its
own standard deviation after a quantized grouped conv, which amplifies the conv's INT8 error;
residual_attention (stage 1) chains 20 quantized convs, whose errors add up."""


@pytest.fixture(scope="module", params=TAIL)
def exported(request, tmp_path_factory):
    import torch

    from attn_export.export.onnx_from_torch import onnx_from_torch
    from attn_export.export.stages import randomize_norm_statistics
    from attn_export.modules.factory import create_block
    from attn_export.runtime.inputs import standard_cases

    name, info = request.param, BLOCKS[request.param]
    shape = (1, info.default_channels, *SHAPE_HW)
    torch.manual_seed(0)
    block = create_block(name, shape[1], **({"input_size": SHAPE_HW} if info.needs_geometry
                                            else {})).eval()
    randomize_norm_statistics(block)
    path = onnx_from_torch(block, shape, tmp_path_factory.mktemp(name) / f"{name}.onnx", 13,
                           "torchscript", "batch")
    _, output_names, extras = io_names(block)  # dia, sca: named state inputs and outputs
    cases = standard_cases(shape, 1) + standard_cases((3, *shape[1:]), 2)[:1]
    expected = []
    for i, (case, x) in enumerate(cases):
        feed = {"input": x, **extra_feeds(extras, x.shape[0], 10 + i)}
        with torch.no_grad():
            out = block(*(torch.from_numpy(v) for v in feed.values()))
        out = out if isinstance(out, tuple) else (out,)
        expected.append((case, feed, {k: v.numpy() for k, v in zip(output_names, out)}))
    return name, path, expected


def _check(runner, expected, precision):
    for case, feed, want in expected:
        got = runner.infer(feed)
        judge_gain = all(has_spread(v) for v in feed.values())  # as runtime/validate.py judges
        for output, value in want.items():
            c = compare(got[output], value, precision, output, judge_gain)
            assert c.passed, f"{precision} {case} {output}: {c}"


def test_opset13_graph_matches_torch(exported):
    _, path, expected = exported
    with OnnxRuntimeRunner(path, ["CPUExecutionProvider"]) as runner:
        _check(runner, expected, "fp32")


def test_fp16_graph_passes_the_fp16_tolerance(exported):
    _, path, expected = exported
    conv = write_fp16_onnx(path, sample_feeds=[feed for _, feed, _ in expected[:2]])
    _check(Fp16RoundingRunner(conv.path), expected, "fp16")


def test_int8_graph_runs_finite_and_close(exported, tmp_path):
    """INT8 must run and stay finite; the int8 row is asserted where it holds (see INT8_BEYOND_TOLERANCE)."""
    name, path, expected = exported
    result = int8_from_onnx(path, tmp_path / "q.onnx", [feed for _, feed, _ in expected])
    with OnnxRuntimeRunner(result.path, ["CPUExecutionProvider"]) as runner:
        for case, feed, want in expected:
            got = runner.infer(feed)
            judge_gain = all(has_spread(v) for v in feed.values())
            for output, value in want.items():
                c = compare(got[output], value, "int8", output, judge_gain)
                assert np.isfinite(got[output]).all(), f"int8 {case}: non-finite {output}"
                if name in INT8_BEYOND_TOLERANCE:
                    # Near-constant outputs (zeros in) make cosine meaningless: atol decides.
                    close = c.cosine >= INT8_BEYOND_TOLERANCE[name] or c.max_abs <= c.tolerance.atol
                    assert close, f"{case} {output}: {c}"
                else:
                    assert c.passed, f"int8 {case} {output}: {c}"
