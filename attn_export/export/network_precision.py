"""FP16 / INT8 graphs of a whole network, with the accuracy proxies a network needs.

The graph itself comes from the block path (``precision_onnx_from_export``): INT8 quantizes the
host's convolutions and keeps every block's sigmoid gate and its multiply float (F2). On top of the
validation rows, a network's INT8 report says how far each block's gates moved (the gate error:
max |gate_int8 - gate_fp32| over the calibration inputs, per swapped block), the overall cosine,
and for classifiers how often the INT8 top-1 class equals the FP32 one on the calibration set.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class NetworkPrecision:
    """The reduced-precision graph, its validation, and the network-level proxies."""

    export: object  # attn_export.export.precision.PrecisionExport
    gate_error: dict[str, float] = field(default_factory=dict)
    cosine: float = 1.0
    top1_agreement: float | None = None
    samples: int = 0
    warnings: list[str] = field(default_factory=list)

    def proxies(self) -> dict:
        """What the network adds to the precision graph's report section."""
        return {"gate_error": self.gate_error, "cosine": self.cosine,
                "top1_agreement": self.top1_agreement, "proxy_samples": self.samples}


def block_path_of(node_name: str) -> str:
    """``/layer1/layer1.0/attn/Sigmoid`` (a torchscript node name) -> ``layer1.0.attn``."""
    levels = node_name.strip("/").split("/")[:-1]
    path: list[str] = []
    for level in levels:  # a Sequential's child is named "parent.index" at its own level
        parts = level.split(".")
        path = path[:-1] + parts if path and len(parts) > 1 and parts[0] == path[-1] else [*path,
                                                                                            level]
    return ".".join(path)


def block_paths_of(node_name: str) -> set[str]:
    """Every module path a torchscript node name can stand for.

    A level ``model.2`` under a level ``model`` is either the child ``2`` of a Sequential named
    ``model`` or the entry ``2`` of a ModuleList attribute ``model`` of the module ``model`` (a
    ModuleList gets no level of its own: Ultralytics' ``DetectionModel.model``); the names alone
    do not say which, so both are returned.
    """
    levels = node_name.strip("/").split("/")[:-1]
    paths: set[tuple[str, ...]] = {()}
    previous = None
    for level in levels:
        parts = tuple(level.split("."))
        grown = {(*p, *parts) for p in paths}
        if previous is not None and level.startswith(previous + "."):
            suffix = tuple(level[len(previous) + 1:].split("."))
            grown |= {(*p, *suffix) for p in paths}
        paths, previous = grown, level
    return {".".join(p) for p in paths}


def _owner(node_name: str, swap_paths: Sequence[str]) -> str:
    """The swapped / recognised block a gate node belongs to (else its own module path)."""
    candidates = block_paths_of(node_name)
    owners = [p for p in swap_paths for c in candidates if c == p or c.startswith(p + ".")]
    return max(owners, key=len, default=block_path_of(node_name))


def _gate_outputs(model) -> dict[str, str]:
    """Sigmoid output tensor -> node name, for every attention gate in the graph (activations
    such as SiLU's ``x * sigmoid(x)`` are not gates: ``export.onnx_gates``)."""
    from attn_export.export.onnx_gates import attention_gates

    return {n.output[0]: n.name for n in attention_gates(model) if n.op_type == "Sigmoid"}


def _with_outputs(model, names: Sequence[str]):
    """A copy of ``model`` that also returns the tensors ``names`` (float32)."""
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    have = {o.name for o in copy.graph.output}
    for name in names:
        if name not in have:
            copy.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT,
                                                                        None))
    return copy


def _session(model):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def _as_applied(model, tensor: str) -> str:
    """The gate as its multiply reads it: ``tensor``, or the output of the Quantize/Dequantize
    pair a plan that quantizes gates puts between the Sigmoid and the Mul."""
    consumers = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    for q in consumers.get(tensor, []):
        if q.op_type == "QuantizeLinear":
            for dq in consumers.get(q.output[0], []):
                if dq.op_type == "DequantizeLinear":
                    return dq.output[0]
    return tensor


def network_proxies(fp32_path: Path, int8_path: Path, feeds: list[dict], swap_paths: Sequence[str],
                    classify: bool) -> tuple[dict[str, float], float | None]:
    """Per-block gate error and the top-1 agreement of the INT8 graph against the FP32 one.

    The gate error compares each attention gate as its multiply reads it (after the Q/DQ pair,
    where a plan quantizes gates) with the FP32 gate.
    """
    from attn_export.export.check import load_onnx

    fp32, int8 = load_onnx(fp32_path), load_onnx(int8_path)
    gates = _gate_outputs(fp32)
    shared = [t for t in gates if t in {o for n in int8.graph.node for o in n.output}]
    applied = {t: _as_applied(int8, t) for t in shared}
    a = _session(_with_outputs(fp32, shared))
    b = _session(_with_outputs(int8, list(dict.fromkeys(applied.values()))))
    out_name = fp32.graph.output[0].name
    names = [out_name, *shared]
    int8_names = list(dict.fromkeys([out_name, *applied.values()]))
    errors: dict[str, float] = {}
    agree = 0
    for feed in feeds:
        ra = dict(zip(names, a.run(names, feed)))
        rb = dict(zip(int8_names, b.run(int8_names, feed)))
        for tensor in shared:
            owner = _owner(gates[tensor], swap_paths)
            err = float(np.abs(ra[tensor] - rb[applied[tensor]]).max())
            errors[owner] = max(errors.get(owner, 0.0), err)
        if classify:
            agree += int((ra[out_name].argmax(1) == rb[out_name].argmax(1)).all())
    return errors, (agree / len(feeds) if classify and feeds else None)


def network_precision(onnx_path: Path, golden_path: Path, precision: str, calib_data, trt: str,
                      seed: int, swap_paths: Sequence[str], classify: bool) -> NetworkPrecision:
    """Write NETWORK.PRECISION.onnx, validate it, and (INT8) measure the network proxies: one
    artefact set with the report section that records them (see ``precision_set_from_export``)."""
    from attn_export.export.check import load_onnx
    from attn_export.export.int8_from_onnx import (
        calibration_feeds_from_dir,
        seeded_calibration_feeds,
    )
    from attn_export.export.precision import precision_set_from_export
    from attn_export.export.profiles import onnx_input_specs
    from attn_export.runtime.golden import load_golden

    result = NetworkPrecision(None)

    def proxies(out) -> dict:
        """Measured on the staged graph, inside the artefact set: they land with it."""
        result.export = out
        cosines = [r.comparison.cosine for r in out.rows]
        result.cosine = min(cosines) if cosines else 1.0
        if precision == "int8":
            specs = onnx_input_specs(load_onnx(onnx_path))
            if calib_data is not None:
                feeds = calibration_feeds_from_dir(calib_data, specs)
            else:
                shape = load_golden(golden_path).cases[0].inputs[specs[0].name].shape
                feeds = seeded_calibration_feeds(specs, {specs[0].name: shape}, seed=seed)
            result.gate_error, result.top1_agreement = network_proxies(
                onnx_path, out.path, feeds, swap_paths, classify)
            result.samples = len(feeds)
        return result.proxies()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result.export = precision_set_from_export(
            onnx_path, golden_path, precision, more_report=proxies, calib_data=calib_data,
            quantize_gates=False, trt_version=trt, seed=seed)
    result.warnings = list(dict.fromkeys(str(w.message) for w in caught))
    return result
