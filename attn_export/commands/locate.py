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
    from attn_export.export.fp16_from_onnx import fp16_rounding_model, is_fp16_graph

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
    if "network" in report:
        module = _network_from_report(report)
    else:
        from attn_export.export.pipeline import ExportRequest, build_block, resolve

        req = resolve(ExportRequest(
            block=report["block"], channels=report.get("channels"),
            input_shape=tuple(report["input_shape"]), variant=report.get("variant", "deploy"),
            kwargs={k: tuple(v) if isinstance(v, list) else v
                    for k, v in report.get("kwargs", {}).items()},
            seed=report.get("seed", 0), dynamic=report.get("dynamic", "none"),
            output_dir=Path(golden_path).parent))
        module = build_block(req)
    return module, io_names(module)[0]


def _network_from_report(report: dict):
    import torch

    from attn_export.models.export import ModelRequest, prepared_model, resolve_model_request
    from attn_export.models.swap_report import deploy_with_report
    from attn_export.models.user import is_user_spec

    net = report["network"]
    checkpoint = (net.get("checkpoint") or {}).get("path")
    req = ModelRequest(model=net["name"], checkpoint=Path(checkpoint) if checkpoint else None,
                       source=(net.get("checkpoint") or {}).get("source", "auto"),
                       attn=None if is_user_spec(net["name"]) else net.get("attn"),
                       sets=net.get("sets") or {}, input_shape=tuple(report["input_shape"]),
                       num_classes=net.get("num_classes"), seed=report.get("seed", 0))
    card = resolve_model_request(req)
    model, _ = prepared_model(req, card, lambda _m: None)
    example = torch.from_numpy(np.random.default_rng(req.seed).standard_normal(
        req.input_shape, dtype=np.float32))
    deployed, _, _ = deploy_with_report(model, example)
    return deployed.eval()


def record_location(golden_path: Path, location) -> None:
    """Add ``"locate"`` to the export folder's report.json (when the golden file is in one)."""
    path = Path(golden_path).with_name("report.json")
    if not path.is_file():
        return
    from attn_export.export.pipeline import add_to_report

    add_to_report(path, "locate", location.to_dict())
