"""config.pbtxt: generated from a model's real I/O and profiles, parsed back into tritonclient's
``ModelConfig`` protobuf and checked the way Triton checks it at load time.

The most reported Triton + TensorRT load failure is ``max_batch_size`` disagreeing with the
engine's optimization profiles. Triton's TensorRT backend takes the engine's max batch as the
minimum over its (non-shape) inputs of the profile's ``max[0]`` (profile 0 unless the instance
group names others) and refuses a config asking for more; a batch dim the engine fixes means max
batch 0. We apply the same rule when generating, and refuse at generation what Triton would
refuse at load, quoting its reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from attn_export.errors import MissingDependencyError, ModelFileError
from attn_export.serve.dtypes import config_dtype, protocol_dtype
from attn_export.serve.model_io import ModelIO

PLATFORMS = {"onnxruntime_onnx": "model.onnx", "tensorrt_plan": "model.plan"}
"""Triton platform -> the file name its backend loads from the version folder."""

DEFAULT_MAX_BATCH = 8
"""max_batch_size of a dynamic-batch ONNX model unless --max-batch says otherwise (the default
profile max of our engines, so an ONNX and a plan repository of one export agree)."""

DEFAULT_MAX_QUEUE = 128
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


class ConfigError(ModelFileError):
    """A config Triton would refuse at load (or our server could not serve)."""


SERVE_HINT = "install the serving extra: pip install 'attn-export[serve]'"


def model_config_pb2():
    """tritonclient's generated ``model_config_pb2`` (the ModelConfig message Triton parses)."""
    try:
        from tritonclient.grpc import model_config_pb2
    except ImportError as exc:
        raise MissingDependencyError(f"tritonclient[grpc] is not importable ({exc}); {SERVE_HINT}") \
            from None
    return model_config_pb2


@dataclass(frozen=True)
class ModelSpec:
    """What a config is generated from and checked against: the file's real I/O and profiles.

    Attributes:
        profiles: the engine's optimization profiles as sidecar dicts ({name, min, opt, max});
            empty for ONNX models.
    """

    name: str
    platform: str
    io: ModelIO
    profiles: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class BatchOptions:
    max_batch: int | None = None
    max_queue_delay_us: int = 0
    max_queue_size: int = DEFAULT_MAX_QUEUE
    instances: int = 1
    dynamic_batching: bool = True


def check_name(name: str) -> str:
    """Model names become folder names and URL segments: no separators, no dot-dot, no spaces."""
    if not NAME_PATTERN.match(name) or name in (".", ".."):
        raise ConfigError(f"model name {name!r} is not allowed: expected letters, digits, '_', '-' "
                          "or '.', not starting with '.' or '-' (it names a folder of the repository)")
    return name


def batch_is_dynamic(io: ModelIO) -> bool:
    """Every input's first dim is dynamic: only then can requests be joined along it."""
    return bool(io.inputs) and all(t.shape and t.shape[0] is None for t in io.inputs)


def engine_max_batch(spec: ModelSpec, profile_indices: list[int] | None = None) -> int:
    """Triton's TensorRT backend rule: max over the selected profiles of the min over inputs of
    the profile's ``max[0]``; 0 when the engine fixes its batch dim."""
    if not batch_is_dynamic(spec.io):
        return 0
    by_name = {p["name"]: p for p in spec.profiles}
    missing = [t.name for t in spec.io.inputs if t.name not in by_name]
    if missing:
        raise ConfigError(f"engine sidecar has no optimization profile for inputs {missing}; rebuild "
                          "the engine with `attn-export build` so its batch range is known")
    indices = profile_indices or [0]
    if any(i != 0 for i in indices):  # our engines hold exactly one profile
        raise ConfigError(f"configuration specified invalid profile {indices}: the engine has one "
                          "optimization profile (\"0\")")
    return min(int(by_name[t.name]["max"][0]) for t in spec.io.inputs)


def choose_max_batch(spec: ModelSpec, requested: int | None) -> int:
    """The max_batch_size to write: the engine's (or 8 for ONNX) unless ``--max-batch`` asks for
    less; asking for more than the engine supports is refused with Triton's own wording."""
    if not batch_is_dynamic(spec.io):
        if requested:
            shapes = ", ".join(t.describe() for t in spec.io.inputs)
            raise ConfigError(f"--max-batch {requested} but {spec.name}'s batch dim is fixed ({shapes}): "
                              "Triton would refuse batching; re-export with --dynamic batch")
        return 0
    if spec.platform == "tensorrt_plan":
        limit = engine_max_batch(spec)
        if requested and requested > limit:
            raise ConfigError(f"{spec.name}: configuration specified max-batch {requested} but TensorRT "
                              f"engine only supports max-batch {limit} (the optimization profile's "
                              f"max batch); rebuild with a larger --max-shape or pass --max-batch {limit}")
        return requested or limit
    return requested or DEFAULT_MAX_BATCH


def build_config(spec: ModelSpec, options: BatchOptions):
    """A ``ModelConfig`` protobuf for ``spec``; check it with :func:`check_config` before use."""
    mc = model_config_pb2()
    max_batch = choose_max_batch(spec, options.max_batch)
    cfg = mc.ModelConfig(name=check_name(spec.name), platform=spec.platform,
                         max_batch_size=max_batch)
    for tensors, add in ((spec.io.inputs, cfg.input.add), (spec.io.outputs, cfg.output.add)):
        for t in tensors:
            dims = t.shape[1:] if max_batch > 0 else t.shape
            add(name=t.name, data_type=mc.DataType.Value(config_dtype(protocol_dtype(t.dtype))),
                dims=[-1 if d is None else int(d) for d in dims])
    if max_batch > 0 and options.dynamic_batching:
        cfg.dynamic_batching.max_queue_delay_microseconds = options.max_queue_delay_us
        cfg.dynamic_batching.default_queue_policy.max_queue_size = options.max_queue_size
    kind = mc.ModelInstanceGroup.KIND_GPU if spec.platform == "tensorrt_plan" \
        else mc.ModelInstanceGroup.KIND_AUTO
    group = cfg.instance_group.add(count=options.instances, kind=kind)
    if spec.platform == "tensorrt_plan":
        group.profile.append("0")
    return cfg


def to_pbtxt(cfg) -> str:
    from google.protobuf import text_format

    return text_format.MessageToString(cfg)


def parse_config(text: str, where: str | Path = "config.pbtxt"):
    """config.pbtxt text -> ``ModelConfig``; a parse error names the line, as Triton's log does."""
    from google.protobuf import text_format

    mc = model_config_pb2()

    try:
        return text_format.Parse(text, mc.ModelConfig())
    except text_format.ParseError as exc:
        raise ConfigError(f"{where} is not a valid ModelConfig: {exc}") from None
