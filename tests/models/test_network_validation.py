"""The network rule: the block tolerance with atol raised to a fraction of each case's range."""

import numpy as np

from attn_export.models.validation import network_comparison
from attn_export.runtime.compare import compare


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
