"""Read an export folder into what the page shows: the report, the graphs, a bench result."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from attn_export.errors import ModelFileError

PRECISIONS = ("fp32", "fp16", "int8")


@dataclass
class ExportView:
    """One export as the report page needs it.

    Attributes:
        folder: the export folder.
        report: ``report.json`` as written by ``attn-export BLOCK`` or ``attn-export model``.
        graphs: precision -> ONNX file that exists (fp32 always; fp16 / int8 when derived).
        golden: the golden file, when present.
        bench: a ``bench.json`` (``attn-export bench ... --json > bench.json``), when present.
    """

    folder: Path
    report: dict
    graphs: dict[str, Path] = field(default_factory=dict)
    golden: Path | None = None
    bench: dict | None = None

    @property
    def name(self) -> str:
        return str(self.report.get("block") or self.report.get("model") or self.folder.name)

    @property
    def is_network(self) -> bool:
        return "model" in self.report or "swaps" in self.report

    def sections(self) -> dict[str, dict]:
        """precision -> its section of the report (fp32 is the report itself)."""
        out = {"fp32": self.report}
        for precision in ("fp16", "int8"):
            if isinstance(self.report.get(precision), dict):
                out[precision] = self.report[precision]
        return out


def collect(folder: str | Path) -> ExportView:
    """The :class:`ExportView` of ``folder``; a folder without ``report.json`` is refused."""
    folder = Path(folder)
    path = folder / "report.json"
    if not path.is_file():
        raise ModelFileError(f"{folder} holds no report.json; expected an export folder written by "
                             "`attn-export BLOCK` or `attn-export model` (e.g. exports/cbam)")
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"cannot read {path}: {exc}; re-run the export") from None
    files = report.get("files", {})
    view = ExportView(folder=folder, report=report)
    onnx = files.get("onnx")
    if onnx and (folder / onnx).is_file():
        view.graphs["fp32"] = folder / onnx
    for precision in ("fp16", "int8"):
        section = report.get(precision)
        if isinstance(section, dict) and section.get("file") and (folder / section["file"]).is_file():
            view.graphs[precision] = folder / section["file"]
    golden = files.get("golden")
    if golden and (folder / golden).is_file():
        view.golden = folder / golden
    bench = folder / "bench.json"
    if bench.is_file():
        try:
            view.bench = json.loads(bench.read_text())
        except ValueError as exc:
            raise ModelFileError(f"cannot read {bench}: {exc}; re-write it with `attn-export bench "
                                 "... --json > bench.json`") from None
    return view
