"""The package's layers point one way, and no two modules import each other.

Every import of every module is read with ``ast`` (function-level lazy imports included: a lazy
import still makes the importer depend on the imported code) and mapped to its layer::

    foundation (attn_export, errors, atomic)
    modules  <-  models  <-  export  <-  commands  <-  cli
    runtime  <-  serve          (runtime and serve: nothing from export, models, modules, commands)
    runtime, export  <-  bench;  runtime  <-  doctor;  bench, doctor, serve  <-  commands

A failure names the importing file, the line and the import.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "attn_export"
FOUNDATION = {"attn_export", "attn_export.errors", "attn_export.atomic", "attn_export.termination"}
ALLOWED: dict[str, set[str]] = {
    "foundation": set(),
    "modules": set(),
    "models": {"modules"},
    "runtime": set(),
    "serve": {"runtime"},
    "export": {"modules", "models", "runtime"},
    "bench": {"modules", "models", "runtime", "export"},
    "report": {"modules", "models", "runtime", "export"},
    "doctor": {"runtime"},
    "commands": {"modules", "models", "runtime", "export", "serve", "bench", "report", "doctor"},
    "cli": {"modules", "models", "runtime", "export", "serve", "bench", "report", "doctor",
            "commands"},
}
"""Layer -> the layers it may import besides itself and the foundation."""

KNOWN_UPWARD: dict[tuple[str, str], str] = {}
"""(importer, imported) arrows that run back up today, each with why it is tolerated."""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    if module in FOUNDATION or module.startswith("attn_export.atomic."):
        return "foundation"
    if module == "attn_export.cli":
        return "cli"
    return module.split(".")[1]


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(name: str) -> str:
    """The module an imported dotted name lives in (``attn_export.export.check.load_onnx`` ->
    ``attn_export.export.check``)."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def imports_of(module: str) -> list[tuple[int, str, str]]:
    """(line, imported module, source text) for every project import in ``module``."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        targets = dict.fromkeys(_resolve(n) for n in names if n.split(".")[0] == "attn_export")
        found += [(node.lineno, target, ast.unparse(node)) for target in targets]
    return found


def test_every_module_is_in_a_layer():
    unknown = sorted({m for m in MODULES if layer_of(m) not in ALLOWED})
    assert not unknown, f"modules outside every layer (add the layer to ALLOWED): {unknown}"


def test_imports_only_point_down():
    wrong = []
    for module, path in MODULES.items():
        own = layer_of(module)
        for line, target, text in imports_of(module):
            theirs = layer_of(target)
            if theirs in (own, "foundation") or theirs in ALLOWED[own]:
                continue
            if (module, target) in KNOWN_UPWARD:
                continue
            wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {text}  ({own} -> {theirs})")
    assert not wrong, "imports that run back up a layer:\n" + "\n".join(wrong)


def test_known_upward_arrows_still_exist():
    """An allowed exception that no longer happens is removed, so the list only shrinks."""
    arrows = {(m, t) for m in MODULES for _, t, _ in imports_of(m)}
    assert not set(KNOWN_UPWARD) - arrows, set(KNOWN_UPWARD) - arrows


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    graph = {m: {t for _, t, _ in imports_of(m) if t != m} for m in MODULES}
    report = []
    for component in _cycles(graph):
        members = set(component)
        for m in component:
            for line, target, text in imports_of(m):
                if target in members and target != m:
                    report.append(f"{MODULES[m].relative_to(PACKAGE.parent)}:{line}: {text}")
        report.append("")
    assert not report, "import cycles (each group imports itself around):\n" + "\n".join(report)


def test_the_walker_sees_lazy_and_relative_imports(tmp_path):
    """The checks above read function-level imports too (the cycle cli <-> commands/model went
    through one)."""
    lazy = imports_of("attn_export.commands.model")
    assert any(t == "attn_export.export.pipeline" for _, t, _ in lazy)
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
