"""One model, several devices: a TensorRT plan per GPU compute capability in one repository.

A plan runs only on the GPU it was built for, so an engine built on Orin (sm 8.7) and one built on
Thor (sm 11.0) from the same ONNX are different engines. Triton's answer is the config field
``cc_model_filenames`` (compute capability -> file of the version folder): its TensorRT backend
loads the file named for the local GPU and otherwise falls back to ``default_model_filename``.
``repo`` writes ``1/model.sm87.plan`` and ``1/model.sm110.plan`` (each with its sidecar) and the
map; ``serve`` loads the plan for the local GPU and, where the map has none, refuses the model
with the capabilities it holds rather than loading a plan built for another GPU.
"""

from __future__ import annotations

from pathlib import Path

from attn_export.errors import MissingDependencyError, ModelFileError
from attn_export.serve.config import ConfigError, ModelSpec
from attn_export.serve.config_checks import CC_KEY


def cc_order(cc: str) -> tuple[int, ...]:
    """Sort key of a ``major.minor`` capability (``"11.0"`` after ``"8.7"``)."""
    return tuple(int(p) for p in cc.split(".")) if CC_KEY.match(cc) else (1 << 30,)


def plan_file_name(cc: str) -> str:
    """The version-folder file of the plan for ``cc``: ``8.7`` -> ``model.sm87.plan``."""
    major, minor = cc_order(cc)
    return f"model.sm{major}{minor}.plan"


def engine_capability(engine: Path) -> str:
    """The compute capability an engine was built for, from its sidecar."""
    from attn_export.runtime.sidecar import read_sidecar

    sidecar = read_sidecar(engine)
    if sidecar is None:
        raise ConfigError(f"engine {engine} has no .json sidecar: the GPU it was built for is "
                          "unknown; rebuild it with `attn-export build`")
    cc = sidecar.env.compute_capability
    if not CC_KEY.match(cc):
        raise ConfigError(f"engine {engine}: its sidecar records compute capability {cc!r}, "
                          "expected major.minor such as 8.7; rebuild it with `attn-export build`")
    return cc


def by_capability(name: str, engines: list[Path]) -> dict[str, Path]:
    """``engines`` keyed by the capability each was built for, in capability order; two engines
    for one capability are refused (a repository model holds one engine per device)."""
    found: dict[str, Path] = {}
    for engine in engines:
        cc = engine_capability(engine)
        if cc in found:
            raise ConfigError(f"model {name!r}: two engines for compute capability {cc} ({found[cc]} "
                              f"and {engine}); one repository model holds one engine per device: "
                              "keep one, or give each export its own --name")
        found[cc] = engine
    return {cc: found[cc] for cc in sorted(found, key=cc_order)}


def _limits(spec: ModelSpec) -> dict[str, tuple[list[int], list[int]]]:
    return {str(p["name"]): ([int(d) for d in p["min"]], [int(d) for d in p["max"]])
            for p in spec.profiles}


def check_engines_agree(name: str, specs: dict[str, ModelSpec], engines: dict[str, Path]) -> None:
    """Every device's engine must serve the same config: same inputs and outputs (names, dtypes,
    shapes) and the same profile range (min and max; opt may be tuned per device)."""
    first, *others = specs
    for cc in others:
        what = ("inputs/outputs" if specs[cc].io != specs[first].io else
                "optimization profiles (min/max)" if _limits(specs[cc]) != _limits(specs[first])
                else None)
        if what:
            raise ConfigError(f"model {name!r}: the engines for compute capability {first} "
                              f"({engines[first]}) and {cc} ({engines[cc]}) differ in their {what}; "
                              "build every device's engine from the same export with the same "
                              "--min-shape/--max-shape")


def local_env():
    """This machine as the TensorRT runtime probes it (``RuntimeEnv``), or None when TensorRT is
    not importable here (an ONNX Runtime-only machine: no plan is loaded, nothing to pick)."""
    from attn_export.runtime import trt_env

    try:
        trt = trt_env.import_tensorrt()
    except MissingDependencyError:
        return None
    return trt_env.current_env(trt)


def plan_for_device(cfg, version_dir: Path, name: str) -> Path | None:
    """The plan ``cc_model_filenames`` names for this machine's GPU; None when the config has no
    map or TensorRT is not importable (the caller keeps ``default_model_filename``).

    Raises:
        ModelFileError: the map has no entry for this GPU's capability (one line naming those
            it has).
    """
    if not cfg.cc_model_filenames:
        return None
    env = local_env()
    if env is None:
        return None
    by_cc = {cc_order(key): filename for key, filename in cfg.cc_model_filenames.items()}
    filename = by_cc.get(cc_order(env.compute_capability))
    if filename is None:
        held = ", ".join(sorted(cfg.cc_model_filenames, key=cc_order))
        raise ModelFileError(f"model {name!r} has no engine for this GPU ({env.gpu}, compute "
                             f"capability {env.compute_capability}): the repository holds engines for "
                             f"compute capability {held} (cc_model_filenames); build one here with "
                             "`attn-export build` and add it with `attn-export repo`")
    return version_dir / filename


def device_plan_problems(cfg, version_dir: Path, spec: ModelSpec | None) -> list[str]:
    """The files ``cc_model_filenames`` names: each must be in the version folder, built for the
    capability it is listed under, and (for a ``tensorrt_plan`` model, given ``spec`` of the
    default plan) have the same inputs, outputs and profile range."""
    from attn_export.runtime.sidecar import read_sidecar
    from attn_export.serve.engine_spec import engine_spec

    problems = []
    for cc, filename in sorted(cfg.cc_model_filenames.items()):
        path = version_dir / filename
        if not path.is_file() or not path.resolve().is_relative_to(version_dir.resolve()):
            problems.append(f"cc_model_filenames[{cc!r}]: no file {filename} in {version_dir}")
            continue
        try:
            sidecar = read_sidecar(path)
            built = sidecar.env.compute_capability if sidecar else ""
            if built and sidecar.hardware_compatibility != "ampere_plus" \
                    and cc_order(built) != cc_order(cc):
                problems.append(f"cc_model_filenames[{cc!r}] = {filename}, an engine built for "
                                f"compute capability {built}")
            if spec is not None and cfg.platform == "tensorrt_plan":
                other = engine_spec(spec.name, path)
                if other.io != spec.io or _limits(other) != _limits(spec):
                    problems.append(f"cc_model_filenames[{cc!r}] = {filename}: its inputs, outputs "
                                    "or profile range differ from the default plan's")
        except ModelFileError as exc:
            problems.append(str(exc))
    return problems
