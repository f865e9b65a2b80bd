"""Our TensorRT calls, checked against the real bindings 10.3, 10.13, 10.16 and 11.4 and against
the snapshots the fake is built from (``test_trt_surface.py`` checks those snapshots are real):

- every ``trt.X.Y`` our package names, and every enum member it reaches through
  ``getattr(trt.X, name)`` from plan data (builder flags, network flags, hardware levels, pinned
  layer types, I/O data types, logger severities), exists in each version it is planned for;
- every call on a TensorRT object fits one of the real pybind signatures, and every member used
  exists (and is modelled by the fake, so the fake-based tests reach it).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from attn_export.export.precision_plan import FP16_MODES, PRECISIONS, plan_precision
from attn_export.export.trt_build.settings import (
    PINNED_LAYER_TYPES,
    BuildOptions,
    builder_settings,
)
from attn_export.runtime.sidecar import HARDWARE_LEVELS
from attn_export.runtime.trt_engine import TRT_DTYPES
from tests import fake_tensorrt as fake
from tests.trt_surface import VERSIONS, load_snapshot

PACKAGE = Path(__file__).resolve().parents[2] / "attn_export"
LOGGER_SEVERITIES = ("WARNING", "ERROR", "INTERNAL_ERROR")  # the process logger's threshold + errors()


# --------------------------------------------------------------------------------------------------
# The package's own references
# --------------------------------------------------------------------------------------------------


def trt_references(root: Path = PACKAGE) -> set[tuple[str, ...]]:
    """Every ``trt.A.B...`` attribute chain in the package (``trt`` is what import_tensorrt
    returns, by convention the only name TensorRT is bound to)."""
    found = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Attribute):
                continue
            chain, cur = [], node
            while isinstance(cur, ast.Attribute):
                chain.append(cur.attr)
                cur = cur.value
            if isinstance(cur, ast.Name) and cur.id == "trt":
                found.add(tuple(reversed(chain)))
    return {c for c in found if not any(c != o and o[:len(c)] == c for o in found)}


def resolve(surface: dict, chain: tuple[str, ...]) -> bool:
    head, rest = chain[0], chain[1:]
    if head.startswith("__"):
        return head == "__version__"
    if head in surface["values"]:
        return not rest
    if head in surface["enums"] and not rest:
        return True
    if len(rest) == 1 and head in surface["enums"]:
        return rest[0] in surface["enums"][head]
    if head not in surface["classes"]:
        return False
    if not rest:
        return True
    if f"{head}.{rest[0]}" in surface["enums"]:
        return len(rest) == 1 or rest[1] in surface["enums"][f"{head}.{rest[0]}"]
    return rest[0] in surface["classes"][head] and len(rest) == 1


def test_references_are_found():
    refs = trt_references()
    assert ("MemoryPoolType", "WORKSPACE") in refs and ("TensorIOMode", "INPUT") in refs


def test_every_trt_reference_exists(real):
    missing = sorted(".".join(c) for c in trt_references() if not resolve(real, c))
    assert missing == [], f"TensorRT {real['version']} lacks {missing}"


TRT_MODULES = ("export/engine_from_onnx.py", *(f"export/trt_build/{p.name}" for p in
                                               sorted((PACKAGE / "export/trt_build").glob("*.py"))),
               "runtime/tensorrt_runner.py", "runtime/trt_engine.py", "runtime/trt_logger.py",
               "bench/tensorrt_timing.py")
TRT_OBJECTS = {
    "builder": "Builder", "network": "INetworkDefinition", "parser": "OnnxParser",
    "config": "IBuilderConfig", "profile": "IOptimizationProfile", "layer": "ILayer",
    "err": "ParserError", "cache": "ITimingCache", "serialized": "IHostMemory",
    "engine": "ICudaEngine", "_engine": "ICudaEngine", "context": "IExecutionContext",
    "_context": "IExecutionContext", "runtime": "Runtime", "_runtime": "Runtime",
    "lean": "Runtime", "runtimes": "Runtime", "tensor": "ITensor",
}
"""The names TensorRT objects are bound to in the modules that talk to TensorRT (``self._x``
included): the one place that says which class each call goes to."""
VERSION_GUARDED = {("ILayer", "precision"), ("ILayer", "set_output_type")}
"""Members some versions lack, reached only where the code checks for them first."""


def _bound_name(base) -> str | None:
    """``config`` in ``config.x``, ``_engine`` in ``self._engine.x``, ``layer`` in
    ``layers[i].x``: the name a TensorRT object is bound to, if any."""
    if isinstance(base, ast.Subscript):
        base = base.value
    if isinstance(base, ast.Name):
        return "layer" if base.id == "layers" else base.id
    if isinstance(base, ast.Attribute) and isinstance(base.value, ast.Name) \
            and base.value.id == "self":
        return base.attr
    return None


def object_calls() -> dict[tuple[str, str], list[tuple[int, tuple[str, ...], str]]]:
    """``(class, method)`` -> every call of it in our TensorRT modules as (positional argument
    count, keyword names, where)."""
    calls: dict[tuple[str, str], list] = {}
    for module in TRT_MODULES:
        for node in ast.walk(ast.parse((PACKAGE / module).read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            name = _bound_name(node.func.value)
            if name in TRT_OBJECTS:
                key = (TRT_OBJECTS[name], node.func.attr)
            elif isinstance(node.func.value, ast.Name) and node.func.value.id == "trt" \
                    and node.func.attr[:1].isupper():
                key = (node.func.attr, "__init__")  # trt.Builder(logger), trt.Runtime(logger)
            else:
                continue
            calls.setdefault(key, []).append((len(node.args), tuple(k.arg for k in node.keywords),
                                              f"{module}:{node.lineno}"))
    return calls


def call_fits(signature: dict, positional: int, keywords: tuple[str, ...]) -> bool:
    """Whether a call binds to one pybind overload: no surplus positional argument, known
    keyword names, every parameter without a default given."""
    params = signature["params"]
    given = set(params[:positional]) | set(keywords)
    return (positional <= len(params) and set(keywords) <= set(params) - set(params[:positional])
            and set(params) - given <= set(signature["defaults"]))


def call_problems(classes: dict) -> dict[str, str]:
    problems = {}
    for (cls, method), calls in object_calls().items():
        info = classes.get(cls, {}).get(method)
        if info is None or info["kind"] != "method":
            continue  # missing members are use_problems' to report
        for positional, keywords, where in calls:
            if not any(call_fits(s, positional, keywords) for s in info["signatures"]):
                problems[where] = (f"{cls}.{method} with {positional} positional and "
                                   f"{list(keywords)} keyword arguments fits none of "
                                   f"{[s['params'] for s in info['signatures']]}")
    return problems


def object_uses() -> dict[tuple[str, str], list[str]]:
    """``(class, member)`` -> where: every attribute our TensorRT modules use on a TensorRT
    object, found statically (so paths no test runs are covered too); an assignment is recorded
    as ``(class, member, "set")`` too."""
    uses: dict[tuple[str, str], list[str]] = {}
    for module in TRT_MODULES:
        tree = ast.parse((PACKAGE / module).read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute):
                continue
            name = _bound_name(node.value)
            if name in TRT_OBJECTS:
                where = f"{module}:{node.lineno}"
                uses.setdefault((TRT_OBJECTS[name], node.attr), []).append(where)
                if isinstance(node.ctx, ast.Store):
                    uses.setdefault((TRT_OBJECTS[name], node.attr, "set"), []).append(where)
    return uses


def test_object_uses_are_found():
    uses = object_uses()
    assert ("IBuilderConfig", "add_optimization_profile") in uses and ("ITensor", "dtype") in uses
    assert ("IExecutionContext", "execute_async_v3") in uses and ("Runtime", "load_runtime") in uses
    assert ("IBuilderConfig", "builder_optimization_level", "set") in uses


def use_problems(classes: dict) -> dict[str, list[str]]:
    """Uses one version's classes do not support: missing members, assignments to read-only
    properties."""
    problems = {}
    for use, where in object_uses().items():
        cls, member = use[:2]
        info = classes[cls].get(member)
        if info is None:
            if (cls, member) not in VERSION_GUARDED:
                problems[f"{cls}.{member}"] = where
        elif len(use) == 3 and not (info["kind"] == "property" and info["settable"]):
            problems[f"{cls}.{member} = ... (not settable)"] = where
    return problems


def test_every_use_of_a_trt_object_exists(real):
    problems = use_problems(real["classes"])
    assert problems == {}, f"TensorRT {real['version']}: {problems}"


def test_calls_are_found_and_bound():
    calls = object_calls()
    assert [c[:2] for c in calls[("ITimingCache", "combine")]] == [(1, ("ignore_mismatch",))]
    assert len(calls[("IBuilderConfig", "set_timing_cache")]) == 2
    assert [c[:2] for c in calls[("OnnxParser", "__init__")]] == [(2, ())]
    sig = {"params": ["cache", "ignore_mismatch"], "defaults": []}
    assert call_fits(sig, 1, ("ignore_mismatch",)) and not call_fits(sig, 1, ())
    assert not call_fits(sig, 1, ("ignore",)) and not call_fits(sig, 3, ())
    assert not call_fits(sig, 1, ("cache",))  # given twice


def test_every_call_fits_a_real_signature(real):
    """Argument counts and keyword names of every call on a TensorRT object, against pybind's
    signatures (overloads included)."""
    assert call_problems(real["classes"]) == {}


@pytest.mark.parametrize("version", VERSIONS)
def test_every_call_fits_the_snapshot(version):
    assert call_problems(load_snapshot(version)["classes"]) == {}


@pytest.mark.parametrize("version", VERSIONS)
def test_every_use_of_a_trt_object_is_in_the_fake(version):
    """So the fake-based tests can reach every call, and the snapshot checks each one."""
    assert use_problems(load_snapshot(version)["classes"]) == {}
    trt = fake.fake_tensorrt(version)
    missing = sorted(f"{u[0]}.{u[1]}" for u in object_uses()
                     if not hasattr(getattr(trt, u[0]), u[1]) and u[:2] not in VERSION_GUARDED)
    assert missing == []


def planned_names(version: str) -> dict[str, set[str]]:
    """Every enum member name a build for ``version`` can reach by ``getattr`` from plan data."""
    names: dict[str, set[str]] = {"BuilderFlag": set(), "NetworkDefinitionCreationFlag": set()}
    for precision in PRECISIONS:
        for mode in FP16_MODES:
            try:
                plan = plan_precision(precision, version, mode)
            except Exception:  # refused plans reach no enum
                continue
            for vc, lean in ((False, False), (True, False), (True, True)):
                s = builder_settings(plan, BuildOptions(precision=precision, fp16_mode=mode,
                                                        version_compatible=vc,
                                                        exclude_lean_runtime=lean))
                names["BuilderFlag"] |= {*s.builder_flags, *s.cleared_flags}
                names["NetworkDefinitionCreationFlag"] |= set(s.network_flags)
    names["LayerType"] = set(PINNED_LAYER_TYPES)
    names["DataType"] = set(TRT_DTYPES)
    names["ILogger.Severity"] = set(LOGGER_SEVERITIES)
    names["MemoryPoolType"] = {"WORKSPACE"}
    return names


@pytest.mark.parametrize("version", VERSIONS)
def test_every_planned_enum_member_exists(version):
    """Against the snapshot here (everywhere) and the real binding in the next test."""
    enums = load_snapshot(version)["enums"]
    missing = {e: sorted(n - set(enums[e])) for e, n in planned_names(version).items()
               if n - set(enums[e])}
    assert missing == {}


def test_every_planned_enum_member_exists_in_the_real_binding(real):
    enums = real["enums"]
    missing = {e: sorted(n - set(enums[e])) for e, n in planned_names(real["version"]).items()
               if n - set(enums[e])}
    assert missing == {}


def test_hardware_levels_a_version_lacks_are_refused_by_name():
    """10.3 has no SAME_COMPUTE_CAPABILITY: the build refuses it in words (tested with the fake
    in test_engine_from_onnx_trt.py), every other level exists where it is offered."""
    for version in VERSIONS:
        levels = set(load_snapshot(version)["enums"]["HardwareCompatibilityLevel"])
        absent = {lvl.upper() for lvl in HARDWARE_LEVELS if lvl != "none"} - levels
        assert absent <= ({"SAME_COMPUTE_CAPABILITY"} if version == "10.3.0" else set())
