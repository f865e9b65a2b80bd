"""ONNX -> serialized TensorRT engine (TensorRT 10.x and 11.x), with a JSON sidecar beside it.

:func:`build_engine` is what ``attn-export build`` and ``attn-export BLOCK --engine`` call: it
chooses the precision plan for the installed TensorRT, writes or reuses the float16 / Q/DQ graph,
derives the optimization profile and calls :func:`engine_from_onnx`, which runs the loaders of
:mod:`attn_export.export.trt_build` in order: network from ONNX, config from settings, timing
cache, build, then the engine and its sidecar as one artefact set, then the timing cache saved.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from attn_export.atomic import ArtefactSet
from attn_export.export.precision_plan import PrecisionPlan, plan_precision
from attn_export.export.profiles import InputProfile, build_profile, onnx_input_specs
from attn_export.export.trt_build.build import config_from_settings, network_io, serialized_engine
from attn_export.export.trt_build.graph import (
    engine_path_for,
    export_shapes_near,
    int8_notes,
    prepare_graph,
)
from attn_export.export.trt_build.parse import network_from_onnx
from attn_export.export.trt_build.settings import BuilderSettings, BuildOptions, builder_settings
from attn_export.export.trt_build.sidecar import make_sidecar, write_sidecar
from attn_export.export.trt_build.timing_cache import (
    attach_timing_cache,
    default_timing_cache_path,
    save_timing_cache,
    usable_timing_cache,
)
from attn_export.runtime.jetson import is_jetson
from attn_export.runtime.sidecar import EngineSidecar, RuntimeEnv, sidecar_path
from attn_export.runtime.trt_env import current_env, import_tensorrt
from attn_export.runtime.trt_logger import get_trt_logger

__all__ = ["BuildOptions", "BuildResult", "BuilderSettings", "build_engine", "builder_settings",
           "engine_from_onnx", "engine_path_for"]


@dataclass
class BuildResult:
    engine_path: Path
    sidecar_path: Path
    sidecar: EngineSidecar
    graph_path: Path
    plan: PrecisionPlan
    notes: list[str] = field(default_factory=list)


def engine_from_onnx(
    graph_path: str | Path,
    engine_path: str | Path,
    plan: PrecisionPlan,
    profiles: list[InputProfile],
    settings: BuilderSettings,
    timing_cache: Path | None = None,
    options: BuildOptions | None = None,
    env: RuntimeEnv | None = None,
) -> EngineSidecar:
    """Build ``graph_path`` into ``engine_path`` and write its sidecar; returns the sidecar.

    Raises:
        MissingDependencyError: TensorRT or CUDA memory support is not installed.
        ExportError: the parser or the builder failed (with the node name and op, or TensorRT's
            last errors).
    """
    trt = import_tensorrt()
    graph_path, engine_path = Path(graph_path), Path(engine_path)
    env = env or current_env(trt)
    builder = trt.Builder(get_trt_logger(trt))
    network, _parser = network_from_onnx(trt, builder, settings, graph_path)
    config = config_from_settings(trt, builder, network, settings, profiles)
    cache_seen, cache_used = attach_timing_cache(config, timing_cache)
    plan_bytes, build_time = serialized_engine(trt, builder, network, config, graph_path.name)
    # the engine and its sidecar are one artefact set: both land, or neither (attn_export.atomic)
    with ArtefactSet(engine_path.parent) as txn:
        staged = txn.write(engine_path.name, lambda tmp: tmp.write_bytes(plan_bytes))
        sidecar = make_sidecar(staged, graph_path, plan, env, profiles, settings,
                               network_io(network), build_time, timing_cache,
                               cache_used and bool(cache_seen),
                               options or BuildOptions(precision=plan.precision))
        txn.register(write_sidecar(staged, sidecar).name)
    if timing_cache is not None:  # after the engine set; warns, never raises
        save_timing_cache(config, timing_cache, cache_seen)
    return sidecar


def build_engine(onnx_path: str | Path, options: BuildOptions | None = None,
                 engine_path: str | Path | None = None) -> BuildResult:
    """Plan, prepare the graph, derive the profile and build; what ``attn-export build`` runs.

    Args:
        onnx_path: BLOCK.onnx (or an already converted BLOCK.fp16.onnx / BLOCK.int8.onnx).
        options: see :class:`BuildOptions` (default: an FP32 build).
        engine_path: default BLOCK.PRECISION.engine beside the ONNX.

    Returns:
        :class:`BuildResult` with the engine, its sidecar and the plan used.
    """
    from attn_export.export.check import load_onnx

    onnx_path, options = Path(onnx_path), options or BuildOptions()
    trt = import_tensorrt()  # before any work: a machine without TensorRT fails at once
    plan = plan_precision(options.precision, trt.__version__, options.fp16_mode)
    settings = builder_settings(plan, options, jetson=is_jetson())
    shapes = export_shapes_near(onnx_path)
    profiles = build_profile(onnx_input_specs(load_onnx(onnx_path)), shapes, options.min_shapes,
                             options.opt_shapes, options.max_shapes, options.shape_mode)
    graph = prepare_graph(onnx_path, plan, options, shapes or {p.name: p.opt for p in profiles})
    env = current_env(trt)
    cache = None
    if options.use_timing_cache:
        cache = usable_timing_cache(options.timing_cache or default_timing_cache_path(env),
                                    explicit=options.timing_cache is not None)
    target = Path(engine_path or engine_path_for(onnx_path, plan.precision))
    sidecar = engine_from_onnx(graph, target, plan, profiles, settings, cache, options, env)
    return BuildResult(target, sidecar_path(target), sidecar, graph, plan,
                       [*plan.notes, *int8_notes(graph, plan)])
