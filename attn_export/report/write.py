"""Write ``report.html`` for one or several export folders, atomically."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from attn_export.errors import MissingDependencyError

REPORT_HTML = "report.html"


def check_report_extra() -> None:
    """Refuse, naming the extra, where the page's libraries are missing."""
    for module in ("jinja2", "matplotlib"):
        try:
            __import__(module)
        except ImportError:
            raise MissingDependencyError(
                f"the HTML report needs {module}; install the `report` extra: "
                "pip install 'attn-export[report]'") from None


def write_report(folders: Sequence[str | Path], out: str | Path | None = None,
                 title: str | None = None) -> Path:
    """Render the export ``folders`` into one page at ``out`` (default: FOLDER/report.html for a
    single folder). The page is written to a temporary file beside ``out`` and renamed."""
    from attn_export.atomic import write_atomic
    from attn_export.report.collect import collect
    from attn_export.report.page import render

    check_report_extra()
    views = [collect(f) for f in folders]
    path = Path(out) if out is not None else Path(folders[0]) / REPORT_HTML
    html = render(views, title)
    write_atomic(path, lambda tmp: tmp.write_text(html, encoding="utf-8"))
    return path
