"""report.json of an export folder: what was written, each file's sha256, and every verdict.

Later stages (a precision graph, an engine) add a section and their file's hash to the same
report, inside the same :class:`~attn_export.atomic.ArtefactSet` as the file itself, so the report
never lists a file that is not there or describes a file that was replaced.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REPORT_NAME = "report.json"


def read_report(folder: str | Path) -> dict:
    """The folder's report, or {} when there is none or it is unreadable (it is then rewritten)."""
    path = Path(folder) / REPORT_NAME
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


def report_with(report: dict, key: str, value: dict[str, Any],
                hashes: dict[str, str] | None = None) -> dict:
    """A copy of ``report`` with section ``key`` and the given file hashes; ``passed`` is the
    conjunction of every verdict recorded."""
    report = dict(report)
    report[key] = value
    report["sha256"] = dict(report.get("sha256", {})) | dict(hashes or {})
    report["passed"] = report.get("passed", True) and value.get("passed", True)
    return report


def report_text(report: dict) -> str:
    return json.dumps(report, indent=2) + "\n"
