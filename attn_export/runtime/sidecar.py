"""The JSON sidecar written beside every engine, and the check that an engine fits this machine.

A TensorRT plan only runs on the TensorRT version and GPU it was built for (unless built version-
or hardware-compatible), and the plan file itself does not say which in a readable way. We record
it in ``BLOCK.PRECISION.engine.json`` next to the engine, never as a header inside the engine file:
a prefixed plan (as some exporters write) no longer loads in ``trtexec --loadEngine`` or DeepStream.

This module is the reader and the compatibility rules (the runtime's side, kept free of heavy
imports so the TensorRT runner reads it on a Jetson); the writer is
:mod:`attn_export.export.trt_build.sidecar`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from attn_export.errors import ModelFileError, ValidationError
from attn_export.runtime.trt_version import TrtVersion

SCHEMA = "attn-export.engine/1"
HARDWARE_LEVELS = ("none", "ampere_plus", "same_compute_capability")


@dataclass(frozen=True)
class RuntimeEnv:
    """Where an engine is built or run: what compatibility depends on.

    Attributes:
        tensorrt: ``trt.__version__`` (``10.3.0.30``).
        gpu / compute_capability: the device name and ``major.minor`` (``8.7`` Orin, ``11.0``
            Thor).
        cuda_runtime: the CUDA runtime version (``12.6``).
        platform: ``Linux aarch64``.
        l4t: the L4T release on a Jetson (``36.4.3``), ``""`` elsewhere, None when not recorded
            (sidecars written before it was).
        jetpack: the JetPack series that L4T release belongs to (``6``, ``7.2``), or ``""``.
    """

    tensorrt: str
    gpu: str
    compute_capability: str
    cuda_runtime: str = ""
    platform: str = ""
    l4t: str | None = None
    jetpack: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class EngineSidecar:
    """Everything known about one engine; serialized as the ``.engine.json`` sidecar.

    Attributes:
        engine: file name (beside the sidecar), sha256 and size of the plan.
        onnx: the graph TensorRT parsed: file name and sha256.
        precision: fp32, fp16 or int8 (the tolerance the engine is validated with).
        plan: :class:`attn_export.export.precision.PrecisionPlan` as a dict.
        built_with: :class:`RuntimeEnv` of the build machine as a dict.
        profiles: one optimization profile: a list of {name, min, opt, max}.
        workspace_bytes: the workspace memory-pool limit (None: TensorRT's default).
        timing_cache: path of the timing cache and whether it held entries before the build.
        version_compatible / hardware_compatibility: the compatibility the plan was built with.
        io: the engine's inputs and outputs: {name, mode, dtype, shape} (-1 = dynamic).
        build_time_s: seconds spent in ``build_serialized_network``.
        created: UTC time of the build, ISO 8601.
    """

    engine: dict
    onnx: dict
    precision: str
    plan: dict
    built_with: dict
    profiles: list[dict]
    workspace_bytes: int | None
    timing_cache: dict = field(default_factory=dict)
    version_compatible: bool = False
    hardware_compatibility: str = "none"
    io: list[dict] = field(default_factory=list)
    build_time_s: float = 0.0
    created: str = ""
    tool: str = ""
    schema: str = SCHEMA

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def env(self) -> RuntimeEnv:
        b = self.built_with
        l4t = b.get("l4t")
        return RuntimeEnv(str(b.get("tensorrt", "")), str(b.get("gpu", "")),
                          str(b.get("compute_capability", "")), str(b.get("cuda_runtime", "")),
                          str(b.get("platform", "")), None if l4t is None else str(l4t),
                          str(b.get("jetpack", "")))


_REQUIRED = ("engine", "onnx", "precision", "plan", "built_with", "profiles", "workspace_bytes")


def sidecar_path(engine_path: str | Path) -> Path:
    """``cbam.fp16.engine`` -> ``cbam.fp16.engine.json``."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def read_sidecar(engine_path: str | Path) -> EngineSidecar | None:
    """The sidecar of ``engine_path``, or None when there is none (an engine built elsewhere).

    Raises:
        ModelFileError: the sidecar exists but is not one of ours (bad JSON, other schema, fields
            missing).
    """
    path = sidecar_path(engine_path)
    if not path.is_file():
        return None
    hint = f"delete it or rebuild the engine with `attn-export build` ({path})"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"engine sidecar {path} is not readable JSON ({exc}); {hint}") \
            from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise ModelFileError(f"engine sidecar {path} has schema {found!r}, expected {SCHEMA!r}; "
                             f"{hint}")
    missing = [n for n in _REQUIRED if n not in data]
    if missing:
        raise ModelFileError(f"engine sidecar {path} lacks {missing}; {hint}")
    known = set(EngineSidecar.__dataclass_fields__)
    return EngineSidecar(**{k: v for k, v in data.items() if k in known})


def _version(text: str) -> TrtVersion | None:
    try:
        return TrtVersion.parse(text)
    except ValidationError:
        return None


def _cc(text: str) -> tuple[int, ...]:
    version = _version(text)
    return version.parts if version else ()


def compatibility_problems(sidecar: EngineSidecar, env: RuntimeEnv,
                           engine_sha256: str | None = None) -> list[str]:
    """Why the engine described by ``sidecar`` cannot run in ``env``; empty when it can.

    Rules: the TensorRT version must equal the build's (a version-compatible engine needs a runtime
    at least as new); the GPU must be the build's model and compute capability, except that
    ``same_compute_capability`` engines accept any GPU of that capability and ``ampere_plus``
    engines any GPU of capability 8.0 or newer; the CUDA major version must be the build's (a
    TensorRT built for CUDA 12 and one for CUDA 13 are different libraries); on a Jetson the L4T
    release (major.minor) must be the build's, since each JetPack ships its own TensorRT, CUDA and
    GPU driver. A given ``engine_sha256`` must match the sidecar's, or the sidecar describes
    another build. Fields an older sidecar lacks are not checked.
    """
    built = sidecar.env
    problems = []
    recorded = sidecar.engine.get("sha256")
    if engine_sha256 and recorded and engine_sha256 != recorded:
        problems.append("the sidecar describes another build of this engine (sha256 differs): "
                        "the engine file was replaced without its sidecar")
    problems += _tensorrt_problems(sidecar, built, env)
    problems += _platform_problems(built, env)
    problems += _device_problems(sidecar.hardware_compatibility, built, env)
    return problems


def _tensorrt_problems(sidecar: EngineSidecar, built: RuntimeEnv, env: RuntimeEnv) -> list[str]:
    ours, theirs = _version(env.tensorrt), _version(built.tensorrt)
    if ours is None or theirs is None:
        return [f"built with TensorRT {built.tensorrt or '?'}, this machine has "
                f"{env.tensorrt or '?'}"]
    if sidecar.version_compatible:
        if not ours.at_least(theirs):
            return [f"version-compatible engine built with TensorRT {built.tensorrt} needs a "
                    f"runtime >= {built.tensorrt}, this machine has {env.tensorrt}"]
        return []
    if not theirs.same_release(ours):
        return [f"built with TensorRT {built.tensorrt}, this machine has {env.tensorrt}"]
    return []


def _platform_problems(built: RuntimeEnv, env: RuntimeEnv) -> list[str]:
    problems = []
    ours, theirs = _version(env.cuda_runtime), _version(built.cuda_runtime)
    if ours and theirs and ours.major != theirs.major:
        problems.append(f"built with CUDA {built.cuda_runtime}, this machine has CUDA "
                        f"{env.cuda_runtime}")
    if built.l4t is not None and env.l4t is not None \
            and _cc(built.l4t)[:2] != _cc(env.l4t)[:2]:
        problems.append(f"built on {_describe_l4t(built)}, this machine is {_describe_l4t(env)}")
    return problems


def _describe_l4t(env: RuntimeEnv) -> str:
    if not env.l4t:
        return "not a Jetson"
    return f"JetPack {env.jetpack} (L4T r{env.l4t})" if env.jetpack else f"L4T r{env.l4t}"


def _device_problems(level: str, built: RuntimeEnv, env: RuntimeEnv) -> list[str]:
    if level == "ampere_plus":
        if _cc(env.compute_capability) < (8, 0):
            return [f"ampere_plus engine needs compute capability >= 8.0, this GPU ({env.gpu}) "
                    f"has {env.compute_capability}"]
        return []
    if _cc(env.compute_capability) != _cc(built.compute_capability):
        return [f"built for compute capability {built.compute_capability} ({built.gpu}), this "
                f"GPU ({env.gpu}) has {env.compute_capability}"]
    if level == "none" and built.gpu and env.gpu and built.gpu != env.gpu:
        return [f"built on {built.gpu}, this GPU is {env.gpu} (same compute capability; tactics "
                "were timed on the other GPU): rebuild here, or build with "
                "--hardware-compatibility same_compute_capability"]
    return []


def check_compatible(engine_path: str | Path, sidecar: EngineSidecar, env: RuntimeEnv,
                     engine_sha256: str | None = None) -> None:
    """Raise a ModelFileError (one line) naming every reason the engine does not fit this
    machine and the command that rebuilds it here."""
    problems = compatibility_problems(sidecar, env, engine_sha256)
    if problems:
        raise ModelFileError(
            f"engine {engine_path} does not fit this machine: " + "; ".join(problems)
            + f". Rebuild it here: attn-export build {sidecar.onnx.get('file', 'MODEL.onnx')} "
            f"--precision {sidecar.precision}"
        )
