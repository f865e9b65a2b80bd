"""The fake TensorRT, checked against the real bindings 10.3, 10.13, 10.16 and 11.4 (our own
TensorRT calls are checked in ``test_trt_calls.py``).

The real ``tensorrt-cu12-bindings`` wheels (``tools/trt_bindings.py``, run by the Makefile's
environment step) import here with a C stub of TensorRT's native libraries; each version is read
in a subprocess of its own (``tests/trt_surface.py``). Checked:

- the snapshot the fake is built from (``tests/trt_snapshots/<version>.json``) is that version's
  real surface, so the fake's enums and per-version members are the real ones;
- every method and property the fake defines exists in the real class, with the same parameter
  names (one of the pybind overloads) and, for properties, settable only where the real one is.

The ``real`` fixture (one real binding's whole surface) is in ``conftest.py``.
"""

from __future__ import annotations

import inspect

import pytest

from tests import fake_tensorrt as fake
from tests.trt_surface import VERSIONS, load_snapshot, parse_signatures, restrict

# --------------------------------------------------------------------------------------------------
# The snapshot and the fake
# --------------------------------------------------------------------------------------------------


def test_snapshot_is_the_real_surface(real):
    snapshot = load_snapshot(real["version"])
    part = restrict(real, set(fake.MODELLED_ENUMS), set(fake.MODELLED_CLASSES),
                    set(fake.MODELLED_VALUES))
    assert snapshot == part, (f"tests/trt_snapshots/{real['version']}.json differs from the real "
                              "binding: run `python tests/trt_surface.py --snapshot`")


def _fake_members(cls) -> dict:
    return {k: v for k, v in vars(cls).items() if not k.startswith("_")}


def _fake_params(func) -> tuple[list[str], list[str]]:
    params = list(inspect.signature(func).parameters.values())[1:]  # self
    return [p.name for p in params], [p.name for p in params if p.default is not p.empty]


def accepts(real: dict, params: list[str], defaults: list[str]) -> bool:
    """Every call the fake's signature takes, the real overload takes too: the same leading
    parameter names, the real ones beyond them optional, nothing optional here that is not
    optional there."""
    rest = real["params"][len(params):]
    return (real["params"][:len(params)] == params and set(rest) <= set(real["defaults"])
            and set(defaults) <= set(real["defaults"]))


def fake_mismatches(surface: dict) -> list[str]:
    """Every way the fake's classes differ from one version's real classes."""
    problems = []
    for cls in fake.MODELLED:
        real_cls = surface["classes"].get(cls.__name__)
        if real_cls is None:
            problems.append(f"{cls.__name__}: no such class")
            continue
        for name, member in _fake_members(cls).items():
            info = real_cls.get(name)
            if info is None:
                continue  # absent in this version: fake_tensorrt() drops it too
            where = f"{cls.__name__}.{name}"
            if isinstance(member, property):
                if info["kind"] != "property":
                    problems.append(f"{where}: a property here, a {info['kind']} in TensorRT")
                elif member.fset is not None and not info["settable"]:
                    problems.append(f"{where}: settable here, read-only in TensorRT")
            elif callable(member):
                if info["kind"] != "method":
                    problems.append(f"{where}: a method here, a {info['kind']} in TensorRT")
                    continue
                params, defaults = _fake_params(member)
                if not any(accepts(s, params, defaults) for s in info["signatures"]):
                    problems.append(f"{where}{tuple(params)} matches no overload of "
                                    f"{[s['params'] for s in info['signatures']]}")
        real_init = real_cls.get("__init__", {}).get("signatures")
        if real_init and "__init__" in vars(cls) and cls.__name__ not in ("ILayer", "ITensor"):
            params, _ = _fake_params(vars(cls)["__init__"])
            if all(s["params"] != params for s in real_init):
                problems.append(f"{cls.__name__}{tuple(params)}: TensorRT constructs it with "
                                f"{[s['params'] for s in real_init]}")
    return problems


@pytest.mark.parametrize("version", VERSIONS)
def test_fake_matches_the_snapshot(version):
    """Runs everywhere (the snapshot is committed); the test above ties it to the real wheels."""
    assert fake_mismatches(load_snapshot(version)) == []


def test_fake_matches_the_real_binding(real):
    assert fake_mismatches(real) == []


def test_every_fake_member_exists_in_some_version():
    """A member no version has is a typo the per-version filter would silently drop."""
    known = [load_snapshot(v)["classes"] for v in VERSIONS]
    unknown = [f"{cls.__name__}.{name}" for cls in fake.MODELLED for name in _fake_members(cls)
               if not any(name in classes.get(cls.__name__, {}) for classes in known)]
    assert unknown == []


def test_fake_follows_each_version():
    """The differences our code must handle are there: 11.x lost weak typing."""
    trt10, trt11 = fake.fake_tensorrt("10.3.0"), fake.fake_tensorrt("11.4.0.106")
    assert hasattr(trt10.ILayer, "precision") and not hasattr(trt11.ILayer, "precision")
    assert hasattr(trt10.BuilderFlag, "FP16") and not hasattr(trt11.BuilderFlag, "FP16")
    assert hasattr(trt11.BuilderFlag, "TF32")
    assert not hasattr(trt10.HardwareCompatibilityLevel, "SAME_COMPUTE_CAPABILITY")


@pytest.mark.parametrize(
    "doc, expected",
    [("f(self: X, a: int, b: List[Dims] = [], c: bool = True) -> None",
      [{"params": ["a", "b", "c"], "defaults": ["b", "c"]}]),
     ("f(*args, **kwargs)\nOverloaded function.\n\n1. f(self: X, name: str) -> bool\n\n"
      "2. f(self: X, index: typing.SupportsInt) -> bool",
      [{"params": ["name"], "defaults": []}, {"params": ["index"], "defaults": []}]),
     ("f(self: X, t: DataType = <DataType.FLOAT: 0>) -> None",
      [{"params": ["t"], "defaults": ["t"]}])],
    ids=["defaults-and-brackets", "overloads", "enum-default"],
)
def test_pybind_signatures_are_parsed(doc, expected):
    assert parse_signatures("f", doc) == expected
