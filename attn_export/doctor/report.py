"""Judging the doctor's rows per role, and printing them as a table or JSON.

A role names what it cannot work without; a tuple is "any of these" (TensorRT needs device memory
from cuda-python or from a CUDA torch). A row that is ``ok`` or ``warn`` satisfies a need;
``missing`` or ``bad`` (e.g. a TensorRT that is not the one JetPack ships) does not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from attn_export.doctor.checks import OK, WARN, Check

ROLES: dict[str, tuple[tuple[str, ...], ...]] = {
    "export": (("python",), ("numpy",), ("onnx",), ("onnxruntime",), ("torch",), ("onnxslim",)),
    "build": (("python",), ("numpy",), ("onnx",), ("tensorrt",), ("cuda_driver",), ("gpu",),
              ("cuda_python", "torch_cuda"), ("tensorrt_extra",)),
    "serve": (("python",), ("numpy",), ("onnxruntime",), ("serve_stack",)),
}
"""role -> what it needs: export (torch -> ONNX), build (TensorRT engines), serve (HTTP/gRPC)."""


@dataclass(frozen=True)
class Verdict:
    """Whether this machine can do ``role``, and the rows that stop it."""

    role: str
    blocking: tuple[Check, ...]

    @property
    def ready(self) -> bool:
        return not self.blocking


def judge(role: str, rows: list[Check]) -> Verdict:
    by_key = {r.key: r for r in rows}
    blocking = []
    for alternatives in ROLES[role]:
        present = [by_key.get(k) or Check(k, k, "missing", "not checked") for k in alternatives]
        if not any(r.status in (OK, WARN) for r in present):
            blocking.append(_either(present))
    return Verdict(role, tuple(blocking))


def _either(rows: list[Check]) -> Check:
    """Unmet alternatives as one row: ``cuda-python or torch CUDA`` with both fixes."""
    if len(rows) == 1:
        return rows[0]
    return Check("|".join(r.key for r in rows), " or ".join(r.label for r in rows), rows[0].status,
                 "; ".join(r.found for r in rows), " | ".join(r.fix for r in rows if r.fix))


def format_table(rows: list[Check], verdicts: list[Verdict]) -> str:
    """The rows as aligned columns, then each role's verdict with the fixes it needs."""
    table = [("component", "status", "found")] + [(r.label, r.status, r.found) for r in rows]
    widths = [max(len(t[i]) for t in table) for i in range(2)]
    lines = [f"{a.ljust(widths[0])}  {b.ljust(widths[1])}  {c}".rstrip() for a, b, c in table]
    for row in rows:
        if row.status == WARN:
            lines.append(f"warning: {row.label}: {row.fix}")
    for verdict in verdicts:
        if verdict.ready:
            lines.append(f"{verdict.role}: ready")
            continue
        names = ", ".join(r.label for r in verdict.blocking)
        lines.append(f"{verdict.role}: NOT ready (needs {names})")
        fixes = dict.fromkeys(r.fix for r in verdict.blocking if r.fix)  # GPU and driver share one
        lines += [f"  fix: {fix}" for fix in fixes]
    return "\n".join(lines)


def to_json(rows: list[Check], verdicts: list[Verdict]) -> str:
    return json.dumps({
        "checks": [r.to_dict() for r in rows],
        "roles": {v.role: {"ready": v.ready, "blocking": [r.key for r in v.blocking]}
                  for v in verdicts},
    }, indent=2)
