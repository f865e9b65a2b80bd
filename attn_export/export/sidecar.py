"""The JSON sidecar written beside every engine, and the check that an engine fits this machine.

A TensorRT plan only runs on the TensorRT version and GPU it was built for (unless built version-
or hardware-compatible), and the plan file itself does not say which in a readable way. We record
it in ``BLOCK.PRECISION.engine.json`` next to the engine, never as a header inside the engine file:
a prefixed plan (as some exporters write) no longer loads in ``trtexec --loadEngine`` or DeepStream.

Kept free of heavy imports (json and hashlib only) so the TensorRT runner can read it on a Jetson.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from attn_export.atomic import write_text_atomic
from attn_export.errors import ModelFileError

SCHEMA = "attn-export.engine/1"
HARDWARE_LEVELS = ("none", "ampere_plus", "same_compute_capability")


@dataclass(frozen=True)
class RuntimeEnv:
    """Where an engine is built or run: what compatibility depends on."""

    tensorrt: str
    gpu: str
    compute_capability: str
    cuda_runtime: str = ""
    platform: str = ""

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
        return RuntimeEnv(str(b.get("tensorrt", "")), str(b.get("gpu", "")),
                          str(b.get("compute_capability", "")), str(b.get("cuda_runtime", "")),
                          str(b.get("platform", "")))


_REQUIRED = ("engine", "onnx", "precision", "plan", "built_with", "profiles", "workspace_bytes")


def sidecar_path(engine_path: str | Path) -> Path:
    """``cbam.fp16.engine`` -> ``cbam.fp16.engine.json``."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_sidecar(engine_path: str | Path, sidecar: EngineSidecar) -> Path:
    """Write the sidecar of ``engine_path`` atomically; returns its path."""
    text = json.dumps(sidecar.to_dict(), indent=2, sort_keys=False) + "\n"
    return write_text_atomic(sidecar_path(engine_path), text)


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


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version))


def _same_version(built: str, running: str) -> bool:
    """Equal on every component both strings give (``10.3`` matches ``10.3.0.30``)."""
    a, b = _version_tuple(built), _version_tuple(running)
    n = min(len(a), len(b))
    return n > 0 and a[:n] == b[:n]


def _cc_tuple(cc: str) -> tuple[int, ...]:
    return _version_tuple(cc)


def compatibility_problems(sidecar: EngineSidecar, env: RuntimeEnv,
                           engine_sha256: str | None = None) -> list[str]:
    """Why the engine described by ``sidecar`` cannot run in ``env``; empty when it can.

    Rules: the TensorRT version must equal the build's (a version-compatible engine needs a runtime
    at least as new); the GPU must be the build's model and compute capability, except that
    ``same_compute_capability`` engines accept any GPU of that capability and ``ampere_plus``
    engines any GPU of capability 8.0 or newer. A given ``engine_sha256`` must match the
    sidecar's, or the sidecar describes another build.
    """
    built = sidecar.env
    problems = []
    recorded = sidecar.engine.get("sha256")
    if engine_sha256 and recorded and engine_sha256 != recorded:
        problems.append("the sidecar describes another build of this engine (sha256 differs): "
                        "the engine file was replaced without its sidecar")
    if sidecar.version_compatible:
        if _version_tuple(env.tensorrt) < _version_tuple(built.tensorrt):
            problems.append(f"version-compatible engine built with TensorRT {built.tensorrt} needs "
                            f"a runtime >= {built.tensorrt}, this machine has {env.tensorrt}")
    elif not _same_version(built.tensorrt, env.tensorrt):
        problems.append(f"built with TensorRT {built.tensorrt}, this machine has {env.tensorrt}")
    level = sidecar.hardware_compatibility
    if level == "ampere_plus":
        if _cc_tuple(env.compute_capability) < (8, 0):
            problems.append(f"ampere_plus engine needs compute capability >= 8.0, this GPU "
                            f"({env.gpu}) has {env.compute_capability}")
    elif _cc_tuple(env.compute_capability) != _cc_tuple(built.compute_capability):
        problems.append(f"built for compute capability {built.compute_capability} "
                        f"({built.gpu}), this GPU ({env.gpu}) has {env.compute_capability}")
    elif level == "none" and built.gpu and env.gpu and built.gpu != env.gpu:
        problems.append(f"built on {built.gpu}, this GPU is {env.gpu} (same compute capability; "
                        "tactics were timed on the other GPU): rebuild here, or build with "
                        "--hardware-compatibility same_compute_capability")
    return problems


def check_compatible(engine_path: str | Path, sidecar: EngineSidecar, env: RuntimeEnv,
                     engine_sha256: str | None = None) -> None:
    """Raise a ModelFileError listing every reason the engine does not fit this machine."""
    problems = compatibility_problems(sidecar, env, engine_sha256)
    if problems:
        raise ModelFileError(
            f"engine {engine_path} does not fit this machine: " + "; ".join(problems)
            + f". Rebuild it here: attn-export build {sidecar.onnx.get('file', 'MODEL.onnx')} "
            f"--precision {sidecar.precision}"
        )
