"""Runtime and serving import nothing from export or models (they run in the Jetson image, where
only the runtime's dependencies exist); the TensorRT build package is export's alone."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "attn_export"


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def test_runtime_and_serve_import_nothing_from_export_or_models():
    upward = {}
    for folder in ("runtime", "serve"):
        for path in sorted((PACKAGE / folder).rglob("*.py")):
            bad = sorted(m for m in imported_modules(path)
                         if m.startswith(("attn_export.export", "attn_export.models")))
            if bad:
                upward[str(path.relative_to(PACKAGE))] = bad
    assert upward == {}


def test_only_export_uses_the_build_package():
    users = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                   if any(m.startswith("attn_export.export.trt_build") for m in imported_modules(p))
                   and p.relative_to(PACKAGE).parts[0] not in ("export",))
    assert users == []
