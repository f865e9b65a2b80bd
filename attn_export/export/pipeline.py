"""``attn-export BLOCK``: build, export, check, simplify, re-check, validate, write the artefacts.

Each stage is a plain function elsewhere; this module only orders them and records what happened.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from attn_export.atomic import write_text_atomic
from attn_export.errors import AttnExportError, BlockConfigError, ExportError, ShapeModeError
from attn_export.export.check import checked_onnx, op_types
from attn_export.export.onnx_from_torch import (
    DEFAULT_EXPORTER,
    INPUT_NAME,
    OUTPUT_NAME,
    check_opset,
    dynamic_dims,
    exporter_versions,
    onnx_from_torch,
)
from attn_export.export.simplified_onnx import DEFAULT_SIMPLIFIER, SIMPLIFIERS, simplified_onnx
from attn_export.modules.registry import block_info
from attn_export.runtime.compare import compare
from attn_export.runtime.golden import Golden, GoldenCase, save_golden
from attn_export.runtime.inputs import extra_shapes, load_user_inputs, standard_cases
from attn_export.runtime.validate import Row, validate_runner

DEFAULT_SPATIAL = (32, 32)


@dataclass
class ExportRequest:
    """What the user asked for; ``resolve`` fills the defaults and refuses what cannot work."""

    block: str
    channels: int | None = None
    input_shape: tuple[int, int, int, int] | None = None
    opset: int = 17
    exporter: str = DEFAULT_EXPORTER
    dynamic: str = "none"
    simplifier: str = DEFAULT_SIMPLIFIER
    variant: str = "deploy"
    kwargs: dict[str, Any] = field(default_factory=dict)
    output_dir: Path | None = None
    inputs: list[Path] = field(default_factory=list)
    seed: int = 0


@dataclass
class ExportResult:
    onnx_path: Path
    golden_path: Path
    report_path: Path
    rows: list[Row]
    report: dict

    @property
    def passed(self) -> bool:
        return self.report["passed"]


def resolve(req: ExportRequest) -> ExportRequest:
    """Fill defaults and check every option before any work is done."""
    info = block_info(req.block)
    check_opset(req.opset, req.exporter)
    dynamic_dims(req.dynamic)
    if req.simplifier not in SIMPLIFIERS:
        raise ExportError(f"unknown simplifier {req.simplifier!r}; expected one of "
                          f"{', '.join(SIMPLIFIERS)}")
    if req.dynamic not in info.shape_modes:
        raise ShapeModeError(
            f"{req.block} cannot be exported with --dynamic {req.dynamic}: "
            f"{info.refusal or 'the block does not support it'} (supported: "
            f"{', '.join(info.shape_modes)})"
        )
    if req.input_shape is not None:
        if len(req.input_shape) != 4 or min(req.input_shape) < 1:
            raise ShapeModeError(f"input shape {req.input_shape} must be 4 positive dims NxCxHxW")
        if req.channels is not None and req.channels != req.input_shape[1]:
            raise BlockConfigError(
                f"--channels {req.channels} disagrees with --input-shape channel dim "
                f"{req.input_shape[1]}; give one or make them equal"
            )
        req.channels = req.input_shape[1]
    req.channels = req.channels or info.default_channels
    req.input_shape = req.input_shape or (1, req.channels, *DEFAULT_SPATIAL)
    req.output_dir = Path(req.output_dir or Path("exports") / req.block)
    return req


def prepare_output_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AttnExportError(f"cannot create output folder {path}: {exc.strerror}; "
                              "choose another with --output-dir") from None
    if not os.access(path, os.W_OK):
        raise AttnExportError(f"output folder {path} is not writable; choose another with "
                              "--output-dir")
    return path


def build_block(req: ExportRequest):
    """The block with seeded weights and non-trivial norm statistics (identity BN hides bugs)."""
    import torch

    from attn_export.modules.factory import create_block

    kwargs = dict(req.kwargs)
    if block_info(req.block).needs_geometry and req.variant == "deploy":
        kwargs.setdefault("input_size", tuple(req.input_shape[2:]))
    torch.manual_seed(req.seed)
    module = create_block(req.block, req.channels, req.variant, **kwargs)
    randomize_norm_statistics(module, req.seed)
    return module.eval()


def randomize_norm_statistics(module, seed: int = 0) -> None:
    import torch
    from torch import nn

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) * 0.5 + 0.75)
            if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)) \
                    and getattr(m, "weight", None) is not None:
                m.weight.copy_(1 + torch.randn(m.weight.shape, generator=gen) * 0.1)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)


def golden_from_torch(module, req: ExportRequest) -> Golden:
    """Inputs of every kind at the export shape and the extra shapes, with PyTorch's outputs."""
    from attn_export.runtime.torch_runner import TorchRunner

    cases = standard_cases(req.input_shape, req.seed)
    for i, shape in enumerate(extra_shapes(req.input_shape, req.dynamic)):
        cases += [(name, arr) for name, arr in standard_cases(shape, req.seed + 1 + i)
                  if name.startswith(("normal", "relu_large"))]
    cases += load_user_inputs(req.inputs, req.channels)
    dims = dynamic_dims(req.dynamic)
    accepted = tuple(None if i in dims else d for i, d in enumerate(req.input_shape))
    runner = TorchRunner(module, [INPUT_NAME], [OUTPUT_NAME], [accepted])
    golden_cases = []
    for name, array in cases:
        outputs = runner.infer({INPUT_NAME: array})
        bad = [k for k, v in outputs.items() if not np.isfinite(v).all()]
        if bad:
            raise ExportError(f"{req.block}: PyTorch output {bad[0]} is not finite on input "
                              f"{name}; the block divides by a vanishing statistic")
        golden_cases.append(GoldenCase(name, {INPUT_NAME: array}, outputs))
    return Golden(golden_cases, {"block": req.block, "cases": [c.name for c in golden_cases],
                                 "input_shape": list(req.input_shape), "dynamic": req.dynamic,
                                 "opset": req.opset, "precision": "fp32"})


def check_simplification(raw: Path, simplified: Path, golden: Golden) -> None:
    """Simplification must change no output beyond float32 reordering (the fp32 tolerance row:
    fused or reordered ops move large activations by a few ulps), compared on every case."""
    from attn_export.runtime.onnxruntime_runner import OnnxRuntimeRunner

    with OnnxRuntimeRunner(raw) as a, OnnxRuntimeRunner(simplified) as b:
        for case in golden.cases:
            out_a, out_b = a.infer(case.inputs), b.infer(case.inputs)
            for name in out_a:
                c = compare(out_b[name], out_a[name], "fp32", name)
                if not c.passed:
                    raise ExportError(f"simplification changed output {name} on {case.name} "
                                      f"(max abs diff {c.max_abs:.3g}); use --simplifier none")


def export_block(req: ExportRequest) -> ExportResult:
    """Run the whole job for one block; see the module docstring."""
    from attn_export.runtime.onnxruntime_runner import OnnxRuntimeRunner

    req = resolve(req)
    out = prepare_output_dir(req.output_dir)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        timings[stage] = round(time.perf_counter() - clock, 3)
        clock = time.perf_counter()

    module = build_block(req)
    golden = golden_from_torch(module, req)
    lap("torch")
    onnx_path = out / f"{req.block}.onnx"
    # Scratch beside the target: os.replace cannot cross mounts (Docker volumes, tmpfs).
    with tempfile.TemporaryDirectory(prefix=".attn-export-", dir=out) as tmp:
        raw = onnx_from_torch(module, req.input_shape, Path(tmp) / "raw.onnx", req.opset,
                              req.exporter, req.dynamic)
        raw_ops = op_types(checked_onnx(raw))
        lap("export")
        simplified = simplified_onnx(raw, Path(tmp) / "simplified.onnx", req.simplifier)
        final_ops = op_types(checked_onnx(simplified))
        check_simplification(raw, simplified, golden)
        lap("simplify")
        os.replace(simplified, onnx_path)
    with OnnxRuntimeRunner(onnx_path) as ort_runner:
        rows = validate_runner(ort_runner, golden, "fp32")
    lap("validate")
    golden_path = out / f"{req.block}.golden.npz"
    save_golden(golden_path, golden)
    report = build_report(req, rows, timings, raw_ops, final_ops, onnx_path, golden_path)
    report_path = write_text_atomic(out / "report.json", json.dumps(report, indent=2) + "\n")
    return ExportResult(onnx_path, golden_path, report_path, rows, report)


def build_report(req, rows, timings, raw_ops, final_ops, onnx_path, golden_path) -> dict:
    return {
        "block": req.block,
        "variant": req.variant,
        "channels": req.channels,
        "kwargs": {k: list(v) if isinstance(v, tuple) else v for k, v in req.kwargs.items()},
        "opset": req.opset,
        "exporter": req.exporter,
        "dynamic": req.dynamic,
        "simplifier": req.simplifier,
        "input_shape": list(req.input_shape),
        "validated_shapes": sorted({r.case.split("@")[1] for r in rows}),
        "versions": exporter_versions() | {"platform": platform.platform()},
        "files": {"onnx": onnx_path.name, "golden": golden_path.name},
        "graph": {"ops_exported": raw_ops, "ops_simplified": final_ops,
                  "nodes_exported": sum(raw_ops.values()),
                  "nodes_simplified": sum(final_ops.values())},
        "tolerance": rows[0].comparison.tolerance.__dict__ if rows else {},
        "metrics": [r.to_dict() for r in rows],
        "timings_s": timings,
        "passed": all(r.comparison.passed for r in rows),
    }


def add_to_report(report_path: str | Path, key: str, value: Any) -> dict:
    """Record a later stage (a reduced-precision graph, an engine) in an export's report.json."""
    report_path = Path(report_path)
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    report[key] = value
    report["passed"] = report.get("passed", True) and value.get("passed", True)
    write_text_atomic(report_path, json.dumps(report, indent=2) + "\n")
    return report
