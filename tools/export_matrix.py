"""``make matrix``: measure every block x form x exporter x opset x shape mode x precision.

    python tools/export_matrix.py [--out docs/matrix.json] [--html matrix.html]
                                  [--blocks se cbam] [--opsets 17 18] [--workers 2]
                                  [--markdown docs/compatibility.md]

Resumes after an interruption (cells already measured are read from OUT.partial.jsonl), uses one
worker process per core, prints a line per finished cell with the time left. Writes OUT (every
cell's outcome and worst error per precision, and the TensorRT lint verdict per version), the
sortable and filterable HTML page, and, with --markdown, the docs table generated from OUT.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attn_export.report.matrix import EXPORTERS, FORMS, OPSETS, plan_cells, run_matrix  # noqa: E402
from attn_export.report.matrix_page import (  # noqa: E402
    markdown_table,
    render_html,
    replace_between_markers,
)


def main() -> None:
    from attn_export.modules.registry import SHAPE_MODES, list_blocks

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/matrix.json"))
    parser.add_argument("--html", type=Path, default=Path("matrix.html"))
    parser.add_argument("--markdown", type=Path, help="rewrite the table between this file's markers")
    parser.add_argument("--blocks", nargs="*", default=list_blocks())
    parser.add_argument("--forms", nargs="*", default=list(FORMS))
    parser.add_argument("--exporters", nargs="*", default=list(EXPORTERS))
    parser.add_argument("--opsets", nargs="*", type=int, default=list(OPSETS))
    parser.add_argument("--modes", nargs="*", default=list(SHAPE_MODES))
    parser.add_argument("--workers", type=int, default=None, help="default: min(cores, 2)")
    args = parser.parse_args()
    cells = plan_cells(args.blocks, args.forms, args.exporters, args.opsets, args.modes)
    print(f"[matrix] {len(cells)} cells -> {args.out}", file=sys.stderr)
    matrix = run_matrix(args.out, cells, workers=args.workers,
                        progress=lambda m: print(f"[matrix] {m}", file=sys.stderr, flush=True))
    args.html.write_text(render_html(matrix))
    table = markdown_table(matrix)
    print(table)
    if args.markdown:
        args.markdown.write_text(replace_between_markers(args.markdown.read_text(), table,
                                                         str(args.markdown)))
    print(f"[matrix] wrote {args.out} and {args.html}", file=sys.stderr)


if __name__ == "__main__":
    main()
