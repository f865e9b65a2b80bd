"""What a TensorRT build is asked for and the calls it makes, decided without TensorRT.

:class:`BuildOptions` is what the user asked (``attn-export build`` flags); :func:`builder_settings`
turns it and the precision plan into :class:`BuilderSettings`, the TensorRT calls by enum member
name, and refuses bad mixes before any TensorRT object exists. Plain Python, tested without a GPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from attn_export.errors import ValidationError
from attn_export.export.precision_plan import PrecisionPlan
from attn_export.runtime.sidecar import HARDWARE_LEVELS

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
    if plan.pin_fp32_layers and (plan.strongly_typed or plan.trt_version.major >= 11):
        # Invariant: per-layer precision (ILayer.precision, set_output_type) is weak typing; 11.x
        # bindings lack both and strongly typed 10.x networks reject them at build time.
        raise ValidationError(f"internal: the {plan.precision} plan for TensorRT "
                              f"{plan.trt_version} pins layer precisions, "
                              "which only weakly typed 10.x networks accept")
    level = options.hardware_compatibility
    return BuilderSettings(
        network_flags=("STRONGLY_TYPED",) if plan.strongly_typed and plan.trt_version.major == 10
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
