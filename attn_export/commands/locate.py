"""The glue behind ``attn-export validate MODEL --golden G --locate [--reference REF]``.

Pairings, chosen from MODEL and ``--reference``:

- an FP16 or INT8 graph -> its FP32 sibling (``X.fp16.onnx`` -> ``X.onnx`` beside it), or the ONNX
  named by ``--reference``: node by node (:mod:`attn_export.runtime.locate`);
- any ONNX with ``--reference pytorch`` (the default for an FP32 graph): the module rebuilt from
  the export's report.json (block or network, same seed and options), module by module
  (:mod:`attn_export.runtime.locate_torch`; needs torch);
- a TensorRT engine: TensorRT would have to mark every layer's output, which this build does not
  do; the command says so and points to locating the ONNX the engine was built from.

The location is printed and, when the golden file sits in an export folder, recorded in its
report.json under ``"locate"`` (keys: :meth:`attn_export.runtime.locate.Location.to_dict`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from attn_export.errors import ValidationError

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


def worst_case(rows) -> str:
    """The golden case the located run uses: where the graph is worst (by factor, then rel l2)."""
    def key(row):
        v = row.verdict
        factor = v.factor if v is not None and v.factor is not None else 0.0
        rel = row.comparison.rel_l2 if np.isfinite(row.comparison.rel_l2) else np.inf
        counts = v is None or v.counts
        return (counts, factor, rel)

    return max(rows, key=key).case


def locate_for_cli(model: Path, golden_path: Path, gold, rows, precision: str,
                   reference: str | None):
    """Locate the first bad node of ``model`` on its worst golden case; see the module docstring."""
    if model.suffix in ENGINE_SUFFIXES:
        raise ValidationError(
            f"--locate on a TensorRT engine needs TensorRT to mark every layer's output, which "
            f"this build does not do; locate the ONNX it was built from instead: attn-export "
            f"validate {model.with_suffix('.onnx').name} --golden {golden_path} --locate")
    case = worst_case(rows)
    feed = next(c.inputs for c in gold.cases if c.name == case)
    report = _report_beside(golden_path)
    blocks = [s["path"] for s in report.get("swaps", []) if isinstance(s, dict) and "path" in s]
    prepare = _fp16_prepare(model)
    if reference is None:
        sibling = model.with_name(model.name.split(".")[0] + ".onnx")
        reference = str(sibling) if precision != "fp32" and sibling != model else "pytorch"
    if reference == "pytorch":
        _require_torch()
        from attn_export.runtime.locate_torch import locate_against_torch

        module, input_names = module_from_report(report, golden_path)
        return locate_against_torch(model, module, feed, input_names, precision, case, blocks,
                                    prepare)
    from attn_export.runtime.locate import locate_against_onnx

    ref = Path(reference)
    if not ref.is_file():
        raise ValidationError(f"--reference {reference} is not a file; expected the FP32 ONNX "
                              "this graph was converted from, or `pytorch`")
    return locate_against_onnx(model, ref, feed, precision, case, prepare, blocks)


def _require_torch() -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        from attn_export.errors import MissingDependencyError

        raise MissingDependencyError(
            "--locate against PyTorch needs torch: pip install 'attn-export[torch]', or give "
            "--reference the FP32 ONNX to locate node by node") from None


def _fp16_prepare(model: Path):
    """FP16 graphs run with every FP16 tensor rounded, as they are validated."""
    from attn_export.export.check import load_onnx
    from attn_export.runtime.fp16_rounding import fp16_rounding_model, is_fp16_graph

    return fp16_rounding_model if is_fp16_graph(load_onnx(model)) else None


def _report_beside(golden_path: Path) -> dict:
    path = Path(golden_path).with_name("report.json")
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


def module_from_report(report: dict, golden_path: Path):
    """The PyTorch module an export folder's report.json describes, rebuilt (seeded weights or
    the recorded checkpoint), and its input names."""
    from attn_export.export.onnx_from_torch import io_names

    if not report.get("block"):
        raise ValidationError(f"no report.json beside {golden_path} says what was exported: pass "
                              "--reference with the FP32 ONNX to compare against")
    from attn_export.export.pipeline import resolve, source_for
    from attn_export.export.request import Clock, ExportRequest, network_request

    common = dict(input_shape=tuple(report["input_shape"]), seed=report.get("seed", 0),
                  dynamic=report.get("dynamic", "none"), output_dir=Path(golden_path).parent)
    if "network" in report:  # rebuilt as `attn-export model` built it, checkpoint included
        net = report["network"]
        checkpoint = (net.get("checkpoint") or {}).get("path")
        req = network_request(net["name"], net.get("sets") or {},
                              checkpoint=Path(checkpoint) if checkpoint else None,
                              layout=(net.get("checkpoint") or {}).get("source", "auto"),
                              attn=net.get("attn"), num_classes=net.get("num_classes"), **common)
    else:
        req = ExportRequest(
            block=report["block"], channels=report.get("channels"),
            variant=report.get("variant", "deploy"),
            kwargs={k: tuple(v) if isinstance(v, list) else v
                    for k, v in report.get("kwargs", {}).items()}, **common)
    req = resolve(req)
    module = source_for(req).build(req, Clock()).module
    return module.eval(), io_names(module)[0]


def record_location(golden_path: Path, location) -> None:
    """Add ``"locate"`` to the export folder's report.json (when the golden file is in one)."""
    path = Path(golden_path).with_name("report.json")
    if not path.is_file():
        return
    from attn_export.export.report import add_to_report

    add_to_report(path, "locate", location.to_dict())
