import numpy as np
import pytest

from attn_export.errors import ValidationError
from attn_export.runtime.compare import TOLERANCES, compare


def test_identical_arrays_pass_with_zero_error():
    a = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32)
    c = compare(a, a.copy())
    assert c.passed and c.max_abs == 0 and c.cosine == pytest.approx(1.0)


def test_allclose_semantics_atol_plus_rtol_times_expected():
    # two probed elements among 10,000 exact ones: the tensor-level rel_l2 bound (2e-5) would
    # otherwise judge a single element at 0.9 rtol too (it is per tensor, not per element)
    tol = TOLERANCES["fp32"]
    expected = np.full(10_000, 100.0, dtype=np.float64)
    expected[0] = 0.0
    inside, outside = expected.copy(), expected.copy()
    inside[:2] += [tol.atol * 0.9, tol.atol + tol.rtol * 100 * 0.9]
    outside[1] += (tol.atol + tol.rtol * 100) * 1.5
    assert compare(inside.astype(np.float32), expected.astype(np.float32)).passed
    c = compare(outside.astype(np.float32), expected.astype(np.float32))
    assert not c.passed and c.worst_index == (1,)


def test_worst_element_is_located():
    expected = np.zeros((2, 2, 3, 3), dtype=np.float32)
    actual = expected.copy()
    actual[1, 0, 2, 1] = 0.5
    c = compare(actual, expected)
    assert c.worst_index == (1, 0, 2, 1) and c.worst_actual == 0.5 and c.max_abs == 0.5


def test_nan_fails_even_when_elsewhere_exact():
    expected = np.ones((4,), dtype=np.float32)
    actual = expected.copy()
    actual[2] = np.nan
    c = compare(actual, expected)
    assert not c.passed and c.nonfinite == 1


def test_fp16_tolerance_accepts_half_rounding_but_fp32_does_not():
    x = np.random.default_rng(1).standard_normal(1000).astype(np.float32) * 5
    half = x.astype(np.float16).astype(np.float32)
    assert compare(half, x, "fp16").passed
    assert not compare(half, x, "fp32").passed


def test_rel_error_is_floored_at_atol_for_zero_references():
    c = compare(np.array([1e-6], np.float32), np.array([0.0], np.float32))
    assert c.max_rel == pytest.approx(1e-6 / TOLERANCES["fp32"].atol)


def test_shape_mismatch_and_unknown_precision_raise():
    with pytest.raises(ValidationError, match="shape"):
        compare(np.zeros((2,)), np.zeros((3,)))
    with pytest.raises(ValidationError, match="fp16"):
        compare(np.zeros((2,)), np.zeros((2,)), "bf8")
