"""One row of ``attn-export doctor``: what was checked, its status, and the fix.

Its own module so the checks and the TensorRT-extra check (``extras.py``) share it without
importing each other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

OK, MISSING, WARN, BAD, INFO = "ok", "missing", "warn", "bad", "info"


@dataclass(frozen=True)
class Check:
    """One row: ``key`` is what roles refer to; ``status`` is ok, missing, warn, bad or info;
    ``fix`` says what to run when it is not ok."""

    key: str
    label: str
    status: str
    found: str
    fix: str = ""

    def to_dict(self) -> dict:
        return asdict(self)
