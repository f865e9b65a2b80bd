"""The API surface of a real TensorRT Python binding, read without TensorRT's native libraries.

``python tests/trt_surface.py`` runs inside a subprocess whose ``sys.path`` starts with one
unpacked ``tensorrt-cu12-bindings`` (``-cu13-`` for 10.16) wheel and whose ``LD_LIBRARY_PATH``
holds the C stub built by ``tools/trt_bindings.py``: it prints, as JSON, every enum (members),
every class (methods with their pybind signatures, overloads included; properties and whether
they can be set) and every module-level value. One process per version, because two versions
cannot share a process.

The parent side (:func:`read_surface`, :func:`binding_dirs`) and the signature parser are plain
Python, used by ``tests/runtime/test_trt_surface.py`` and by ``--snapshot``, which writes the
part of the surface the fake TensorRT (``tests/fake_tensorrt.py``) is built from.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOT_DIR = Path(__file__).resolve().parent / "trt_snapshots"
VERSIONS = ("10.3.0", "10.13.0.35", "10.16.1.11", "11.4.0.106")


# --------------------------------------------------------------------------------------------------
# pybind docstring signatures
# --------------------------------------------------------------------------------------------------


def split_top_level(text: str) -> list[str]:
    """Split a parameter list at the commas outside brackets (types such as ``List[Dims]``,
    defaults such as ``<DataType.FLOAT: 0>`` hold commas of their own)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([<{":
            depth += 1
        elif ch in ")]>}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if text[start:].strip():
        parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def parse_signatures(name: str, doc: str | None) -> list[dict]:
    """Each overload of ``name`` in a pybind ``__doc__`` as ``{"params": [...], "defaults": [...]}``
    (``self`` dropped); ``defaults`` names the parameters that may be left out."""
    signatures = []
    pattern = re.compile(rf"^(?:\d+\.\s+)?{re.escape(name)}\((.*)\)(?:\s*->.*)?$")
    for line in (doc or "").splitlines():
        match = pattern.match(line.strip())
        if not match or match.group(1) == "*args, **kwargs":
            continue
        params, defaults = [], []
        for part in split_top_level(match.group(1)):
            pname = part.split(":", 1)[0].split("=", 1)[0].strip()
            if pname == "self":
                continue
            params.append(pname)
            if "=" in part.split(":", 1)[-1] or "=" in part.split(":", 1)[0]:
                defaults.append(pname)
        signatures.append({"params": params, "defaults": defaults})
    return signatures


# --------------------------------------------------------------------------------------------------
# Inside the subprocess: read the imported binding
# --------------------------------------------------------------------------------------------------


def _is_enum(obj) -> bool:
    return isinstance(obj, type) and isinstance(getattr(obj, "__members__", None), dict)


def _class_member(cls: type, name: str):
    for klass in cls.__mro__:
        if name in klass.__dict__:
            return klass.__dict__[name]
    return None


def describe_class(cls: type) -> dict:
    members = {}
    for name in dir(cls):
        if name.startswith("_") and name != "__init__":
            continue
        raw = _class_member(cls, name)
        if isinstance(raw, property):
            members[name] = {"kind": "property", "settable": raw.fset is not None}
        elif _is_enum(raw):
            members[name] = {"kind": "enum", "members": list(raw.__members__)}
        elif callable(raw) or isinstance(raw, (staticmethod, classmethod)):
            func = getattr(cls, name)
            members[name] = {"kind": "method",
                             "signatures": parse_signatures(name, getattr(func, "__doc__", ""))}
        else:
            members[name] = {"kind": "value", "type": type(raw).__name__}
    return members


def describe_module(trt) -> dict:
    """The whole surface of an imported ``tensorrt_bindings``."""
    enums, classes, values = {}, {}, {}
    for name in dir(trt):
        if name.startswith("_"):
            continue
        obj = getattr(trt, name)
        if _is_enum(obj):
            enums[name] = list(obj.__members__)
            nested = {k: v for k, v in describe_class(obj).items() if v["kind"] == "enum"}
            for inner, info in nested.items():
                enums[f"{name}.{inner}"] = info["members"]
        elif isinstance(obj, type):
            classes[name] = describe_class(obj)
            for inner, info in classes[name].items():
                if info["kind"] == "enum":
                    enums[f"{name}.{inner}"] = info["members"]
        else:
            values[name] = type(obj).__name__
    return {"version": trt.__version__, "enums": enums, "classes": classes, "values": values}


# --------------------------------------------------------------------------------------------------
# Parent side: where the bindings are, one subprocess per version
# --------------------------------------------------------------------------------------------------


def bindings_root() -> Path:
    """``$ATTN_EXPORT_TRT_BINDINGS``, else ``build/trt-bindings`` (``tools/trt_bindings.py``)."""
    return Path(os.environ.get("ATTN_EXPORT_TRT_BINDINGS") or ROOT / "build" / "trt-bindings")


def missing_reason(version: str) -> str | None:
    """Why ``version`` cannot be checked here, or None when it can."""
    if not (shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")):
        return "no C compiler: the stub of TensorRT's native libraries cannot be built"
    folder = bindings_root() / version
    if not (folder / ".complete").is_file():
        return (f"the TensorRT {version} bindings are not downloaded in {bindings_root()}; "
                "run `python tools/trt_bindings.py` (the Makefile's environment step does)")
    return None


@functools.cache
def read_surface(version: str) -> dict:
    """The surface of one real binding version, read in a subprocess of its own (once per session:
    several test modules check it; callers must not modify it)."""
    folder = bindings_root() / version
    env = dict(os.environ, LD_LIBRARY_PATH=str(folder / "lib"), PYTHONPATH=str(folder))
    out = subprocess.run([sys.executable, __file__, "--dump"], env=env, capture_output=True,
                         text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"cannot import tensorrt_bindings {version}: {out.stderr[-2000:]}")
    return json.loads(out.stdout)


def restrict(surface: dict, enums: set[str], classes: set[str], values: set[str]) -> dict:
    """The part of a surface that names what the fake models (what ``--snapshot`` keeps)."""
    return {
        "version": surface["version"],
        "enums": {k: v for k, v in surface["enums"].items() if k in enums},
        "classes": {k: v for k, v in surface["classes"].items() if k in classes},
        "values": {k: v for k, v in surface["values"].items() if k in values},
    }


def snapshot_path(version: str) -> Path:
    return SNAPSHOT_DIR / f"{version}.json"


def load_snapshot(version: str) -> dict:
    """The committed part of ``version``'s real surface the fake is built from."""
    return json.loads(snapshot_path(version).read_text())


def write_snapshots() -> None:
    """Rewrite ``tests/trt_snapshots/<version>.json`` from the real bindings."""
    sys.path.insert(0, str(ROOT))
    from tests.fake_tensorrt import MODELLED_CLASSES, MODELLED_ENUMS, MODELLED_VALUES

    SNAPSHOT_DIR.mkdir(exist_ok=True)
    for version in VERSIONS:
        part = restrict(read_surface(version), set(MODELLED_ENUMS), set(MODELLED_CLASSES),
                        set(MODELLED_VALUES))
        snapshot_path(version).write_text(json.dumps(part, indent=1, sort_keys=True) + "\n")
        print(f"wrote {snapshot_path(version)}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--dump"]:
        import tensorrt_bindings

        json.dump(describe_module(tensorrt_bindings), sys.stdout)
    elif sys.argv[1:] == ["--snapshot"]:
        write_snapshots()
    else:
        sys.exit("usage: python tests/trt_surface.py --dump | --snapshot")
