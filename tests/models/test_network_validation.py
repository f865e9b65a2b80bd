"""The network rule: the block tolerance with atol raised to a fraction of each case's range."""

import numpy as np

from attn_export.runtime.compare import compare
from attn_export.runtime.network_rule import network_comparison


def test_a_reordering_error_scaled_to_the_range_passes_and_a_real_error_does_not():
    expected = np.array([[120.0, 0.001, -3.0, 0.0]], dtype=np.float32)
    reordered = expected + np.array([[2.4e-3, -2.5e-3, 1e-4, 2e-3]], dtype=np.float32)
    block = compare(reordered, expected, "fp32")
    assert not block.passed  # a logit near zero moved by 2.5e-3 > 1e-5
    net = network_comparison(block, expected, "fp32")
    assert net.passed and net.tolerance.atol == np.float32(120.0) * 1e-4
    wrong = expected + np.array([[0.0, 0.5, 0.0, 0.0]], dtype=np.float32)
    assert not network_comparison(compare(wrong, expected, "fp32"), expected, "fp32").passed


def test_a_non_finite_output_still_fails():
    expected = np.array([[120.0, 1.0]], dtype=np.float32)
    broken = np.array([[120.0, np.nan]], dtype=np.float32)
    assert not network_comparison(compare(broken, expected, "fp32"), expected, "fp32").passed


def test_a_uniform_gain_error_fails_the_network_rule_too():
    """Raising atol to the range must not let a scale error through: 1% fails fp16, 5% int8."""
    rng = np.random.default_rng(0)
    expected = (rng.standard_normal((4, 1000)) * 10).astype(np.float32)
    for precision, gain in (("fp32", 1e-3), ("fp16", 1e-2), ("int8", 5e-2)):
        scaled = (expected * (1 + gain)).astype(np.float32)
        verdict = network_comparison(compare(scaled, expected, precision), expected, precision)
        assert not verdict.passed, (precision, verdict)
