"""ONNX -> serialized TensorRT engine (TensorRT 10.x and 11.x), with a JSON sidecar beside it.

:func:`build_engine` is what ``attn-export build`` and ``attn-export BLOCK --engine`` call: it
chooses the precision plan for the installed TensorRT (``precision_plan.plan_precision``), writes or
reuses the float16 / Q/DQ graph, derives the optimization profile (``profiles.build_profile``) and
calls :func:`engine_from_onnx`, the only part that talks to TensorRT: builder, network, ONNX
parser, builder config (workspace, flags, compatibility, profile, timing cache), serialization.
The engine and its ``.engine.json`` sidecar are written atomically; the timing cache is loaded
before and merged and saved after every build, so later builds reuse the measured tactics.

Every decision that does not need TensorRT (:func:`builder_settings`, the profile, the plan, the
timing cache path, the sidecar) is plain Python, tested on machines without a GPU.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from attn_export.atomic import ArtefactSet, write_atomic
from attn_export.errors import ExportError, ValidationError
from attn_export.export.precision import graph_kind
from attn_export.export.precision_plan import PrecisionPlan, plan_precision
from attn_export.export.profiles import InputProfile, build_profile, onnx_input_specs
from attn_export.export.sidecar import (
    HARDWARE_LEVELS,
    EngineSidecar,
    RuntimeEnv,
    sha256_file,
    sidecar_path,
    write_sidecar,
)

DEFAULT_WORKSPACE_MIB = 1024
"""Workspace pool limit: TensorRT's default is the whole device memory, which on a Jetson is the
memory the CPU shares; 1 GiB is ample for attention blocks and leaves the rest to the app."""

PINNED_LAYER_TYPES = ("REDUCE", "NORMALIZATION")
"""Layers pinned to FP32 under ``--fp16-mode flag`` (weak typing), as the float16 ONNX keeps the
reductions and norms in FP32 for ``typed`` builds (F1, H9)."""


@dataclass(frozen=True)
class BuildOptions:
    """What the user asked for (``attn-export build`` flags).

    Attributes:
        precision: fp32, fp16 or int8.
        fp16_mode: ``typed`` (float16 ONNX, strongly typed) or ``flag`` (BuilderFlag.FP16, 10.x).
        workspace_mib: workspace memory-pool limit in MiB; None keeps TensorRT's default.
        min_shapes / opt_shapes / max_shapes: profile overrides (``1x64x32x32`` or
            ``input:1x64x32x32``).
        shape_mode: when given, the graph's dynamic dims must be this mode's.
        timing_cache: cache file; None -> a per-TensorRT-version, per-GPU file in the user cache.
        use_timing_cache: False builds without loading or saving a cache.
        version_compatible: BuilderFlag.VERSION_COMPATIBLE (runs on later TensorRT versions).
        exclude_lean_runtime: BuilderFlag.EXCLUDE_LEAN_RUNTIME (smaller version-compatible plan).
        hardware_compatibility: none, ampere_plus, same_compute_capability.
        optimization_level: builder optimization level 0..5 (TensorRT default 3).
        calib_data: INT8 calibration folder (.npy / .npz).
        quantize_gates: quantize sigmoid gates too (F2 says not to).
    """

    precision: str = "fp32"
    fp16_mode: str = "typed"
    workspace_mib: int | None = DEFAULT_WORKSPACE_MIB
    min_shapes: str | None = None
    opt_shapes: str | None = None
    max_shapes: str | None = None
    shape_mode: str | None = None
    timing_cache: Path | None = None
    use_timing_cache: bool = True
    version_compatible: bool = False
    exclude_lean_runtime: bool = False
    hardware_compatibility: str = "none"
    optimization_level: int | None = None
    calib_data: Path | None = None
    quantize_gates: bool = False


@dataclass(frozen=True)
class BuilderSettings:
    """The TensorRT calls a build makes, by enum member name, decided without TensorRT.

    Attributes:
        network_flags: ``trt.NetworkDefinitionCreationFlag`` members (STRONGLY_TYPED on 10.x;
            none on 11.x, where every network is strongly typed and the flag is deprecated).
        builder_flags / cleared_flags: ``trt.BuilderFlag`` members to set / clear.
        workspace_bytes: ``set_memory_pool_limit(MemoryPoolType.WORKSPACE, ...)``, or None.
        hardware_compatibility_level: ``trt.HardwareCompatibilityLevel`` member, or None.
        pin_fp32_layers: pin reduction and normalisation layers to FP32 (weak typing only).
        optimization_level: ``builder_optimization_level``, or None.
    """

    network_flags: tuple[str, ...] = ()
    builder_flags: tuple[str, ...] = ()
    cleared_flags: tuple[str, ...] = ()
    workspace_bytes: int | None = None
    hardware_compatibility_level: str | None = None
    pin_fp32_layers: bool = False
    optimization_level: int | None = None


def builder_settings(plan: PrecisionPlan, options: BuildOptions, jetson: bool = False
                     ) -> BuilderSettings:
    """Translate a precision plan and the build options into TensorRT calls; refuse bad mixes."""
    if options.hardware_compatibility not in HARDWARE_LEVELS:
        raise ValidationError(f"unknown hardware compatibility {options.hardware_compatibility!r};"
                              f" expected one of {', '.join(HARDWARE_LEVELS)}")
    if options.hardware_compatibility != "none" and jetson:
        raise ValidationError("hardware-compatible engines are not supported on JetPack; build "
                              "with --hardware-compatibility none on each Jetson model")
    if options.exclude_lean_runtime and not options.version_compatible:
        raise ValidationError("--exclude-lean-runtime only applies to version-compatible engines;"
                              " add --version-compatible")
    if options.workspace_mib is not None and options.workspace_mib <= 0:
        raise ValidationError(f"--workspace must be a positive number of MiB, got "
                              f"{options.workspace_mib}")
    if options.optimization_level is not None and not 0 <= options.optimization_level <= 5:
        raise ValidationError(f"--optimization-level must be 0..5, got "
                              f"{options.optimization_level}")
    flags = list(plan.builder_flags)
    if options.version_compatible:
        flags.append("VERSION_COMPATIBLE")
    if options.exclude_lean_runtime:
        flags.append("EXCLUDE_LEAN_RUNTIME")
    if plan.pin_fp32_layers and (plan.strongly_typed or plan.trt_version[0] >= 11):
        # Invariant: per-layer precision (ILayer.precision, set_output_type) is weak typing; 11.x
        # bindings lack both and strongly typed 10.x networks reject them at build time.
        raise ValidationError(f"internal: the {plan.precision} plan for TensorRT "
                              f"{'.'.join(map(str, plan.trt_version))} pins layer precisions, "
                              "which only weakly typed 10.x networks accept")
    level = options.hardware_compatibility
    return BuilderSettings(
        network_flags=("STRONGLY_TYPED",) if plan.strongly_typed and plan.trt_version[0] == 10
        else (),
        builder_flags=tuple(flags),
        cleared_flags=plan.cleared_flags,
        workspace_bytes=None if options.workspace_mib is None else options.workspace_mib << 20,
        hardware_compatibility_level=None if level == "none" else level.upper(),
        pin_fp32_layers=plan.pin_fp32_layers,
        optimization_level=options.optimization_level,
    )


def layers_to_pin(layer_types: Sequence[str]) -> list[int]:
    """Indices of the layers ``--fp16-mode flag`` pins to FP32 (by ``trt.LayerType`` name)."""
    return [i for i, kind in enumerate(layer_types) if kind in PINNED_LAYER_TYPES]


def is_jetson() -> bool:
    """A Jetson (L4T): JetPack's TensorRT lacks hardware compatibility."""
    return Path("/etc/nv_tegra_release").exists() or "tegra" in platform.release().lower()


# --------------------------------------------------------------------------------------------------
# Timing cache
# --------------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """``$ATTN_EXPORT_CACHE``, else ``$XDG_CACHE_HOME/attn-export``, else ``~/.cache/attn-export``."""
    if os.environ.get("ATTN_EXPORT_CACHE"):
        return Path(os.environ["ATTN_EXPORT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "attn-export"


def default_timing_cache_path(env: RuntimeEnv, directory: Path | None = None) -> Path:
    """One cache per TensorRT version and GPU: tactic timings do not carry across either."""
    gpu = re.sub(r"[^A-Za-z0-9]+", "-", env.gpu).strip("-").lower() or "gpu"
    cc = env.compute_capability.replace(".", "")
    return (directory or cache_dir()) / f"trt-{env.tensorrt}-{gpu}-sm{cc}.timing-cache"


def read_timing_cache(path: Path) -> bytes:
    """The cache bytes, or b"" when there is no cache yet (or it cannot be read: warned)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""
    except OSError as exc:
        warnings.warn(f"cannot read timing cache {path} ({exc.strerror}); building without it",
                      UserWarning, stacklevel=2)
        return b""


def write_timing_cache(path: Path, data: bytes) -> None:
    """Save atomically: a build killed mid-write never leaves a truncated cache behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda tmp: tmp.write_bytes(data))


# --------------------------------------------------------------------------------------------------
# Parser errors with the node's name and op
# --------------------------------------------------------------------------------------------------


def describe_parser_error(nodes: Sequence[tuple[str, str]], index: int, desc: str,
                          node_name: str = "", node_op: str = "") -> str:
    """One parser error as ``node NAME (OP): DESC``; name and op from the ONNX graph when the
    TensorRT binding does not give them (``ParserError.node_name`` exists from TensorRT 10)."""
    if not node_name and 0 <= index < len(nodes):
        node_name = nodes[index][0]
    if not node_op and 0 <= index < len(nodes):
        node_op = nodes[index][1]
    if not node_name and not node_op:
        return desc.strip()
    return f"node {node_name or f'#{index}'} ({node_op or '?'}): {desc.strip()}"


def _parser_errors(parser, graph_path: Path) -> list[str]:
    import onnx

    model = onnx.load(str(graph_path), load_external_data=False)
    nodes = [(n.name, n.op_type) for n in model.graph.node]
    messages = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        name = err.node_name() if hasattr(err, "node_name") else ""
        op = err.node_operator() if hasattr(err, "node_operator") else ""
        messages.append(describe_parser_error(nodes, int(err.node()), str(err.desc()), name, op))
    return messages


# --------------------------------------------------------------------------------------------------
# The TensorRT build
# --------------------------------------------------------------------------------------------------


@dataclass
class BuildResult:
    engine_path: Path
    sidecar_path: Path
    sidecar: EngineSidecar
    graph_path: Path
    plan: PrecisionPlan
    notes: list[str] = field(default_factory=list)


def _network(trt, builder, settings: BuilderSettings, graph_path: Path, logger):
    flags = 0
    for name in settings.network_flags:
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(graph_path)):
        errors = _parser_errors(parser, graph_path) or logger.errors() or ["no reason given"]
        raise ExportError(f"TensorRT {trt.__version__} cannot parse {graph_path.name}: "
                          + "; ".join(errors[:5]))
    return network, parser


def _config(trt, builder, network, settings: BuilderSettings, profiles: list[InputProfile]):
    config = builder.create_builder_config()
    if settings.workspace_bytes is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_bytes)
    for name in settings.builder_flags:
        if not hasattr(trt.BuilderFlag, name):
            raise ValidationError(f"TensorRT {trt.__version__} has no BuilderFlag.{name}; the "
                                  "plan was made for another version (pass --trt-version)")
        config.set_flag(getattr(trt.BuilderFlag, name))
    for name in settings.cleared_flags:
        if hasattr(trt.BuilderFlag, name):
            config.clear_flag(getattr(trt.BuilderFlag, name))
    if settings.hardware_compatibility_level is not None:
        level = getattr(trt.HardwareCompatibilityLevel, settings.hardware_compatibility_level,
                        None)
        if level is None:
            raise ValidationError(f"TensorRT {trt.__version__} lacks HardwareCompatibilityLevel."
                                  f"{settings.hardware_compatibility_level}")
        config.hardware_compatibility_level = level
    if settings.optimization_level is not None:
        config.builder_optimization_level = settings.optimization_level
    dynamic = any(d < 0 for i in range(network.num_inputs) for d in network.get_input(i).shape)
    if dynamic:  # a static network needs (and takes) no profile
        profile = builder.create_optimization_profile()
        for p in profiles:
            profile.set_shape(p.name, p.min, p.opt, p.max)
        if config.add_optimization_profile(profile) < 0:  # -1: TensorRT found it invalid
            raise ValidationError(
                f"TensorRT {trt.__version__} rejected the optimization profile "
                f"({'; '.join(p.describe() for p in profiles)}): every dynamic input needs "
                "min <= opt <= max of its rank; fix --min-shape/--opt-shape/--max-shape")
    if settings.pin_fp32_layers:
        _pin_fp32_layers(trt, network)
    return config


def _pin_fp32_layers(trt, network) -> None:
    """Weak typing (10.x ``--fp16-mode flag``): reductions and norms stay FP32. Never reached on
    11.x (:func:`builder_settings` refuses such a plan); checked again here because the 11.x
    bindings have no ``ILayer.precision``, which would otherwise surface as an AttributeError."""
    if not hasattr(trt.ILayer, "precision") or not hasattr(trt.ILayer, "set_output_type"):
        raise ExportError(f"TensorRT {trt.__version__} has no per-layer precision (weak typing "
                          "was removed in 11.x); build with --fp16-mode typed")
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    for i in layers_to_pin([layer.type.name for layer in layers]):
        layers[i].precision = trt.float32
        for j in range(layers[i].num_outputs):
            layers[i].set_output_type(j, trt.float32)


def _network_io(network) -> list[dict]:
    io = []
    for mode, count, get in (("input", network.num_inputs, network.get_input),
                             ("output", network.num_outputs, network.get_output)):
        for i in range(count):
            tensor = get(i)
            io.append({"name": tensor.name, "mode": mode, "dtype": tensor.dtype.name,
                       "shape": [int(d) for d in tensor.shape]})
    return io


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
    from attn_export.runtime.tensorrt_runner import current_env, import_tensorrt, make_logger

    trt = import_tensorrt()
    graph_path, engine_path = Path(graph_path), Path(engine_path)
    env = env or current_env(trt)
    logger = make_logger(trt)
    builder = trt.Builder(logger)
    network, _parser = _network(trt, builder, settings, graph_path, logger)
    config = _config(trt, builder, network, settings, profiles)
    cache_seen, cache_used = _attach_timing_cache(config, timing_cache)
    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    build_time = time.perf_counter() - start
    if serialized is None:
        raise ExportError(f"TensorRT {trt.__version__} failed to build {graph_path.name}: "
                          + ("; ".join(logger.errors()[-3:]) or "no reason given"))
    # the engine and its sidecar are one artefact set: both land, or neither (attn_export.atomic)
    with ArtefactSet(engine_path.parent) as txn:
        staged = txn.write(engine_path.name, lambda tmp: tmp.write_bytes(bytes(serialized)))
        sidecar = make_sidecar(staged, graph_path, plan, env, profiles, settings,
                               _network_io(network), build_time, timing_cache,
                               cache_used and bool(cache_seen),
                               options or BuildOptions(precision=plan.precision))
        txn.register(write_sidecar(staged, sidecar).name)
    if timing_cache is not None:  # after the engine set: a cache problem never orphans an engine
        _save_timing_cache(config, timing_cache, cache_seen)
    return sidecar


def _attach_timing_cache(config, path: Path | None) -> tuple[bytes, bool]:
    """Load ``path`` into the config's timing cache; returns the bytes read and whether TensorRT
    took them. A cache TensorRT refuses (another device or version) is replaced by an empty one,
    so the build still records its tactics and the refused file is overwritten with a cache this
    machine can use."""
    if path is None:
        return b"", False
    loaded = read_timing_cache(path)
    if config.set_timing_cache(config.create_timing_cache(loaded), ignore_mismatch=False):
        return loaded, True
    warnings.warn(f"timing cache {path} was made for another device or TensorRT version; "
                  "building without it (it is replaced by this build's cache)", UserWarning,
                  stacklevel=3)
    if not config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False):
        warnings.warn("TensorRT refused an empty timing cache; this build's tactics are not "
                      "saved", UserWarning, stacklevel=3)
    return loaded, False


def _save_timing_cache(config, path: Path, seen: bytes) -> None:
    """Merge what another build saved meanwhile (``ITimingCache.combine``), then save. A cache
    from another device is not merged (``ignore_mismatch=False``): TensorRT warns that mixing
    device properties can give functional and performance bugs. ``get_timing_cache`` returns None
    when no cache is attached: then nothing is saved."""
    cache = config.get_timing_cache()
    if cache is None:
        return
    on_disk = read_timing_cache(path)
    if on_disk and on_disk != seen:
        if not cache.combine(config.create_timing_cache(on_disk), ignore_mismatch=False):
            warnings.warn(f"timing cache {path} changed during the build and cannot be merged "
                          "(another device or TensorRT version); it is replaced by this build's "
                          "cache", UserWarning, stacklevel=3)
    write_timing_cache(path, bytes(cache.serialize()))


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


# --------------------------------------------------------------------------------------------------
# The whole job: plan, graph, profile, build
# --------------------------------------------------------------------------------------------------


def export_shapes_near(onnx_path: Path) -> dict[str, tuple[int, ...]]:
    """The export shape recorded beside an exported ONNX (``report.json`` of the export folder),
    keyed by the graph's input name; empty when there is no report."""
    report = onnx_path.parent / "report.json"
    try:
        data = json.loads(report.read_text())
    except (OSError, ValueError):
        return {}
    shape = data.get("input_shape")
    return {"input": tuple(int(d) for d in shape)} if isinstance(shape, list) else {}


def engine_path_for(onnx_path: Path, precision: str) -> Path:
    """``exports/cbam/cbam.onnx`` (or ``cbam.fp16.onnx``) -> ``exports/cbam/cbam.fp16.engine``."""
    stem = onnx_path.name.removesuffix(".onnx")
    for suffix in (".fp16", ".int8", ".fp32"):
        stem = stem.removesuffix(suffix)
    return onnx_path.with_name(f"{stem}.{precision}.engine")


def prepare_graph(onnx_path: Path, plan: PrecisionPlan, options: BuildOptions,
                  shapes: dict[str, tuple[int, ...]]) -> Path:
    """The ONNX file the plan parses: the given one when it already has the plan's precision;
    BLOCK.fp16.onnx / BLOCK.int8.onnx when the export wrote (and validated) it after BLOCK.onnx
    (INT8 is re-quantized when --calib-data is given); else written now from the float32 graph."""
    from attn_export.export.check import load_onnx
    from attn_export.export.precision import write_fp16_onnx, write_int8_onnx
    from attn_export.export.precision_plan import precision_onnx_path

    kind = graph_kind(load_onnx(onnx_path))
    if kind == plan.graph:
        return onnx_path
    if kind != "fp32":
        raise ValidationError(f"{onnx_path.name} is a {kind} graph but the {plan.precision} plan "
                              f"parses a {plan.graph} graph; pass the float32 BLOCK.onnx")
    target = precision_onnx_path(onnx_path, plan.precision)
    fresh = target.is_file() and target.stat().st_mtime >= onnx_path.stat().st_mtime
    if fresh and (plan.graph == "fp16" or options.calib_data is None) \
            and graph_kind(load_onnx(target)) == plan.graph:
        return target
    if plan.graph == "fp16":
        return write_fp16_onnx(onnx_path, target, _golden_inputs(onnx_path)).path  # type: ignore
    write_int8_onnx(onnx_path, target, options.calib_data, shapes,
                    quantize_gates=options.quantize_gates)
    return target


def _golden_inputs(onnx_path: Path) -> list | None:
    """The export's golden inputs (BLOCK.golden.npz beside BLOCK.onnx): the FP16 range-check data
    the export itself used, so a rebuilt float16 graph is the one validated at export."""
    from attn_export.errors import ModelFileError
    from attn_export.runtime.golden import load_golden

    golden = onnx_path.with_name(f"{onnx_path.name.split('.')[0]}.golden.npz")
    try:
        return [case.inputs for case in load_golden(golden).cases] if golden.is_file() else None
    except ModelFileError:
        return None


def build_engine(onnx_path: str | Path, options: BuildOptions = BuildOptions(),
                 engine_path: str | Path | None = None) -> BuildResult:
    """Plan, prepare the graph, derive the profile and build; what ``attn-export build`` runs.

    Args:
        onnx_path: BLOCK.onnx (or an already converted BLOCK.fp16.onnx / BLOCK.int8.onnx).
        options: see :class:`BuildOptions`.
        engine_path: default BLOCK.PRECISION.engine beside the ONNX.

    Returns:
        :class:`BuildResult` with the engine, its sidecar and the plan used.
    """
    from attn_export.export.check import load_onnx
    from attn_export.runtime.tensorrt_runner import current_env, import_tensorrt

    onnx_path = Path(onnx_path)
    trt = import_tensorrt()  # before any work: a machine without TensorRT fails at once
    plan = plan_precision(options.precision, trt.__version__, options.fp16_mode)
    settings = builder_settings(plan, options, jetson=is_jetson())
    shapes = export_shapes_near(onnx_path)
    inputs = onnx_input_specs(load_onnx(onnx_path))
    profiles = build_profile(inputs, shapes, options.min_shapes, options.opt_shapes,
                             options.max_shapes, options.shape_mode)
    graph = prepare_graph(onnx_path, plan, options,
                          shapes or {p.name: p.opt for p in profiles})
    env = current_env(trt)
    cache = None
    if options.use_timing_cache:
        cache = options.timing_cache or default_timing_cache_path(env)
    target = Path(engine_path or engine_path_for(onnx_path, plan.precision))
    sidecar = engine_from_onnx(graph, target, plan, profiles, settings, cache, options, env)
    return BuildResult(target, sidecar_path(target), sidecar, graph, plan,
                       [*plan.notes, *_int8_notes(graph, plan)])


def _int8_notes(graph: Path, plan: PrecisionPlan) -> list[str]:
    """An INT8 engine of a Q/DQ graph that quantizes nothing is a float engine: say so."""
    if plan.graph != "qdq":
        return []
    from attn_export.export.check import load_onnx
    from attn_export.export.macs import quantized_nodes

    if quantized_nodes(load_onnx(graph)):
        return []
    message = (f"{graph.name} quantizes nothing (every weighted op stays float, F2): this INT8 "
               "engine computes in float; build --precision fp16 instead")
    warnings.warn(message, UserWarning, stacklevel=3)
    return [message]
