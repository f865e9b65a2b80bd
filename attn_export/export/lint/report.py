"""The lint verdicts: one :class:`Finding` per node and rule, gathered in a :class:`LintReport`
that prints as a table, a summary line or JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

LEVELS = ("ok", "warning", "error")
GRAPH = "<graph>"


@dataclass(frozen=True)
class Finding:
    """One verdict: ``node`` (name, or ``<graph>``), its op type, ok/warning/error and why."""

    node: str
    op_type: str
    level: str
    reason: str
    rule: str = ""


@dataclass
class LintReport:
    """Every finding for one graph against one TensorRT version, plus graph-level notes."""

    model: str
    trt_version: str
    title: str
    opset: int | None
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sources: list[dict[str, str]] = field(default_factory=list)
    derived: str = ""

    def count(self, level: str) -> int:
        return sum(f.level == level for f in self.findings)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "warning"]

    @property
    def passed(self) -> bool:
        """True when the parser should accept the graph (warnings allowed)."""
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "trt_version": self.trt_version, "title": self.title,
            "opset": self.opset, "passed": self.passed,
            "counts": {level: self.count(level) for level in LEVELS},
            "findings": [asdict(f) for f in self.findings], "notes": self.notes,
            "derived": self.derived, "sources": self.sources,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def table(self) -> str:
        """Fixed-width node / op / level / reason table, one row per finding."""
        rows = [(f.node, f.op_type, f.level, f.reason) for f in self.findings]
        head = ("node", "op", "level", "reason")
        w0 = min(max([len(head[0])] + [len(r[0]) for r in rows]), 48)
        w1 = max([len(head[1])] + [len(r[1]) for r in rows])
        lines = [f"{head[0]:<{w0}}  {head[1]:<{w1}}  {head[2]:<7}  {head[3]}"]
        lines += [f"{_clip(r[0], w0):<{w0}}  {r[1]:<{w1}}  {r[2]:<7}  {r[3]}" for r in rows]
        return "\n".join(lines)

    def summary(self) -> str:
        verdict = "accept" if self.passed else "reject"
        return (f"{self.title}, opset {self.opset}: {self.count('ok')} ok, "
                f"{self.count('warning')} warning(s), {self.count('error')} error(s): "
                f"the parser should {verdict} {self.model}")


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else "..." + text[-(width - 3):]
