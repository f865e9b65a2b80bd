"""Network and builder config -> serialized engine (Polygraphy's ``engine_bytes_from_network``).

:func:`config_from_settings` applies :class:`~attn_export.export.trt_build.settings.BuilderSettings`
to a ``trt.IBuilderConfig``; :func:`serialized_engine` builds, with TensorRT's own reason quoted
when it fails (captured from the process logger for this build only).
"""

from __future__ import annotations

import time

from attn_export.errors import ExportError, ValidationError
from attn_export.export.profiles import InputProfile
from attn_export.export.trt_build.settings import BuilderSettings, layers_to_pin
from attn_export.runtime.trt_logger import capture_log


def config_from_settings(trt, builder, network, settings: BuilderSettings,
                         profiles: list[InputProfile]):
    """The builder config the settings describe: workspace, flags, compatibility, optimization
    level, the profile (dynamic networks only) and, for weak typing, FP32-pinned layers.

    Raises:
        ValidationError: this TensorRT lacks a flag or level the plan names, or refuses the
            profile.
    """
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
        pin_fp32_layers(trt, network)
    return config


def pin_fp32_layers(trt, network) -> None:
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


def network_io(network) -> list[dict]:
    io = []
    for mode, count, get in (("input", network.num_inputs, network.get_input),
                             ("output", network.num_outputs, network.get_output)):
        for i in range(count):
            tensor = get(i)
            io.append({"name": tensor.name, "mode": mode, "dtype": tensor.dtype.name,
                       "shape": [int(d) for d in tensor.shape]})
    return io


def serialized_engine(trt, builder, network, config, name: str) -> tuple[bytes, float]:
    """``build_serialized_network``; returns the plan bytes and the seconds it took.

    Raises:
        ExportError: the builder gave no engine (with TensorRT's last errors).
    """
    start = time.perf_counter()
    with capture_log(trt) as log:
        serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - start
    if serialized is None:
        raise ExportError(f"TensorRT {trt.__version__} failed to build {name}: {log.reason(3)}")
    return bytes(serialized), seconds
