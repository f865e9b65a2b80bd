"""The load-time checks Triton applies to a config, applied to ours before anyone loads it.

Each check returns the problems it finds as one-line reasons, so a refused config lists every
reason at once. Rules follow Triton's model_configuration.md and its ONNX Runtime and TensorRT
backends (see config.py for the max-batch rule).
"""

from __future__ import annotations

import re

import numpy as np

from attn_export.runtime.base import TensorSpec
from attn_export.serve.config import PLATFORMS, ConfigError, ModelSpec, engine_max_batch, model_config_pb2
from attn_export.serve.dtypes import config_dtype, protocol_dtype

CC_KEY = re.compile(r"^[0-9]{1,2}\.[0-9]{1,2}$")
"""A ``cc_model_filenames`` key: a CUDA compute capability as Triton spells it (``8.7``, ``11.0``)."""


def _tensor_problems(kind: str, configured, real: tuple[TensorSpec, ...], max_batch: int) -> list[str]:
    mc = model_config_pb2()
    problems = []
    real_by_name = {t.name: t for t in real}
    names = [c.name for c in configured]
    if sorted(names) != sorted(real_by_name):
        problems.append(f"{kind}s {sorted(names)} differ from the model's {sorted(real_by_name)}")
    for c in configured:
        t = real_by_name.get(c.name)
        if t is None:
            continue
        want_type = config_dtype(protocol_dtype(t.dtype))
        got_type = mc.DataType.Name(c.data_type)
        if got_type != want_type:
            problems.append(f"{kind} {c.name!r}: data_type {got_type}, the model has {want_type}")
        dims = list(c.dims)
        if not dims:
            problems.append(f"{kind} {c.name!r}: dims must have at least one entry")
            continue
        model_dims = t.shape[1:] if max_batch > 0 else t.shape
        if max_batch > 0 and t.shape and t.shape[0] is not None:
            problems.append(f"{kind} {c.name!r}: max_batch_size {max_batch} > 0 but the model fixes "
                            f"its first dim to {t.shape[0]} ({t.describe()}); use max_batch_size 0")
        if len(dims) != len(model_dims):
            problems.append(f"{kind} {c.name!r}: dims {dims} have rank {len(dims)}, the model's "
                            f"{'non-batch ' if max_batch > 0 else ''}shape has rank {len(model_dims)} "
                            f"({t.describe()})" + ("; dims exclude the batch dim when max_batch_size > 0"
                                                    if len(dims) == len(model_dims) + 1 else ""))
            continue
        for axis, (d, m) in enumerate(zip(dims, model_dims)):
            if m is not None and d != m:
                problems.append(f"{kind} {c.name!r}: dim {axis} is {d}, the model fixes it to {m} "
                                f"({t.describe()})")
            elif m is None and d != -1 and d < 1:
                problems.append(f"{kind} {c.name!r}: dim {axis} is {d}; expected -1 or a positive size")
    return problems


def _batching_problems(cfg, spec: ModelSpec) -> list[str]:
    problems = []
    if cfg.max_batch_size < 0:
        problems.append(f"max_batch_size {cfg.max_batch_size} is negative")
    if cfg.max_batch_size == 0 and cfg.HasField("dynamic_batching"):
        problems.append("dynamic_batching needs max_batch_size > 0 (the model does not batch)")
    if cfg.HasField("dynamic_batching"):
        db = cfg.dynamic_batching
        for size in db.preferred_batch_size:
            if not 0 < size <= cfg.max_batch_size:
                problems.append(f"preferred_batch_size {size} is outside 1..max_batch_size "
                                f"{cfg.max_batch_size}")
    if cfg.platform == "tensorrt_plan" and cfg.max_batch_size > 0:
        profiles = [int(p) for g in cfg.instance_group for p in g.profile] or None
        try:
            limit = engine_max_batch(spec, profiles)
        except ConfigError as exc:
            return [*problems, str(exc)]
        if cfg.max_batch_size > limit:
            problems.append(f"configuration specified max-batch {cfg.max_batch_size} but TensorRT "
                            f"engine only supports max-batch {limit}")
        lows = [int(p["min"][0]) for p in spec.profiles if p["name"] in {t.name for t in spec.io.inputs}]
        if lows and max(lows) > 1:
            problems.append(f"the engine's profile starts at batch {max(lows)}: batch-1 requests "
                            "would be refused; rebuild with --min-shape 1x...")
    return problems


def cc_filename_problems(cfg) -> list[str]:
    """``cc_model_filenames``: keys are compute capabilities (``major.minor``, the form Triton
    looks the local GPU up by), values are file names of the version folder. Whether the files
    exist is checked where the folder is known (:mod:`attn_export.serve.device_plans`)."""
    problems = []
    for key, filename in sorted(cfg.cc_model_filenames.items()):
        if not CC_KEY.match(key):
            problems.append(f"cc_model_filenames key {key!r} is not a compute capability: expected "
                            "major.minor such as \"8.7\" (Orin) or \"11.0\" (Thor)")
        if not filename or filename in (".", "..") or "/" in filename or "\\" in filename:
            problems.append(f"cc_model_filenames[{key!r}] = {filename!r}: expected the name of a "
                            "file in the version folder")
    return problems


def config_problems(cfg, spec: ModelSpec) -> list[str]:
    """Every reason Triton (or our server) would refuse ``cfg`` for the model ``spec`` describes."""
    problems = []
    if cfg.name and cfg.name != spec.name:
        problems.append(f"name {cfg.name!r} differs from the model folder {spec.name!r}")
    if cfg.platform not in PLATFORMS:
        problems.append(f"platform {cfg.platform!r} is not one of {sorted(PLATFORMS)}")
    elif cfg.platform != spec.platform:
        problems.append(f"platform {cfg.platform!r} but the model file is for {spec.platform!r}")
    problems += _batching_problems(cfg, spec)
    problems += _tensor_problems("input", cfg.input, spec.io.inputs, cfg.max_batch_size)
    problems += _tensor_problems("output", cfg.output, spec.io.outputs, cfg.max_batch_size)
    for group in cfg.instance_group:
        if group.count < 1:
            problems.append(f"instance_group count {group.count}: expected at least 1")
    if cfg.HasField("sequence_batching") or cfg.HasField("ensemble_scheduling"):
        problems.append("sequence batching and ensembles are not served by attn-export serve")
    return problems + cc_filename_problems(cfg)


def check_config(cfg, spec: ModelSpec) -> None:
    """Raise a ConfigError listing every problem of ``cfg``; silent when Triton would load it."""
    problems = config_problems(cfg, spec)
    if problems:
        raise ConfigError(f"config of model {spec.name!r} would be refused: " + "; ".join(problems))


def feed_dtype(cfg_tensor) -> np.dtype:
    """The numpy dtype of a config tensor."""
    from attn_export.serve.dtypes import datatype_of_config, numpy_dtype

    return numpy_dtype(datatype_of_config(model_config_pb2().DataType.Name(cfg_tensor.data_type)))
