"""The ``.engine.json`` sidecar of a freshly built engine: what was built, from what, where.

The reader and the compatibility rules are the runtime's (:mod:`attn_export.runtime.sidecar`);
this is the writer. ``built_with`` records TensorRT, the GPU and its compute capability, CUDA,
the platform and, on a Jetson, the L4T release and JetPack series, which the runner checks before
it deserialises the plan.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from attn_export.atomic import sha256_file, write_text_atomic
from attn_export.export.precision_plan import PrecisionPlan
from attn_export.export.profiles import InputProfile
from attn_export.export.trt_build.settings import BuilderSettings, BuildOptions
from attn_export.runtime.sidecar import EngineSidecar, RuntimeEnv, sidecar_path


def write_sidecar(engine_path: str | Path, sidecar: EngineSidecar) -> Path:
    """Write the sidecar of ``engine_path`` atomically; returns its path."""
    text = json.dumps(sidecar.to_dict(), indent=2, sort_keys=False) + "\n"
    return write_text_atomic(sidecar_path(engine_path), text)


def make_sidecar(engine_path: Path, graph_path: Path, plan: PrecisionPlan, env: RuntimeEnv,
                 profiles: list[InputProfile], settings: BuilderSettings, io: list[dict],
                 build_time: float, timing_cache: Path | None, cache_had_entries: bool,
                 options: BuildOptions) -> EngineSidecar:
    """The sidecar of a freshly written engine (pure: every input is given)."""
    from attn_export import __version__

    return EngineSidecar(
        engine={"file": engine_path.name, "sha256": sha256_file(engine_path),
                "bytes": engine_path.stat().st_size},
        onnx={"file": graph_path.name, "sha256": sha256_file(graph_path)},
        precision=plan.precision,
        plan=plan.to_dict() | {"network_flags": list(settings.network_flags),
                               "builder_flags": list(settings.builder_flags)},
        built_with=env.to_dict(),
        profiles=[p.to_dict() for p in profiles],
        workspace_bytes=settings.workspace_bytes,
        timing_cache={"path": str(timing_cache) if timing_cache else None,
                      "had_entries": cache_had_entries},
        version_compatible=options.version_compatible,
        hardware_compatibility=options.hardware_compatibility,
        io=io,
        build_time_s=round(build_time, 3),
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        tool=f"attn-export {__version__}",
    )
