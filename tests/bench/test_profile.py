"""ONNX Runtime's profile, summed per node, on a real session."""

import numpy as np

from attn_export.bench.graphs import floor_onnx
from attn_export.bench.profile import format_profile, profile_nodes, summarize


def test_profile_of_the_floor_is_its_single_mul(tmp_path):
    path = floor_onnx((1, 8, 16, 16), tmp_path / "floor.onnx")
    rows = profile_nodes(path, np.ones((1, 8, 16, 16), np.float32), threads=1, runs=4)
    assert [r.op_type for r in rows] == ["Mul"] and rows[0].median_us > 0
    assert "Mul" in format_profile(rows, rows[0].median_us).splitlines()[1]


def test_summarize_skips_warmup_and_sorts_slowest_first():
    def ev(name, op, dur):
        return {"cat": "Node", "name": f"{name}_kernel_time", "dur": dur, "args": {"op_name": op}}

    events = [ev("a", "Mul", 100), ev("b", "ReduceMax", 7), ev("a", "Mul", 2), ev("b", "ReduceMax", 9),
              {"cat": "Session", "name": "model_run", "dur": 50}]
    rows = summarize(events, runs=1, warmup=1)
    assert [(r.name, r.op_type, r.median_us) for r in rows] == [("b", "ReduceMax", 9.0),
                                                             ("a", "Mul", 2.0)]
