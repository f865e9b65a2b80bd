"""Comparing a backend's outputs with PyTorch's, with one tolerance table per precision.

Semantics (numpy.allclose): an element passes when ``|actual - expected| <= atol + rtol * |expected|``;
an output passes when every element does and, where the precision sets one, the cosine similarity
of the flattened tensors is at least ``min_cosine``. Relative error is reported as
``|actual - expected| / max(|expected|, atol)``: below ``atol`` the absolute bound governs, so an
exact zero in the reference (every ReLU map has many) does not make the relative error meaningless.
INT8 is judged by cosine and the allclose bound together, because a quantized graph is close in
direction long before it is close element-wise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from attn_export.errors import ValidationError


@dataclass(frozen=True)
class Tolerance:
    """Allowed distance from the PyTorch FP32 output for one precision."""

    atol: float
    rtol: float
    min_cosine: float = 0.0


TOLERANCES: dict[str, Tolerance] = {
    # FP32 graphs differ from eager PyTorch only by op order and fused kernels.
    "fp32": Tolerance(atol=1e-5, rtol=1e-4, min_cosine=0.99999),
    # FP16 keeps ~3 decimal digits; sigmoid gates and reductions over H*W add a few ulps. atol is
    # two FP16 ulps at the golden maps' magnitude (relu_large reaches 32..64, ulp 2^-5): a small
    # output computed from large intermediates carries their rounding (measured, FP16-rounding ORT:
    # lka 3.5e-2, mhsa 4.5e-2 at 32x32, error <= 5e-3 of the output range, cosine >= 0.999998).
    "fp16": Tolerance(atol=6e-2, rtol=2e-2, min_cosine=0.9995),
    # INT8 with per-tensor activations: judged mainly on direction, loosely element-wise. The
    # golden maps span 0.5 to ~40, so one calibrated scale has a step of ~40/127 = 0.31 (atol);
    # measured (onnxruntime 1.31, seeded calibration, gates float, 16x16 and 32x32 maps): 14 of
    # 19 blocks pass at both sizes (not gc, lka, mhsa, sk, scse); cbam's correct Q/DQ graph has
    # cosine >= 0.9993, with its gates quantized (F2) it drops to 0.946 and fails.
    "int8": Tolerance(atol=0.35, rtol=0.25, min_cosine=0.97),
}


def tolerance_for(precision: str) -> Tolerance:
    try:
        return TOLERANCES[precision]
    except KeyError:
        raise ValidationError(
            f"unknown precision {precision!r}; expected one of {', '.join(TOLERANCES)}"
        ) from None


@dataclass(frozen=True)
class Comparison:
    """How far one output is from its reference, and whether that is within tolerance."""

    output: str
    max_abs: float
    mean_abs: float
    max_rel: float
    mean_rel: float
    cosine: float
    worst_index: tuple[int, ...]
    worst_actual: float
    worst_expected: float
    tolerance: Tolerance
    passed: bool
    nonfinite: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 and nb == 0.0:
        return 1.0  # both all-zero: identical
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(np.dot(a, b) / (na * nb))


def compare(
    actual: np.ndarray, expected: np.ndarray, precision: str = "fp32", output: str = "output"
) -> Comparison:
    """Compare ``actual`` with ``expected`` (the PyTorch FP32 output) under ``precision``."""
    tol = tolerance_for(precision)
    if actual.shape != expected.shape:
        raise ValidationError(
            f"output {output!r}: shape {actual.shape} differs from the reference {expected.shape}"
        )
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    nonfinite = int((~np.isfinite(a)).sum())
    diff = np.abs(a - e)
    rel = diff / np.maximum(np.abs(e), tol.atol)
    excess = diff - (tol.atol + tol.rtol * np.abs(e))
    worst = np.unravel_index(int(np.nanargmax(np.where(np.isnan(excess), np.inf, excess))),
                             a.shape) if a.size else ()
    cosine = _cosine(a.ravel(), e.ravel()) if nonfinite == 0 else float("nan")
    passed = bool(nonfinite == 0 and np.all(excess <= 0) and cosine >= tol.min_cosine)
    return Comparison(
        output=output,
        max_abs=float(diff.max()) if a.size else 0.0,
        mean_abs=float(diff.mean()) if a.size else 0.0,
        max_rel=float(rel.max()) if a.size else 0.0,
        mean_rel=float(rel.mean()) if a.size else 0.0,
        cosine=cosine,
        worst_index=tuple(int(i) for i in worst),
        worst_actual=float(a[worst]) if a.size else 0.0,
        worst_expected=float(e[worst]) if a.size else 0.0,
        tolerance=tol,
        passed=passed,
        nonfinite=nonfinite,
    )
