"""Running a backend over a golden file and judging it: shared by the export pipeline and
``attn-export validate``, so both apply the same checks and tolerances."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from attn_export.errors import ModelFileError
from attn_export.runtime.base import Runner
from attn_export.runtime.compare import Comparison, compare, has_spread
from attn_export.runtime.golden import Golden
from attn_export.runtime.network_rule import JUDGED_AS_NETWORK, network_comparison

if TYPE_CHECKING:
    from attn_export.runtime.floor import Verdict


@dataclass(frozen=True)
class Row:
    """One line of the validation table: a backend on one input case."""

    backend: str
    case: str
    comparison: Comparison
    verdict: Verdict | None = None  # see attn_export.runtime.floor

    def to_dict(self) -> dict:
        return {"backend": self.backend, "case": self.case, **self.comparison.to_dict(),
                **(self.verdict.to_dict() if self.verdict else {})}


def check_golden_fits(runner: Runner, golden: Golden) -> None:
    """Refuse a golden file made for another model: input names, ranks and fixed dims must fit."""
    spec = {s.name: s for s in runner.input_spec()}
    for case in golden.cases:
        if set(case.inputs) != set(spec):
            raise ModelFileError(
                f"golden case {case.name!r} has inputs {sorted(case.inputs)}, the model takes "
                f"{sorted(spec)}: the golden file belongs to another model"
            )
        for name, array in case.inputs.items():
            want = spec[name].shape
            if len(want) != array.ndim or any(d is not None and d != a
                                              for d, a in zip(want, array.shape)):
                raise ModelFileError(
                    f"golden case {case.name!r} input {name!r} has shape {array.shape}, the model "
                    f"takes {spec[name].describe()}: the golden file belongs to another model or "
                    "shape mode"
                )


def validate_runner(runner: Runner, golden: Golden, precision: str = "fp32") -> list[Row]:
    """Run every golden case through ``runner`` and compare each output with PyTorch's.

    A whole network's golden file (``meta["judged_as"] == "network"``) is judged by the network
    rule of :mod:`attn_export.runtime.network_rule`, wherever it is validated (``validate``,
    ``build``, ``serve``), not only by the command that wrote it.
    """
    check_golden_fits(runner, golden)
    rows = []
    for case in golden.cases:
        feed = {k: v.astype(np.dtype(s.dtype)) for k, v in case.inputs.items()
                for s in runner.input_spec() if s.name == k}
        outputs = runner.infer(feed)
        judge_gain = all(has_spread(v) for v in case.inputs.values())
        for name, expected in case.outputs.items():
            if name not in outputs:
                raise ModelFileError(
                    f"the model has no output {name!r} (it has {sorted(outputs)}); the golden file "
                    "belongs to another model"
                )
            actual = outputs[name].astype(np.float32)
            rows.append(Row(runner.name, case.name,
                            compare(actual, expected, precision, name, judge_gain)))
    if golden.meta.get("judged_as") == JUDGED_AS_NETWORK:  # written by `attn-export model`
        rows = judged_as_network(rows, golden, precision)
    from attn_export.runtime.floor import judged_with_floor

    return judged_with_floor(rows, golden, precision)


def judged_as_network(rows: list[Row], golden: Golden, precision: str) -> list[Row]:
    """Validation rows of ``golden`` re-judged by the network rule (see
    :mod:`attn_export.runtime.network_rule`)."""
    expected = {(c.name, k): v for c in golden.cases for k, v in c.outputs.items()}
    return [Row(r.backend, r.case,
                network_comparison(r.comparison, expected[(r.case, r.comparison.output)],
                                   precision)) for r in rows]


def format_table(rows: list[Row]) -> str:
    """The table the CLI prints: one row per backend and case, the tolerance stated once."""
    header = ("backend", "case", "max abs", "max rel", "mean abs", "cosine", "rel l2", "gain",
              "result", "x floor")
    body = [
        (r.backend, r.case, f"{r.comparison.max_abs:.2e}", f"{r.comparison.max_rel:.2e}",
         f"{r.comparison.mean_abs:.2e}", f"{r.comparison.cosine:.6f}",
         f"{r.comparison.rel_l2:.2e}",
         f"{r.comparison.gain:+.1e}" if r.comparison.gain_judged else "-",
         _result(r), _factor(r))  # result and x floor columns
        for r in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip()
             for line in (header, *body)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if rows:
        t = rows[0].comparison.tolerance
        lines.append(f"tolerance: |actual - torch| <= {t.atol:g} + {t.rtol:g} * |torch| elementwise"
                     f", cosine >= {t.min_cosine:g}, rel l2 <= {t.max_rel_l2:g}, "
                     f"|gain| <= {t.max_gain:g}")
    from attn_export.runtime.floor import verdict_lines

    return "\n".join([*lines, *verdict_lines(rows)])


def _result(r: Row) -> str:
    """pass / FAIL, with the verdict word when it adds to it (degenerate, apart, broken)."""
    c, v = r.comparison, r.verdict
    if c.nonfinite:
        return "FAIL (non-finite)"
    if v is not None and v.input_kind == "user-out-of-range":
        return f"apart ({v.verdict})"
    if v is not None and v.verdict in ("degenerate output", "broken"):
        return f"{'pass' if c.passed else 'FAIL'} ({v.verdict})"
    return "pass" if c.passed else "FAIL"


def _factor(r: Row) -> str:
    return "-" if r.verdict is None or r.verdict.factor is None else f"{r.verdict.factor:.2g}"

