"""Run each precision's graph on the golden inputs again and keep the element-wise errors.

The report's summary rows (max abs, rel L2, cosine) say how large an error is; a person also
needs its shape: is it a few outliers or a shift of everything (the distribution), and is it in
a few channels or a few positions (the maps). Those need the elements, so they are measured
here from the golden file rather than stored in ``report.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MAX_SAMPLES = 100_000
"""Elements kept per (precision, case) for the distribution: enough for a smooth histogram."""


@dataclass
class CaseErrors:
    """The errors of one graph on one golden case (first output)."""

    precision: str
    case: str
    abs_err: np.ndarray  # flattened, at most MAX_SAMPLES elements, float64
    channel: np.ndarray | None = None  # mean |err| per channel (rank-4 outputs)
    position: np.ndarray | None = None  # mean |err| per (H, W) position (rank-4 outputs)
    ref_scale: float = 0.0  # max |reference|


@dataclass
class Measured:
    """Everything measured for one export; ``errors`` says why a graph could not run."""

    cases: list[CaseErrors] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    def worst(self, precision: str) -> CaseErrors | None:
        mine = [c for c in self.cases if c.precision == precision and c.abs_err.size]
        return max(mine, key=lambda c: float(c.abs_err.max()), default=None)


def _thin(values: np.ndarray, seed: int = 0) -> np.ndarray:
    flat = np.abs(values.astype(np.float64)).ravel()
    if flat.size <= MAX_SAMPLES:
        return flat
    pick = np.random.default_rng(seed).choice(flat.size, MAX_SAMPLES, replace=False)
    return flat[pick]


def case_errors(precision: str, case: str, actual: np.ndarray, expected: np.ndarray
                ) -> CaseErrors:
    """Element-wise |actual - expected| and, for NCHW outputs, its channel and position maps."""
    diff = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    diff = np.where(np.isfinite(diff), diff, np.inf)
    out = CaseErrors(precision, case, _thin(diff),
                     ref_scale=float(np.max(np.abs(expected))) if expected.size else 0.0)
    if diff.ndim == 4 and np.isfinite(diff).all():
        out.channel = diff.mean(axis=(0, 2, 3))
        out.position = diff.mean(axis=(0, 1))
    return out


def measure(graphs: dict[str, Path], golden_path: Path) -> Measured:
    """Run every graph on every golden case; a graph that cannot run is reported, not raised."""
    from attn_export.errors import AttnExportError
    from attn_export.runtime.golden import load_golden
    from attn_export.runtime.validation_runner import validation_runner

    golden = load_golden(golden_path)
    measured = Measured()
    for precision, path in graphs.items():
        try:
            runner, _ = validation_runner(path)
            with runner:
                for case in golden.cases:
                    outputs = runner.infer(case.inputs)
                    name = next(iter(case.outputs))
                    measured.cases.append(case_errors(precision, case.name, outputs[name],
                                                      case.outputs[name]))
        except AttnExportError as exc:
            measured.errors[precision] = str(exc)
    return measured
