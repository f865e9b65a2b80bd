"""make docker-test's TensorRT-readiness check, run inside a Jetson image: every module the TensorRT
verbs (build, serve of a model.plan, bench of an engine, validate of an engine) import must import.

    python3 docker_trt_imports.py [--require-tensorrt]

The verbs import most of their dependencies lazily, inside functions, so importing the verbs'
modules proves little. This walks the source of those modules and of every attn_export module
they reach (ast: every ``import`` statement, top level or inside a function) and imports each
external module named there. Allowed to be absent, by design of the torch-free image: torch and
what only exports use (onnxscript, onnxsim). tensorrt itself comes from JetPack's base image; an
x86 stand-in base lacks it unless the real bindings are mounted (``--require-tensorrt`` then
demands it). Finally the runner's device-memory backend is opened: without a GPU it must fail
with a CUDA error, not with a missing dependency (the image once had neither cuda-python nor
torch, so every TensorRT verb died there with "install cuda-python").
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import sys
from pathlib import Path

VERB_MODULES = (
    "attn_export.cli",                       # build, validate, export --engine
    "attn_export.commands.bench",            # bench of an engine
    "attn_export.commands.serve",            # serve
    "attn_export.export.engine_from_onnx",   # build
    "attn_export.runtime.tensorrt_runner",   # validate / serve / bench of an engine
    "attn_export.runtime.cuda_memory",       # their device memory
    "attn_export.runtime.validate",
    "attn_export.bench.tensorrt_timing",
    "attn_export.serve.backends",
    "attn_export.serve.server",
)
ABSENT_BY_DESIGN = ("torch", "onnxscript", "onnxsim", "tensorrt",
                    "sklearn", "PIL",            # export-time natural images (the torch extra)
                    "jinja2", "matplotlib")      # the HTML report (the report extra)
CLIENT_ONLY = ("tritonclient.http",)
"""bench-serve's HTTP client: the image carries tritonclient[grpc] (the server's protobufs); a
client machine runs bench-serve."""


def imported_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def reachable(roots: tuple[str, ...]) -> tuple[list[str], set[str]]:
    """(attn_export modules reached, external module names they import)."""
    seen, external, todo = [], set(), list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        try:
            spec = importlib.util.find_spec(name)  # imports the parent packages
        except ImportError as exc:
            seen.append(name)  # judged again, with the same rule, when imported in main()
            if (exc.name or "").split(".")[0] not in ABSENT_BY_DESIGN:
                raise
            continue
        if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
            continue
        seen.append(name)
        for imported in imported_names(Path(spec.origin)):
            if imported.split(".")[0] == "attn_export":
                todo.append(imported)
                parent = imported.rsplit(".", 1)[0]
                todo.append(parent)
            else:
                external.add(imported)
    return seen, external


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--require-tensorrt", action="store_true")
    args = parser.parse_args()
    modules, external = reachable(VERB_MODULES)
    failures = []
    for name in sorted(external):
        top = name.split(".")[0]
        if top == "cuda":
            continue  # two cuda-python layouts, tried in turn: the backend check below judges
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - tritonclient raises RuntimeError, not ImportError
            if (top in ABSENT_BY_DESIGN and not (top == "tensorrt" and args.require_tensorrt)) \
                    or name in CLIENT_ONLY:
                print(f"absent by design: {name}")
                continue
            failures.append(f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
    for name in modules:  # a verb's own module must import; others may need torch (export only)
        try:
            importlib.import_module(name)
        except ImportError as exc:
            missing = (exc.name or "").split(".")[0]
            if name not in VERB_MODULES and missing in ABSENT_BY_DESIGN and missing != "tensorrt":
                print(f"absent by design: {name} (needs {missing})")
                continue
            failures.append(f"{name}: {exc}")
        except Exception as exc:  # noqa: BLE001 - any import-time failure is a finding
            failures.append(f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
    from attn_export.errors import MissingDependencyError
    from attn_export.runtime.cuda_memory import cuda_backend

    try:
        backend = cuda_backend("auto")
        print(f"device memory: {backend.name} opened a stream (a GPU is visible)")
    except MissingDependencyError as exc:
        failures.append(f"device memory backend: {exc}")
    except Exception as exc:  # noqa: BLE001 - no GPU here: any CUDA error is the expected outcome
        print(f"device memory: cuda-python present, no GPU ({type(exc).__name__}: "
              f"{str(exc).splitlines()[0][:100]})")
    print(f"{len(modules)} attn_export modules, {len(external)} external imports checked")
    for failure in failures:
        print(f"MISSING {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
