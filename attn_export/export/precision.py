"""Reduced-precision graphs (FP16, INT8) and the plan that tells TensorRT how to build each one.

TensorRT 10.x still accepts precision as builder flags on an FP32 graph ("weak typing"); TensorRT
11.x removed weak typing, so there the precision must be in the ONNX itself. We therefore put it in
the ONNX for every target and validate that very graph on ONNX Runtime CPU here:

- FP16: ``fp16_from_onnx`` converts the graph to float16 with float32 I/O, keeping in float32
  the nodes FP16 cannot hold (reductions over H*W, normalisations, shape arithmetic, tensors out of
  FP16 range on sample data, constants FP16 flushes to zero). Our own converter over the ONNX graph,
  driven by the op schemas, so no extra dependency and every decision is recorded.
- INT8: ``int8_from_onnx`` inserts explicit Q/DQ nodes with ONNX Runtime's static quantization
  (symmetric INT8, per-channel weights, float biases), the form TensorRT's explicit quantization
  reads. Sigmoid gates and the multiply that applies them stay float (F2).

:func:`plan_precision` then says, per TensorRT version, which graph to parse and which network and
builder flags to use (see ``engine_from_onnx``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from attn_export.errors import ValidationError
from attn_export.export.fp16_from_onnx import Fp16Conversion, fp16_from_onnx
from attn_export.export.int8_from_onnx import (
    DEFAULT_CALIB_SAMPLES,
    Int8Quantization,
    calibration_feeds_from_dir,
    finite_feeds,
    int8_from_onnx,
    seeded_calibration_feeds,
)
from attn_export.export.precision_plan import PrecisionPlan, plan_precision, precision_onnx_path
from attn_export.runtime.base import Feed
from attn_export.runtime.fp16_rounding import Fp16RoundingRunner
from attn_export.runtime.onnxruntime_runner import OnnxRuntimeRunner
from attn_export.runtime.validation_runner import graph_kind


def write_fp16_onnx(onnx_path: str | Path, output_path: str | Path | None = None,
                    sample_feeds: Sequence[Feed] | None = None, **options) -> Fp16Conversion:
    """Convert the float32 ONNX file to float16 (float32 I/O) and write it atomically.

    Args:
        onnx_path: BLOCK.onnx (float32).
        output_path: default BLOCK.fp16.onnx beside it.
        sample_feeds: inputs for the FP16 range check (the golden inputs or calibration data).
        **options: passed to :func:`fp16_from_onnx` (``keep_fp32_ops``, ``keep_fp32_nodes``,
            ``range_limit``).
    """
    import onnx

    from attn_export.atomic import write_atomic
    from attn_export.export.check import load_onnx

    model = load_onnx(onnx_path)
    if graph_kind(model) != "fp32":
        raise ValidationError(f"{onnx_path} is already a {graph_kind(model)} graph; convert the "
                              "float32 BLOCK.onnx")
    conversion = fp16_from_onnx(model, sample_feeds=sample_feeds, **options)
    path = Path(output_path or precision_onnx_path(onnx_path, "fp16"))
    write_atomic(path, lambda tmp: onnx.save(conversion.model, str(tmp)))
    conversion.path = path
    return conversion


MIN_INT8_OPSET = 13
"""Per-channel Q/DQ weights need ``DequantizeLinear``'s ``axis`` (opset 13): the matrix measured
28 of 38 opset-11 INT8 graphs that ONNX Runtime refuses to load."""


def check_int8_opset(opset: int, what: str | Path = "the graph") -> None:
    """Refuse INT8 below opset 13 in one line, before any work where the caller knows the opset."""
    if opset < MIN_INT8_OPSET:
        raise ValidationError(
            f"INT8 needs opset {MIN_INT8_OPSET} or later ({what} is opset {opset}): per-channel "
            "Q/DQ weights use DequantizeLinear's axis, which opset 13 introduced; export with "
            "--opset 13 or later (17 is the default)")


def write_int8_onnx(
    onnx_path: str | Path,
    output_path: str | Path | None = None,
    calib_data: str | Path | None = None,
    shapes: Mapping[str, Sequence[int]] | None = None,
    quantize_gates: bool = False,
    calib_samples: int = DEFAULT_CALIB_SAMPLES,
    seed: int = 0,
    holdout: bool = False,
    **options,
) -> Int8Quantization:
    """Quantize the float32 ONNX file to a Q/DQ graph (default BLOCK.int8.onnx beside it).

    Args:
        onnx_path: BLOCK.onnx (float32).
        output_path: where to write; default BLOCK.int8.onnx.
        calib_data: folder of .npy / .npz calibration inputs; None -> seeded samples, with a
            warning.
        shapes: input name -> shape of the seeded samples (needed for dynamic dims).
        quantize_gates: F2 override.
        calib_samples: how many seeded samples.
        seed: seed of the synthetic samples.
        holdout: leave out of calibration the samples the golden file validates on
            (``export/heldout.py``).
        **options: passed to :func:`int8_from_onnx`.
    """
    from attn_export.export.check import load_onnx
    from attn_export.export.profiles import onnx_input_specs
    from attn_export.runtime.onnx_file import default_opset

    model = load_onnx(onnx_path)
    if graph_kind(model) != "fp32":
        raise ValidationError(f"{onnx_path} is already a {graph_kind(model)} graph; quantize the "
                              "float32 BLOCK.onnx")
    check_int8_opset(default_opset(model, MIN_INT8_OPSET), onnx_path)
    inputs = onnx_input_specs(model)
    if calib_data is not None:
        feeds = finite_feeds(calibration_feeds_from_dir(calib_data, inputs), calib_data)
        held = []
        if holdout:  # the golden file holds these samples as validation cases
            from attn_export.export.heldout import split_calibration

            feeds, held = split_calibration(feeds)
        source = f"{len(feeds)} samples from {calib_data}" + (
            f" ({len(held)} more held out for validation)" if held else "")
    else:
        shapes = dict(shapes or {})
        for spec in inputs:
            if spec.name not in shapes:
                if any(d is None for d in spec.shape):
                    raise ValidationError(
                        f"input {spec.describe()} has dynamic dims: give --calib-data or the "
                        "export shape to draw calibration samples at")
                shapes[spec.name] = spec.shape
        feeds = seeded_calibration_feeds(inputs, shapes, calib_samples, seed)
        source = f"{len(feeds)} seeded synthetic samples (seed {seed}); pass --calib-data"
    path = Path(output_path or precision_onnx_path(onnx_path, "int8"))
    return int8_from_onnx(onnx_path, path, feeds, source, quantize_gates=quantize_gates, **options)


@dataclass
class PrecisionExport:
    """A reduced-precision graph written beside BLOCK.onnx and its validation rows."""

    path: Path
    precision: str
    plan: PrecisionPlan
    rows: list = field(default_factory=list)
    kept_float: dict[str, str] = field(default_factory=dict)
    calibration: str = ""
    quantization: Int8Quantization | None = None
    golden: object = None  # the golden file, with meta["floor"] recorded

    @property
    def passed(self) -> bool:
        return all(r.comparison.passed for r in self.rows)


def precision_onnx_from_export(
    onnx_path: str | Path,
    golden_path: str | Path,
    precision: str,
    calib_data: str | Path | None = None,
    quantize_gates: bool = False,
    trt_version: str = "10.3",
    fp16_mode: str = "typed",
    seed: int = 0,
    output_path: str | Path | None = None,
) -> PrecisionExport:
    """Write BLOCK.fp16.onnx or BLOCK.int8.onnx from an export folder's float32 graph and judge it
    against the golden PyTorch outputs with the precision's tolerance, on ONNX Runtime CPU (FP16
    through :class:`Fp16RoundingRunner`, so FP16 rounding really happens).

    Args:
        onnx_path / golden_path: BLOCK.onnx and BLOCK.golden.npz of the export.
        precision: fp16 or int8.
        calib_data: INT8 calibration folder; also the FP16 range-check data when given.
        quantize_gates: F2 override for INT8.
        trt_version: the TensorRT the plan targets (recorded; the graph is the same for 10 and 11).
        fp16_mode: see :func:`plan_precision`.
        seed: seed of synthetic calibration samples.
        output_path: where to write the graph [BLOCK.PRECISION.onnx beside ``onnx_path``].
    """
    from attn_export.runtime.golden import load_golden
    from attn_export.runtime.validate import validate_runner

    if precision not in ("fp16", "int8"):
        raise ValidationError(f"precision {precision!r} has no reduced graph; expected fp16 or "
                              "int8 (fp32 is BLOCK.onnx itself)")
    plan = plan_precision(precision, trt_version, fp16_mode)
    golden = load_golden(golden_path)
    if precision == "fp16":
        feeds = [case.inputs for case in golden.cases]
        if calib_data is not None:
            from attn_export.export.check import load_onnx
            from attn_export.export.profiles import onnx_input_specs

            feeds = finite_feeds(calibration_feeds_from_dir(
                calib_data, onnx_input_specs(load_onnx(onnx_path))), calib_data)
        conv = write_fp16_onnx(onnx_path, output_path, sample_feeds=feeds)
        result = PrecisionExport(conv.path, precision, plan, kept_float=conv.kept_fp32)
        runner = Fp16RoundingRunner(conv.path)
    else:
        shapes = {name: array.shape for name, array in golden.cases[0].inputs.items()}
        from attn_export.export.heldout import natural_calibration_dir

        holdout = any(n.startswith("heldout") for n in golden.meta.get("input_kinds", {}))
        with natural_calibration_dir(golden, calib_data, seed) as (calib_data, natural):
            quant = write_int8_onnx(onnx_path, output_path, calib_data, shapes, quantize_gates,
                                    seed=seed, holdout=holdout)
            quant.calibration = natural or quant.calibration
            _record_int8_floor(golden, onnx_path, quant.path, calib_data, shapes, seed, holdout)
        result = PrecisionExport(quant.path, precision, plan, calibration=quant.calibration,
                                 kept_float={n: "kept float (gate, GEMV or attention BMM)"
                                             for n in quant.excluded}, quantization=quant)
        runner = OnnxRuntimeRunner(quant.path, ["CPUExecutionProvider"])
    with runner:
        result.rows = validate_runner(runner, golden, precision)
    result.golden = golden  # carries the INT8 floor to the artefact set
    if result.quantization is not None:
        result.rows = [int8_row(row, result.quantization) for row in result.rows]
    return result


def _record_int8_floor(golden, onnx_path, qdq_path, calib_data, shapes, seed,
                       holdout: bool) -> None:
    """The INT8 floor (float simulation at the calibrated scales) and its contrast with the gates
    quantized, in ``golden.meta["floor"]["int8"]`` (see ``export/floor_int8.py``)."""
    import warnings

    from attn_export.export.floor_int8 import record_int8_floor

    def gates_quantized(folder: Path) -> Path:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the seeded-calibration warning was given once
            return write_int8_onnx(onnx_path, folder / "gates.int8.onnx", calib_data, shapes,
                                   True, seed=seed, holdout=holdout).path

    record_int8_floor(golden, onnx_path, qdq_path, gates_quantized)


def _rewrite_golden(txn, golden_path, out) -> dict[str, str]:
    """Write the golden file again inside the artefact set when this stage recorded a floor in it
    (INT8), so validate and serve judge by it; returns its new hash for report.json."""
    from attn_export.atomic import sha256_file
    from attn_export.runtime.golden import save_golden

    golden_path = Path(golden_path)
    if out.golden is None or "int8" not in out.golden.meta.get("floor", {}) \
            or golden_path.parent != txn.folder:
        return {}
    staged = txn.write(golden_path.name, lambda tmp: save_golden(tmp, out.golden))
    return {golden_path.name: sha256_file(staged)}


def int8_row(row, quant: Int8Quantization):
    """The validation row of a Q/DQ graph, labelled for what it is: the INT8 share of its MACs,
    or that it quantized nothing (judged by the INT8 tolerance, it is really a float result)."""
    from dataclasses import replace

    if not quant.quantized:
        return replace(row, backend=f"{row.backend} int8 graph, nothing quantized (float)")
    return replace(row, backend=f"{row.backend} int8 ({100 * quant.macs.int8_share:.0f}% MACs)")


def int8_report(quant) -> dict:
    """What report.json says of a Q/DQ graph: how many nodes and what share of MACs are INT8."""
    if quant is None:
        return {}
    return {"quantized_nodes": len(quant.quantized), "int8_macs": quant.macs.int8,
            "total_macs": quant.macs.total, "int8_mac_share": round(quant.macs.int8_share, 4)}


def precision_set_from_export(onnx_path: str | Path, golden_path: str | Path, precision: str,
                              on_wait=None, more_report=None, **options) -> PrecisionExport:
    """:func:`precision_onnx_from_export` as one artefact set: BLOCK.PRECISION.onnx is written and
    validated in the staging folder, then moved into place together with report.json carrying its
    verdict and sha256; an interruption leaves the folder as it was.

    Args:
        onnx_path / golden_path / precision: see :func:`precision_onnx_from_export`.
        on_wait: called with a message when another process is writing into the same folder.
        more_report: called with the validated (staged) export; the dict it returns joins the
            report section, so measurements made on the staged graph (a network's INT8 proxies)
            land in the same set.
        **options: the other arguments of :func:`precision_onnx_from_export`.
    """
    from attn_export.atomic import ArtefactSet, sha256_file
    from attn_export.export.report import REPORT_NAME, read_report, report_text, report_with

    onnx_path = Path(onnx_path)
    folder, name = onnx_path.parent, precision_onnx_path(onnx_path, precision).name
    with ArtefactSet(folder, on_wait=on_wait) as txn:
        out = precision_onnx_from_export(onnx_path, golden_path, precision,
                                         output_path=txn.path(name), **options)
        staged = txn.register(name)
        section = {"file": name, "passed": out.passed, "calibration": out.calibration,
                   "kept_float": len(out.kept_float), "plan_notes": list(out.plan.notes),
                   "plan_trt": str(out.plan.trt_version),
                   "source_sha256": sha256_file(onnx_path), **int8_report(out.quantization),
                   "metrics": [r.to_dict() for r in out.rows]}
        section |= more_report(out) if more_report else {}
        hashes = {name: sha256_file(staged)} | _rewrite_golden(txn, golden_path, out)  # [verdicts]
        report = report_with(read_report(folder), precision, section, hashes)
        txn.write_text(REPORT_NAME, report_text(report))
    out.path = folder / name
    return out
