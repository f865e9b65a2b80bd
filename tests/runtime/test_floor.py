"""The verdict rules against a recorded precision floor (torch-free: what validate and serve use)."""

from __future__ import annotations

import numpy as np
import pytest

from attn_export.runtime.compare import compare
from attn_export.runtime.floor import (
    AS_GOOD,
    BROKEN,
    DEGENERATE,
    WORSE,
    FloorPoint,
    floor_point,
    judge,
    judged_with_floor,
    overall_verdict,
    recorded_floor,
)
from attn_export.runtime.golden import Golden, GoldenCase, load_golden, save_golden
from attn_export.runtime.validate import Row

RNG = np.random.default_rng(0)
REF = RNG.standard_normal((1, 8, 16, 16)).astype(np.float32) * 3


def _noisy(rel: float, seed: int = 1) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(REF.shape).astype(np.float32)
    return REF + noise * rel * float(np.linalg.norm(REF)) / float(np.linalg.norm(noise))


def _floor(rel: float) -> FloorPoint:
    return FloorPoint("torch-fp16", **floor_point(_noisy(rel, 7), REF, "torch-fp16", 6e-2))


def test_within_the_factor_of_the_floor_passes_even_beyond_the_fixed_bound():
    """The U-Net case: rel l2 9.3e-3 against a fixed 5e-3, its floor 3.9e-3: 2.4x the floor."""
    c = compare(_noisy(9.3e-3), REF, "fp16")
    assert not c.passed  # the fixed table alone says FAIL
    verdict, passed = judge(c, REF, "fp16", _floor(3.9e-3))
    assert verdict.verdict == AS_GOOD and passed
    assert verdict.factor == pytest.approx(9.3 / 3.9, rel=0.02)


def test_far_above_the_floor_is_worse_than_the_precision_explains():
    verdict, passed = judge(compare(_noisy(2e-2), REF, "fp16"), REF, "fp16", _floor(1e-3))
    assert verdict.verdict == WORSE and not passed and "above 4x" in verdict.note


def test_beyond_anything_the_floor_reaches_is_broken():
    verdict, passed = judge(compare(_noisy(0.3), REF, "fp16"), REF, "fp16", _floor(1e-3))
    assert verdict.verdict == BROKEN and not passed


def test_nonfinite_output_is_broken():
    bad = REF.copy()
    bad[0, 0, 0, 0] = np.nan
    verdict, passed = judge(compare(bad, REF, "fp16"), REF, "fp16", _floor(1e-3))
    assert verdict.verdict == BROKEN and not passed


def test_a_gain_error_keeps_failing_however_close_to_the_floor():
    scaled = REF * np.float32(1.004)  # rel l2 4e-3, all of it gain: within 4x of a 1e-3 floor
    verdict, passed = judge(compare(scaled, REF, "fp16"), REF, "fp16", _floor(1e-3))
    assert verdict.verdict == WORSE and not passed and "gain" in verdict.note


def test_degenerate_reference_says_it_means_nothing():
    """efficientnet_b0 seeded: max |y| 8e-13, which FP16 underflows to 0."""
    tiny = REF * np.float32(8e-13 / np.abs(REF).max())
    c = compare(np.zeros_like(tiny), tiny, "fp16")
    verdict, passed = judge(c, tiny, "fp16", _floor(1e-3))
    assert passed == c.passed  # the fixed table's result is kept, the verdict disowns it
    assert verdict.verdict == DEGENERATE and "says nothing" in verdict.note


def test_without_a_floor_the_fixed_table_decides():
    verdict, passed = judge(compare(_noisy(1e-3), REF, "fp16"), REF, "fp16", None)
    assert verdict.verdict == AS_GOOD and passed and verdict.floor is None


def _golden(tmp_path, floor_rel: float | None, kinds: dict | None = None) -> Golden:
    gold = Golden([GoldenCase("normal@1x8x16x16", {"input": REF}, {"output": REF}),
                   GoldenCase("relu_large@1x8x16x16", {"input": REF}, {"output": REF})],
                  {"cases": ["normal@1x8x16x16", "relu_large@1x8x16x16"]})
    if floor_rel is not None:
        point = floor_point(_noisy(floor_rel, 7), REF, "torch-fp16", 6e-2)
        gold.meta["floor"] = {"fp16": {"kind": "torch-fp16", "cases": {
            c.name: {"output": point} for c in gold.cases}}}
    if kinds:
        gold.meta["input_kinds"] = kinds
    save_golden(tmp_path / "g.golden.npz", gold)
    return load_golden(tmp_path / "g.golden.npz")  # the floor survives the file, torch-free


def test_floor_round_trips_through_the_golden_file(tmp_path):
    gold = _golden(tmp_path, 3.9e-3)
    point = recorded_floor(gold.meta, "fp16", "normal@1x8x16x16", "output")
    assert point.kind == "torch-fp16" and point.rel_l2 == pytest.approx(3.9e-3, rel=0.01)
    assert recorded_floor(gold.meta, "int8", "normal@1x8x16x16", "output") is None


def test_rows_carry_the_report_schema(tmp_path):
    gold = _golden(tmp_path, 3.9e-3)
    rows = [Row("ort", c.name, compare(_noisy(9.3e-3), REF, "fp16")) for c in gold.cases]
    judged = judged_with_floor(rows, gold, "fp16")
    entry = judged[0].to_dict()
    assert set(entry["floor"]) == {"kind", "max_abs", "rel_l2", "cosine"}
    assert entry["verdict"] == AS_GOOD and entry["input_kind"] == "seeded" and entry["passed"]
    assert entry["factor"] == pytest.approx(9.3 / 3.9, rel=0.02)
    assert overall_verdict(judged) == AS_GOOD


def test_out_of_range_rows_are_reported_apart_and_never_fail(tmp_path):
    gold = _golden(tmp_path, 1e-3, {"normal@1x8x16x16": "user-heldout",
                                    "relu_large@1x8x16x16": "user-out-of-range"})
    rows = [Row("ort", "normal@1x8x16x16", compare(_noisy(1e-3), REF, "fp16")),
            Row("ort", "relu_large@1x8x16x16", compare(_noisy(5e-2), REF, "fp16"))]
    judged = judged_with_floor(rows, gold, "fp16")
    apart = judged[1]
    assert apart.verdict.verdict == WORSE and apart.verdict.input_kind == "user-out-of-range"
    assert apart.comparison.passed  # reported apart: it decides nothing
    assert overall_verdict(judged) == AS_GOOD
    from attn_export.runtime.validate import format_table

    assert "apart (worse than the precision explains)" in format_table(judged)


def test_overflowing_floor_is_stored_as_null_and_bounds_nothing():
    point = floor_point(np.full(REF.shape, np.inf, np.float32), REF, "torch-fp16", 6e-2)
    assert point == {"max_abs": None, "rel_l2": None, "cosine": None}
    meta = {"floor": {"fp16": {"kind": "torch-fp16", "cases": {"c": {"output": point}}}}}
    floor = recorded_floor(meta, "fp16", "c", "output")
    verdict, passed = judge(compare(_noisy(1e-3), REF, "fp16"), REF, "fp16", floor)
    assert verdict.verdict == AS_GOOD and passed and verdict.to_dict()["floor"]["rel_l2"] is None
