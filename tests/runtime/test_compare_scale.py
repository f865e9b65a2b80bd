"""Scale-aware verdicts: a uniform gain error fails, honest reduced-precision graphs still pass.

The catalog test builds each block's honest FP16 and INT8 graphs (the ones `attn-export BLOCK
--precision ...` writes), then multiplies their outputs by 1.01 (FP16) or 1.05 (INT8): cosine
similarity cannot see that, the gain bound must. The default suite runs it for four blocks; the
slow matrix (`make test-slow`, run by CI) for the whole catalog.
"""

from __future__ import annotations

import numpy as np
import pytest

from attn_export.modules.registry import list_blocks
from attn_export.runtime.compare import TOLERANCES, compare, has_spread, scale_metrics
from tests.conftest import channels_for

INT8_FAILS_TODAY = {
    # measured with tools/measure_tolerances.py at 1x64x16x16, seeded calibration, gates float:
    # these miss the int8 row's elementwise/cosine criteria already (before any gain bound), for
    # the reason the README gives (one per-tensor scale over maps spanning 0.5..40)
    "lka": "cosine 0.976 < 0.97+ elementwise misses (large-kernel conv chain, per-tensor scales)",
    "mhsa": "cosine 0.960 < 0.97 (attention BMM inputs quantized per tensor)",
    "sk": "cosine 0.912 < 0.97 (branch softmax over quantized branch sums)",
    # the tier-2/3 blocks, measured by this test's slow run at 1x64x16x16 (CI, 2026-12-01):
    "ema": "rel L2 0.48, cosine ~0.86 (each channel divided by its own deviation after a "
           "quantized grouped conv amplifies its INT8 error)",
    "encnet": "rel L2 0.13, elementwise 0.62 > 0.35 (codeword distances over quantized features)",
    "psa_p": "gain +3.2% > 2.5% and elementwise 0.44 (the HW softmax over a quantized 1x1 conv)",
    "psa_s": "cosine < 0.97 on the constant map (the channel-then-spatial gates of one level)",
    "residual_attention": "rel L2 0.50 (stage 1 chains 20 quantized convs)",
    "bilinear": "elementwise 2.7 > 0.35 on the large post-ReLU map (products of two quantized "
                "reductions)",
}
FAST = ("cbam", "se", "gct", "eca")


def test_a_gain_error_has_cosine_one_but_fails_every_row():
    e = np.random.default_rng(0).standard_normal((1, 8, 16, 16)).astype(np.float32) * 4
    for precision, gain in (("fp32", 1e-4), ("fp16", 0.01), ("int8", 0.05)):
        c = compare((e * (1 + gain)).astype(np.float32), e, precision)
        assert c.cosine == pytest.approx(1.0, abs=1e-9)
        assert c.gain == pytest.approx(gain, rel=1e-3) and c.rel_l2 == pytest.approx(gain, rel=1e-3)
        assert not c.passed, precision
    # the README's example from the review: INT8 outputs all 20% too large used to pass
    assert not compare((e * 1.2).astype(np.float32), e, "int8").passed


def test_an_offset_on_a_constant_map_is_not_a_gain():
    """A constant 0.5 map quantized one INT8 step off moves every element alike: the elementwise
    bound judges it; the gain (undefined without spread) stays 0."""
    e = np.full((1, 4, 8, 8), 0.5, np.float32)
    rel_l2, gain = scale_metrics((e + 0.12).ravel().astype(np.float64), e.ravel().astype(
        np.float64), TOLERANCES["int8"].atol)
    assert gain == 0.0 and rel_l2 == pytest.approx(0.24)


def test_a_reference_below_atol_is_judged_absolutely():
    """1e-6 against 2e-6 is 100% off relatively but inside fp32's atol: rel_l2 is floored at atol
    (reported 0.1) and not judged; a near-constant map has no gain."""
    e = np.full(100, 1e-6, np.float32)
    c = compare(np.full(100, 2e-6, np.float32), e, "fp32")
    assert c.passed and c.gain == 0.0 and c.rel_l2 == pytest.approx(0.1)
    assert c.sqnr_db == pytest.approx(20.0)
    assert compare(e, e).sqnr_db is None  # bit-exact: no finite SQNR, and JSON has no inf


def _outputs(runner, golden):
    with runner:
        return [runner.infer({k: v.astype(np.float32) for k, v in case.inputs.items()})
                for case in golden.cases]


def _verdict(outputs, golden, precision, gain=0.0):
    """The graph's verdict (every case passes), judged as validate_runner judges it."""
    rows = [compare((out[name] * (1 + gain)).astype(np.float32), case.outputs[name], precision,
                    judge_gain=all(has_spread(v) for v in case.inputs.values()))
            for out, case in zip(outputs, golden.cases) for name in case.outputs]
    return all(r.passed for r in rows), rows


@pytest.mark.parametrize("block", [pytest.param(b, marks=() if b in FAST else pytest.mark.slow)
                                   for b in list_blocks()])
def test_gain_fails_and_honest_graphs_pass(tmp_path, block):
    import warnings

    from attn_export.export.pipeline import ExportRequest, export_block
    from attn_export.export.precision import precision_onnx_from_export
    from attn_export.runtime.fp16_rounding import Fp16RoundingRunner
    from attn_export.runtime.golden import load_golden
    from attn_export.runtime.onnxruntime_runner import OnnxRuntimeRunner

    result = export_block(ExportRequest(block=block, input_shape=(1, channels_for(block), 16, 16),
                                        output_dir=tmp_path))
    golden = load_golden(result.golden_path)
    fp32 = _outputs(OnnxRuntimeRunner(result.onnx_path), golden)
    assert _verdict(fp32, golden, "fp32")[0]
    assert not _verdict(fp32, golden, "fp32", gain=1e-4)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the seeded-calibration warning
        fp16 = precision_onnx_from_export(result.onnx_path, result.golden_path, "fp16")
        int8 = precision_onnx_from_export(result.onnx_path, result.golden_path, "int8")
    assert fp16.passed, [r.comparison for r in fp16.rows if not r.comparison.passed]
    fp16_out = _outputs(Fp16RoundingRunner(fp16.path), golden)
    assert not _verdict(fp16_out, golden, "fp16", gain=0.01)[0]
    int8_out = _outputs(OnnxRuntimeRunner(int8.path, ["CPUExecutionProvider"]), golden)
    if block in INT8_FAILS_TODAY:
        passed, rows = _verdict(int8_out, golden, "int8")
        assert not passed, f"{block} INT8 passes now: drop it from INT8_FAILS_TODAY"
    else:
        assert int8.passed, [r.comparison for r in int8.rows if not r.comparison.passed]
    assert not _verdict(int8_out, golden, "int8", gain=0.05)[0]
