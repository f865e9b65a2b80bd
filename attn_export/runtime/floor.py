"""The verdict a user can act on: a graph's error against what its precision itself costs.

A fixed tolerance per precision cannot say whether a reduced-precision graph is broken or whether
the network simply has little headroom: FP16 rounding through fifty layers of one network costs
rel l2 4e-3 where one block costs 2e-4. The *precision floor* is that cost, measured on the same
network and the same inputs by an independent computation (the module in PyTorch float16, or the
float32 graph with INT8 fake-quantization at the calibrated scales), recorded in the golden file
(``meta["floor"]``) so that ``validate`` and ``serve`` judge the same way, without torch.

Golden meta layout (JSON)::

    meta["floor"][PRECISION] = {"kind": "torch-fp16" | "torch-bf16" | "fake-quant-int8",
                                "cases": {CASE: {OUTPUT: {"max_abs", "rel_l2", "cosine"}}},
                                "contrast": {...same layout...}, "contrast_kind": "..."}  # optional
    meta["input_kinds"] = {CASE: "seeded" | "natural" | "user-heldout" | "user-out-of-range"}
    meta["inputs_used"] = ["seeded maps: normal, relu_large, constant, zeros", ...]

Every validation row (``Row.to_dict()``, so report.json's ``metrics`` lists) then carries::

    "floor": {"kind": ..., "max_abs": ..., "rel_l2": ..., "cosine": ...} | None,
    "factor": our rel_l2 / the floor's rel_l2 | None,
    "verdict": "as good as the precision allows" | "worse than the precision explains"
               | "broken" | "degenerate output",
    "input_kind": "seeded" | "natural" | "user-heldout" | "user-out-of-range"

report.json gains ``"inputs_used": [{"kind", "description", "cases"}, ...]`` (:func:`inputs_used`)
and, after ``validate --locate``, ``"locate": {"first_bad_node", "op", "module_path",
"input_ranges": {tensor: [min, max]}, "path": [{"node", "op", "rel_l2", "max_abs"}, ...],
"block", "pairing", "case", "local_bound", "local_rel_l2"}`` (:mod:`attn_export.runtime.locate`).

How a row is judged (:func:`judge`):

- **broken**: NaN/Inf in the output, or an error :data:`BROKEN_FACTOR` times the floor or more
  that is also a quarter of the signal (:data:`BROKEN_REL_L2`); a wrong shape is refused before
  any row exists.
- **degenerate output**: the reference output's largest magnitude is under
  :data:`DEGENERATE_MAX_ABS`; any graph that outputs ~0 "matches" it, so no verdict means anything
  (torchvision's efficientnet_b0 with seeded weights outputs max |y| = 8e-13: FP16 underflows it to
  exactly 0 and the fixed tolerance calls that a pass). The row keeps the fixed table's result.
- **as good as the precision allows**: rel l2 within :data:`FLOOR_FACTOR` times the floor. The
  row passes when the sanity bounds of the fixed table that do not scale with the network hold
  too: cosine >= ``min_cosine`` (else the verdict stays, the row fails, and the note says that
  the precision itself is too lossy for this network at this calibration) and, where judged,
  |gain - the floor's gain| <= ``max_gain`` (a uniform scale error the precision does not
  explain is never "rounding", however small the floor: the row is then "worse than the
  precision explains").
- **worse than the precision explains**: an error above :data:`FLOOR_FACTOR` times the floor (or
  a gain error); the row fails and the CLI points to ``validate --locate``.

Without a recorded floor (fp32, or an older golden file) the fixed table decides, and the verdict
word follows it. Rows on ``user-out-of-range`` inputs (seeded maps far outside the user's data)
are judged and shown, but never fail the graph: they are reported apart.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

AS_GOOD = "as good as the precision allows"
WORSE = "worse than the precision explains"
BROKEN = "broken"
DEGENERATE = "degenerate output"
VERDICTS = (AS_GOOD, WORSE, BROKEN, DEGENERATE)

FLOOR_KINDS = {"fp16": "torch-fp16", "bf16": "torch-bf16", "int8": "fake-quant-int8"}
INPUT_KINDS = ("seeded", "natural", "user-heldout", "user-out-of-range")

FLOOR_FACTOR = {"fp16": 4.0, "int8": 3.0}
"""How far above the floor a healthy graph may land (``tools/measure_floor.py``, seed 0,
onnxruntime 1.31, CPU). fp16: our float16 graph keeps reductions, norms and out-of-range tensors
in float32 where PyTorch's float16 module does not, so it sits at or below its floor: 0.60-1.04x
on cbam, se, scse, eca, gc, triplet, mhsa, lka, simam, bam, sk at 1x64x32x32, 0.34-0.42x on
unet_scse at 1x3x64x64. The highest ratio reported on a real network (smp U-Net + scSE at
``--dynamic batch``: rel l2 9.3e-3 against a PyTorch float16 floor of 3.9e-3, 2.4x) must read
"as good as": 4x leaves it a 1.7x margin, while one weight tensor 6% off in a decoder conv of
unet_scse lands far above (tests/export/test_verdicts.py).
int8: the floor is the same Q/DQ placement simulated in float on the float32 graph; ONNX
Runtime's CPU Q/DQ graph (outputs not requantized) computes the same arithmetic: 1.00x on the
eight blocks measured. 3x absorbs integer kernels that accumulate or requantize differently
(TensorRT, other execution providers). INT8 noise is large (rel l2 ~1e-1), so a subtle fault
hides in it: one weight tensor 8% off in lka moves the factor to 1.1x only; the gain check
against the floor's own gain (+4.2e-2 beyond it) is what fails it, and ``--locate`` finds it."""

MIN_FLOOR = {"fp16": 2.0 ** -12, "bf16": 2.0 ** -9, "int8": 1.0 / 254}
"""The least floor a factor is taken against: half a unit in the last place of the format
(float16 2**-11 / 2, bfloat16 2**-8 / 2, INT8 half a step of 127). An output the precision holds
exactly has a floor of 0, and any honest reordering would then be "infinitely" worse."""

BROKEN_FACTOR = 100.0
BROKEN_REL_L2 = 0.25
"""Broken: an error 100 times what the precision costs *and* a quarter of the signal or more. That
is beyond any rounding: the graph computes something else (a dropped op, a wrong weight tensor, a
scale off by a power of two). A subtle fault (one weight tensor 8% off: rel l2 8e-2, 118x an FP16
floor) is "worse than the precision explains" instead: the graph is right but for one place,
which ``--locate`` finds."""

DEGENERATE_MAX_ABS = 2.0 ** -14
"""float16's smallest normal number: a reference output under it is below what FP16 represents
with full precision, and for a network's output it is numerical dust, not a signal."""


@dataclass(frozen=True)
class FloorPoint:
    """The floor computation's distance from the float32 golden output, on one case and output."""

    kind: str
    max_abs: float
    rel_l2: float
    cosine: float
    gain: float = 0.0  # kept in the golden file, not in report rows: the gain the precision costs

    def to_dict(self) -> dict:
        """JSON-safe: a floor that overflowed (inf) is written as None (null)."""
        def safe(x: float) -> float | None:
            return x if np.isfinite(x) else None

        return {"kind": self.kind, "max_abs": safe(self.max_abs), "rel_l2": safe(self.rel_l2),
                "cosine": self.cosine if np.isfinite(self.rel_l2) else None}


@dataclass(frozen=True)
class Verdict:
    """One row's verdict: the word, what it was judged against, and on which kind of input."""

    verdict: str
    input_kind: str = "seeded"
    floor: FloorPoint | None = None
    factor: float | None = None
    note: str = ""
    precision: str = "fp32"
    contrast: FloorPoint | None = None  # INT8 with the gates quantized; printed, not in to_dict

    def to_dict(self) -> dict:
        return {"floor": self.floor.to_dict() if self.floor else None, "factor": self.factor,
                "verdict": self.verdict, "input_kind": self.input_kind}

    @property
    def counts(self) -> bool:
        """Whether this row can decide the graph's verdict (not apart, not degenerate)."""
        return self.input_kind != "user-out-of-range" and self.verdict != DEGENERATE


def floor_point(actual: np.ndarray, expected: np.ndarray, kind: str, atol: float) -> dict:
    """A floor measurement as stored in the golden meta: the same metrics as the comparison
    (rel l2 floored by ``atol * sqrt(n)``, so the factor compares like with like)."""
    from attn_export.runtime.compare import _cosine, scale_metrics

    a = np.asarray(actual, dtype=np.float64).ravel()
    e = np.asarray(expected, dtype=np.float64).ravel()
    if a.shape != e.shape or not np.isfinite(a).all():  # the precision itself overflows here
        return {"max_abs": None, "rel_l2": None, "cosine": None}
    rel_l2, gain = scale_metrics(a, e, atol)
    return {"max_abs": float(np.abs(a - e).max(initial=0.0)), "rel_l2": float(rel_l2),
            "cosine": float(_cosine(a, e)), "gain": float(gain)}


def recorded_floor(meta: dict, precision: str, case: str, output: str,
                   contrast: bool = False) -> FloorPoint | None:
    """The floor recorded in a golden file's meta for one row, or None."""
    entry = (meta.get("floor") or {}).get(precision)
    if not isinstance(entry, dict):
        return None
    cases = entry.get("contrast" if contrast else "cases") or {}
    point = (cases.get(case) or {}).get(output)
    if not isinstance(point, dict):
        return None
    kind = entry.get("contrast_kind" if contrast else "kind", FLOOR_KINDS.get(precision, "?"))
    if point.get("rel_l2") is None:  # the floor overflowed: it bounds nothing from below
        return FloorPoint(kind, float("inf"), float("inf"), 0.0)
    return FloorPoint(kind, float(point["max_abs"]), float(point["rel_l2"]),
                      float(point["cosine"]), float(point.get("gain") or 0.0))


def judge(comparison, expected: np.ndarray, precision: str, floor: FloorPoint | None,
          input_kind: str = "seeded") -> tuple[Verdict, bool]:
    """The verdict on one compared output and whether the row passes (see the module docstring)."""
    c, t = comparison, comparison.tolerance
    if c.nonfinite:
        return Verdict(BROKEN, input_kind, floor, None, f"{c.nonfinite} NaN/Inf values"), False
    ref_max = float(np.abs(expected).max(initial=0.0))
    if ref_max < DEGENERATE_MAX_ABS:
        note = (f"the reference output's max |y| is {ref_max:.1e}: any graph that outputs ~0 "
                "matches it, so this comparison says nothing")
        factor = _factor(c.rel_l2, floor)
        return Verdict(DEGENERATE, input_kind, floor, factor, note), c.passed
    if floor is None:
        word = AS_GOOD if c.passed else WORSE
        return Verdict(word, input_kind, None, None), c.passed
    factor = _factor(c.rel_l2, floor)
    effective = c.rel_l2 / max(floor.rel_l2, MIN_FLOOR.get(precision, 0.0), 1e-30)
    # the gain the precision itself costs (INT8 on data calibrated elsewhere: a few %) is no
    # scale error; a gain beyond it by more than the bound is, however small the floor
    gain_ok = not c.gain_judged or abs(c.gain - floor.gain) <= t.max_gain
    if effective >= BROKEN_FACTOR and c.rel_l2 >= BROKEN_REL_L2:
        return Verdict(BROKEN, input_kind, floor, factor,
                       f"error {effective:.0f}x what the precision costs"), False
    within = effective <= FLOOR_FACTOR.get(precision, 1.0)
    if within and not gain_ok:
        return Verdict(WORSE, input_kind, floor, factor,
                       f"gain error {c.gain:+.1e} beyond the sanity bound {t.max_gain:g}: a "
                       "uniform scale error is not rounding"), False
    if within and c.cosine < t.min_cosine:
        return Verdict(AS_GOOD, input_kind, floor, factor,
                       f"but the precision itself costs more than the sanity bound allows here "
                       f"(cosine {c.cosine:.4f} < {t.min_cosine:g}; the floor's "
                       f"{floor.cosine:.4f}): this network does not hold {precision} at this "
                       "calibration/weights"), False
    if within:
        return Verdict(AS_GOOD, input_kind, floor, factor), True
    return Verdict(WORSE, input_kind, floor, factor,
                   f"{effective:.1f}x the floor, above {FLOOR_FACTOR.get(precision, 1.0):g}x"), \
        False


def _factor(rel_l2: float, floor: FloorPoint | None) -> float | None:
    if floor is None or not np.isfinite(rel_l2) or not np.isfinite(floor.rel_l2):
        return None
    return round(rel_l2 / floor.rel_l2, 4) if floor.rel_l2 > 0 else None


def judged_with_floor(rows: list, golden, precision: str) -> list:
    """Validation rows with their verdict, and ``passed`` re-decided by it (see the docstring)."""
    kinds = golden.meta.get("input_kinds") or {}
    expected = {(c.name, k): v for c in golden.cases for k, v in c.outputs.items()}
    judged = []
    for row in rows:
        output = row.comparison.output
        floor = recorded_floor(golden.meta, precision, row.case, output)
        kind = kinds.get(row.case, "seeded")
        verdict, passed = judge(row.comparison, expected[(row.case, output)], precision, floor,
                                kind)
        verdict = replace(verdict, precision=precision, contrast=recorded_floor(
            golden.meta, precision, row.case, output, contrast=True))
        if kind == "user-out-of-range":
            passed = True  # reported apart: a map far outside the user's data decides nothing
        judged.append(replace(row, comparison=replace(row.comparison, passed=passed),
                              verdict=verdict))
    return judged


def overall_verdict(rows: list) -> str:
    """The graph's verdict: the worst over the rows that count; degenerate when none counts."""
    counted = [r.verdict for r in rows if r.verdict is not None and r.verdict.counts]
    if not counted:
        return DEGENERATE if any(r.verdict for r in rows) else AS_GOOD
    for word in (BROKEN, WORSE, AS_GOOD):
        if any(v.verdict == word for v in counted):
            return word
    return AS_GOOD


def verdict_lines(rows: list) -> list[str]:
    """What the CLI prints under the table: the verdict in words, its evidence, what to do."""
    judged = [r for r in rows if r.verdict is not None]
    if not judged:
        return []
    precision = judged[0].verdict.precision
    word = overall_verdict(judged)
    counted = [r for r in judged if r.verdict.counts] or judged
    worst = max(counted, key=lambda r: (not r.comparison.passed, r.comparison.rel_l2
                                        if np.isfinite(r.comparison.rel_l2) else np.inf))
    v = worst.verdict
    evidence = f"rel l2 up to {worst.comparison.rel_l2:.2e} ({worst.case})"
    if v.floor is not None:
        factor = "n/a" if v.factor is None else f"{v.factor:.2g}x"
        evidence += (f", {factor} the {v.floor.kind} floor {v.floor.rel_l2:.2e}; healthy within "
                     f"{FLOOR_FACTOR.get(precision, 1.0):g}x")
    else:
        evidence += ", no floor recorded: judged by the fixed tolerance table"
    lines = [f"verdict ({precision}): {word} - {evidence}",
             "  inputs: " + "; ".join(f"{u['description']} x{len(u['cases'])}"
                                      for u in inputs_used(judged))]
    if v.note:
        lines.append(f"  {'note' if word == AS_GOOD else 'why'}: {v.note}")
    if v.contrast is not None and np.isfinite(v.contrast.rel_l2):
        lines.append(f"  for contrast, {v.contrast.kind}: rel l2 {v.contrast.rel_l2:.2e}, cosine "
                     f"{v.contrast.cosine:.4f} on the same case")
    for r in judged:
        if r.verdict.verdict == DEGENERATE:
            lines.append(f"  {r.case}: {DEGENERATE}: {r.verdict.note}")
    apart = [r for r in judged if r.verdict.input_kind == "user-out-of-range"]
    if apart:
        lines.append("  reported apart (seeded maps far outside your data's range): "
                     + ", ".join(f"{r.case} {r.verdict.verdict}" for r in apart))
    if word in (WORSE, BROKEN):
        lines.append("  find where the error starts: attn-export validate MODEL --golden GOLDEN "
                     "--locate")
    return lines


INPUT_DESCRIPTIONS = {
    "seeded": "seeded maps (normal, post-ReLU up to ~30, constant, zeros)",
    "natural": "natural images (scikit-learn's sample photographs and digits)",
    "user-heldout": "your data, samples the INT8 graph was not calibrated on",
    "user-out-of-range": "seeded maps far outside your data's range (reported apart)",
}


def inputs_used(rows: list) -> list[dict]:
    """report.json's ``inputs_used``: each kind of input the verdict saw, and its cases."""
    kinds: dict[str, list[str]] = {}
    for row in rows:
        kind = row.verdict.input_kind if row.verdict is not None else "seeded"
        if row.case not in kinds.setdefault(kind, []):
            kinds[kind].append(row.case)
    return [{"kind": k, "description": INPUT_DESCRIPTIONS.get(k, k), "cases": cases}
            for k, cases in kinds.items()]
