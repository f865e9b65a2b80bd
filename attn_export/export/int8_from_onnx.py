"""INT8 graphs: explicit Q/DQ nodes from ONNX Runtime's static quantization.

Symmetric INT8, per-channel weights, float biases: the form TensorRT's explicit quantization
reads. Sigmoid gates and the multiply that applies them stay float (F2).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from attn_export.errors import MissingDependencyError, ValidationError
from attn_export.export.fp16_from_onnx import name_nodes
from attn_export.export.macs import MacCount, count_macs, mean_convs, quantized_nodes
from attn_export.runtime.base import Feed, TensorSpec

GATE_OPS = ("Sigmoid", "HardSigmoid")
_TRANSPARENT_OPS = ("Unsqueeze", "Squeeze", "Reshape", "Expand", "Flatten", "Identity",
                    "Transpose", "Tile", "Cast")
QUANTIZED_OP_TYPES = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Mul", "AveragePool",
                      "GlobalAveragePool", "MaxPool", "Clip", "Sigmoid", "HardSigmoid")
"""Ops whose inputs get Q/DQ: NVIDIA ModelOpt's TensorRT-oriented INT8 set (weighted ops, the
elementwise and pooling ops TensorRT fuses with them), plus the gate activations so that
``quantize_gates=True`` has something to quantize. Reductions, norms and softmax stay float."""

TRT_QDQ_OPTIONS = {
    "ActivationSymmetric": True,  # TensorRT's INT8 is symmetric: zero point 0
    "WeightSymmetric": True,
    "QuantizeBias": False,  # TensorRT has no INT32 dequantize; it folds float biases itself
    "AddQDQPairToWeight": True,  # float weights + Q/DQ: TensorRT quantizes them at build time
    "DedicatedQDQPair": False,
    "ForceQuantizeNoInputCheck": True,
    "QDQOpTypePerChannelSupportToAxis": {"Conv": 0, "ConvTranspose": 1, "MatMul": 1},
}
"""ONNX Runtime ``quantize_static`` options for TensorRT, after NVIDIA ModelOpt's
``configure_ort`` (modelopt/onnx/quantization/ort_utils.py); the output-quantization exclusion is
added per graph (Q/DQ on op inputs only, as TensorRT's explicit quantization expects)."""

DEFAULT_CALIB_SAMPLES = 16
CALIB_METHODS = ("minmax", "entropy", "percentile")


def gate_nodes(model) -> list[str]:
    """Names of the nodes F2 keeps out of INT8: every Sigmoid / HardSigmoid attention gate, the
    shape-only ops between it and a Mul, and that Mul (the multiply that applies the gate). A Mul
    of two gates (CoordAtt's ``a_h * a_w``) is itself a gate: the multiply that applies it is
    followed too. Activations (SiLU's ``x * sigmoid(x)``, HardSwish, GLU) are not gates
    (``onnx_gates``)."""
    from attn_export.export.onnx_gates import GateGraph

    graph = GateGraph.of(model)
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    found: list[str] = []
    gated: set[str] = set()  # tensors that are a gate or a shape-only view / product of gates
    for node in model.graph.node:
        if node.op_type not in GATE_OPS or not graph.is_gate(node):
            continue
        found.append(node.name)
        frontier, path = list(node.output), []
        gated.update(node.output)
        while frontier:
            for user in consumers.get(frontier.pop(), []):
                if user.op_type == "Mul":
                    found.extend([*path, user.name])
                    if all(name in gated for name in user.input):
                        gated.update(user.output)
                        frontier.extend(user.output)
                elif user.op_type in _TRANSPARENT_OPS:
                    path.append(user.name)
                    gated.update(user.output)
                    frontier.extend(user.output)
    return list(dict.fromkeys(found))


def gemv_nodes(model) -> list[str]:
    """Gemm/MatMul/Conv nodes applied to a pooled vector (rank-2 input, or a 1x1 map): GEMVs, where
    INT8 buys nothing on TensorRT (no tensor-core tile at M = batch) and costs accuracy, so they
    stay float, as NVIDIA ModelOpt's GEMV rule does for MatMul."""
    import onnx

    shapes = {}
    for value in onnx.shape_inference.infer_shapes(model).graph.value_info:
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
    found = []
    for node in model.graph.node:
        shape = shapes.get(node.input[0]) if node.input else None
        if shape is None:
            continue
        if node.op_type in ("Gemm", "MatMul") and len(shape) == 2:
            found.append(node.name)
        elif node.op_type == "Conv" and len(shape) > 2 and all(d == 1 for d in shape[2:]):
            found.append(node.name)
    return found


def attention_matmuls(model) -> list[str]:
    """MatMuls of two activations (attention's Q @ K^T and softmax(...) @ V). Their operands are
    per-token scores and probabilities: one per-tensor INT8 scale flushes the small attention
    weights to zero, the failure F2 describes for sigmoid gates (measured on ``mhsa``: cosine 0.45
    to PyTorch when quantized). NVIDIA ModelOpt likewise leaves attention BMMs unquantized."""
    constant = _constant_tensors(model)
    return [n.name for n in model.graph.node
            if n.op_type == "MatMul" and not any(i in constant for i in n.input)]


def _constant_tensors(model) -> set[str]:
    constant = {t.name for t in model.graph.initializer}
    return constant | {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}


class FeedReader:
    """ONNX Runtime ``CalibrationDataReader`` over a list of feeds (duck-typed: ``get_next``)."""

    def __init__(self, feeds: Sequence[Feed]) -> None:
        self.feeds = list(feeds)
        self._next = 0

    def get_next(self) -> Feed | None:
        if self._next >= len(self.feeds):
            return None
        self._next += 1
        return self.feeds[self._next - 1]

    def rewind(self) -> None:
        self._next = 0

    def __len__(self) -> int:
        return len(self.feeds)


def seeded_calibration_feeds(inputs: Sequence[TensorSpec], shapes: Mapping[str, Sequence[int]],
                             count: int = DEFAULT_CALIB_SAMPLES, seed: int = 0) -> list[Feed]:
    """Synthetic calibration inputs, with a warning: half N(0, 1), half post-ReLU maps up to ~30
    (the kinds the golden files hold), so scales cover both. Real data gives better scales."""
    from attn_export.runtime.inputs import make_input

    warnings.warn(
        f"no --calib-data given: calibrating INT8 on {count} seeded synthetic samples; the "
        "activation scales will not match real data. Pass --calib-data DIR (a folder of .npy "
        "input maps) for a deployable INT8 graph",
        UserWarning, stacklevel=2,
    )
    feeds = []
    for i in range(count):
        kind = "normal" if i % 2 == 0 else "relu_large"
        feeds.append({s.name: make_input(kind, tuple(shapes[s.name]), seed + i).astype(s.dtype)
                      for s in inputs})
    return feeds


def calibration_feeds_from_dir(
    folder: str | Path, inputs: Sequence[TensorSpec], limit: int = 256
) -> list[Feed]:
    """Calibration feeds from a folder: ``.npy`` maps (one-input graphs) or ``.npz`` files keyed by
    input name. An array of rank R-1 is one sample; rank R is a batch, split to the graph's batch
    when the graph fixes it. At most ``limit`` feeds are read."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValidationError(f"--calib-data {folder} is not a folder; expected a folder of .npy "
                              "input maps (or .npz files keyed by input name)")
    files = sorted(p for p in folder.iterdir() if p.suffix in (".npy", ".npz"))
    if not files:
        raise ValidationError(f"--calib-data {folder} holds no .npy or .npz file")
    feeds: list[Feed] = []
    for path in files:
        arrays = _read_calib_file(path, inputs)
        batches = {s.name: _as_batches(arrays[s.name], s, path) for s in inputs}
        counts = {len(b) for b in batches.values()}
        if len(counts) != 1:
            raise ValidationError(f"{path}: inputs hold different sample counts {sorted(counts)}")
        feeds += [{name: b[i] for name, b in batches.items()} for i in range(counts.pop())]
        if len(feeds) >= limit:
            break
    return feeds[:limit]


def finite_feeds(feeds: Sequence[Feed], source: str | Path) -> list[Feed]:
    """Refuse calibration (or range-check) data holding NaN/inf: one such value makes every
    calibrated scale NaN, and the graph then fails validation for a reason that is not its own."""
    from attn_export.runtime.inputs import check_real_finite

    for i, feed in enumerate(feeds):
        for name, array in feed.items():
            check_real_finite(array, f"calibration data {source} (sample {i}, input {name!r})")
    return list(feeds)


def _read_calib_file(path: Path, inputs: Sequence[TensorSpec]) -> dict[str, np.ndarray]:
    try:
        if path.suffix == ".npz":
            with np.load(str(path), allow_pickle=False) as data:
                loaded = {k: data[k] for k in data.files}
        else:
            loaded = {"": np.load(str(path), allow_pickle=False)}
    except (OSError, ValueError, EOFError) as exc:
        raise ValidationError(f"cannot read calibration file {path}: {exc}") from None
    if "" in loaded:
        if len(inputs) != 1:
            raise ValidationError(
                f"{path}: a .npy holds one array but the graph has inputs "
                f"{[s.name for s in inputs]}; use .npz files keyed by input name")
        return {inputs[0].name: loaded[""]}
    missing = [s.name for s in inputs if s.name not in loaded]
    if missing:
        raise ValidationError(f"{path} lacks inputs {missing}; it holds {sorted(loaded)}")
    return loaded


def _as_batches(array: np.ndarray, spec: TensorSpec, path: Path) -> list[np.ndarray]:
    rank = len(spec.shape)
    if array.ndim == rank - 1:
        array = array[None]
    if array.ndim != rank or not np.issubdtype(array.dtype, np.number):
        raise ValidationError(f"{path}: array of shape {array.shape} ({array.dtype}) does not fit "
                              f"input {spec.describe()}; expected a numeric array of rank {rank} "
                              f"(a batch) or {rank - 1} (one sample)")
    for axis in range(1, rank):
        want = spec.shape[axis]
        if want is not None and array.shape[axis] != want:
            raise ValidationError(f"{path}: shape {array.shape} does not fit input "
                                  f"{spec.describe()} (dim {axis} must be {want})")
    array = array.astype(spec.dtype, copy=False)
    step = spec.shape[0] or array.shape[0]
    if array.shape[0] % step:
        raise ValidationError(f"{path}: batch of {array.shape[0]} is not a multiple of the "
                              f"graph's fixed batch {step}")
    return [np.ascontiguousarray(array[i:i + step]) for i in range(0, array.shape[0], step)]


@dataclass
class Int8Quantization:
    """Where the Q/DQ graph was written, what stayed float, on what it was calibrated, and how
    much of it is INT8 at all: ``quantized`` names the nodes that read Q/DQ operands (empty: the
    graph computes in float throughout) and ``macs`` counts the MACs behind them."""

    path: Path
    excluded: list[str]
    calibration: str
    samples: int
    quantized_ops: dict[str, int] = field(default_factory=dict)
    quantized: list[str] = field(default_factory=list)
    macs: MacCount = field(default_factory=MacCount)

    def describe(self) -> str:
        """``3 nodes quantized, 87.5% of MACs in INT8`` (or that nothing was)."""
        if not self.quantized:
            return "nothing quantized: the graph runs in float"
        return (f"{len(self.quantized)} nodes quantized, {100 * self.macs.int8_share:.1f}% of MACs "
                "in INT8")


def int8_from_onnx(
    onnx_path: str | Path,
    output_path: str | Path,
    calib_feeds: Sequence[Feed],
    calibration: str = "given feeds",
    quantize_gates: bool = False,
    calibrate_method: str = "minmax",
    op_types: Sequence[str] = QUANTIZED_OP_TYPES,
    per_channel: bool = True,
) -> Int8Quantization:
    """Write an explicit-quantization (Q/DQ) copy of a float32 graph, calibrated on ``calib_feeds``.

    The quantization is what TensorRT's explicit quantization expects: signed INT8, symmetric
    (zero point 0) activations and weights, per-channel weights, float biases (TensorRT has no
    INT32 dequantize). The same graph runs on ONNX Runtime (CPU QDQ kernels) and TensorRT.

    Args:
        onnx_path: the float32 graph.
        output_path: where to write the Q/DQ graph (atomically).
        calib_feeds: calibration inputs (:func:`calibration_feeds_from_dir` or
            :func:`seeded_calibration_feeds`).
        calibration: a description of the feeds, recorded in the result.
        quantize_gates: quantize sigmoid gates and their multiply too (F2 says do not).
            GEMVs (:func:`gemv_nodes`) and attention BMMs (:func:`attention_matmuls`) stay
            float either way.
        calibrate_method: minmax, entropy or percentile.
        op_types: op types given Q/DQ.
        per_channel: per-output-channel weight scales.
    """
    import onnx

    from attn_export.atomic import write_atomic

    try:
        from onnxruntime.quantization import (
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
    except ImportError as exc:
        raise MissingDependencyError("INT8 quantization needs onnxruntime; install it with "
                                     "`pip install onnxruntime`") from exc
    if calibrate_method not in CALIB_METHODS:
        raise ValidationError(f"unknown calibration method {calibrate_method!r}; expected one of "
                              f"{', '.join(CALIB_METHODS)}")
    if not calib_feeds:
        raise ValidationError("no calibration samples; give --calib-data with at least one map")
    model = onnx.load(str(onnx_path))
    name_nodes(model.graph)
    gates = [] if quantize_gates else gate_nodes(model)
    excluded = list(dict.fromkeys((*gemv_nodes(model), *attention_matmuls(model), *mean_convs(model),
                                   *gates)))
    options = dict(TRT_QDQ_OPTIONS)
    options["OpTypesToExcludeOutputQuantization"] = sorted({n.op_type for n in model.graph.node})
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[calibrate_method]

    def write(tmp: Path) -> None:
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # ORT advises pre-processing on the root logger, every call
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _quantize(tmp)
        finally:
            root.setLevel(level)

    def _quantize(tmp: Path) -> None:
        quantize_static(
            model, tmp, FeedReader(calib_feeds), quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(op_types), per_channel=per_channel,
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
            nodes_to_exclude=excluded, calibrate_method=method, extra_options=options,
        )

    path = write_atomic(Path(output_path), write)
    quantized = onnx.load(str(path))
    counts: dict[str, int] = {}
    for node in quantized.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    result = Int8Quantization(path, excluded, calibration, len(calib_feeds), counts,
                              quantized_nodes(quantized),
                              count_macs(quantized, {k: v.shape for k, v in calib_feeds[0].items()}))
    if not result.quantized:
        warnings.warn(
            f"INT8 quantized nothing in {Path(onnx_path).name}: every Conv/Gemm/MatMul is a GEMV "
            "on a pooled vector, an attention BMM or on a sigmoid gate's path, which stay float "
            "(F2); the Q/DQ graph computes in float, so an INT8 engine of it is an FP32/FP16 "
            "engine. Use --precision fp16 for this block", UserWarning, stacklevel=2)
    return result
