"""The stages every export runs, whatever built the module: golden outputs, the simplification
re-check, the stamped graph, and carrying the derived precision graphs over.

Each is a plain function; :mod:`attn_export.export.pipeline` calls them in order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from attn_export.atomic import ArtefactSet, sha256_file
from attn_export.errors import ExportError
from attn_export.export.onnx_from_torch import INPUT_NAME, dynamic_dims, io_names
from attn_export.runtime.compare import compare
from attn_export.runtime.golden import Golden, GoldenCase
from attn_export.runtime.inputs import extra_feeds, extra_shapes, load_user_inputs, standard_cases
from attn_export.runtime.network_rule import JUDGED_AS_NETWORK, network_comparison


def randomize_norm_statistics(module, seed: int = 0) -> None:
    """Non-trivial norm statistics and affine parameters: identity BatchNorms hide bugs."""
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


def golden_from_torch(module, req, label: str | None = None, judged_as: str | None = None
                      ) -> Golden:
    """Inputs of every kind at the export shape and the extra shapes, with PyTorch's outputs.

    Args:
        module: the built (and swapped) module, in eval mode.
        req: the resolved :class:`~attn_export.export.request.ExportRequest`.
        label: the name the golden file records [``req.block``].
        judged_as: ``"network"`` to have every later validation judge by the network rule.
    """
    from attn_export.export.floor_torch import record_float_floors
    from attn_export.export.heldout import labelled_cases
    from attn_export.runtime.torch_runner import TorchRunner

    label = label or req.block
    cases = standard_cases(req.input_shape, req.seed)
    for i, shape in enumerate(extra_shapes(req.input_shape, req.dynamic)):
        cases += [(name, arr) for name, arr in standard_cases(shape, req.seed + 1 + i)
                  if name.startswith(("normal", "relu_large"))]
    dims = dynamic_dims(req.dynamic)
    accepted = tuple(None if i in dims else d for i, d in enumerate(req.input_shape))
    cases, kinds = labelled_cases(cases, load_user_inputs(req.inputs, req.channels), req, accepted)
    input_names, output_names, extras = io_names(module)  # several for dia, sca
    runner = TorchRunner(module, input_names, output_names,
                         [accepted, *((accepted[0], *shape) for shape in extras.values())])
    golden_cases = []
    for i, (name, array) in enumerate(cases):
        feed = {INPUT_NAME: array, **extra_feeds(extras, array.shape[0], req.seed + 100 + i)}
        outputs = runner.infer(feed)
        bad = [k for k, v in outputs.items() if not np.isfinite(v).all()]
        if bad:  # inputs are finite (load_user_inputs refuses others): the block itself overflowed
            tiny = "; a map of one pixel has no spatial statistics: use H*W >= 2" \
                if array.shape[2] * array.shape[3] == 1 else ""
            raise ExportError(f"{label}: PyTorch output {bad[0]} is not finite on the finite "
                              f"input {name}; the block overflows or divides by a vanishing "
                              f"statistic at this input{tiny}")
        golden_cases.append(GoldenCase(name, feed, outputs))
    meta = {"block": label, "cases": [c.name for c in golden_cases],
            "input_shape": list(req.input_shape), "dynamic": req.dynamic, "opset": req.opset,
            "precision": "fp32", "input_kinds": kinds}
    if judged_as:
        meta["judged_as"] = judged_as  # `attn-export validate` applies the same rule
    golden = Golden(golden_cases, meta)
    record_float_floors(module, golden, input_names)  # what FP16 costs here, judged torch-free
    return golden


def check_simplification(raw: Path, simplified: Path, golden: Golden) -> None:
    """Simplification must change no output beyond float32 reordering, compared on every case,
    by the judge of the golden file: the fp32 tolerance row for a block (fused or reordered ops
    move large activations by a few ulps), the network rule for a whole network."""
    from attn_export.runtime.onnxruntime_runner import OnnxRuntimeRunner

    network = golden.meta.get("judged_as") == JUDGED_AS_NETWORK
    with OnnxRuntimeRunner(raw) as a, OnnxRuntimeRunner(simplified) as b:
        for case in golden.cases:
            out_a, out_b = a.infer(case.inputs), b.infer(case.inputs)
            for name in out_a:
                c = compare(out_b[name], out_a[name], "fp32", name)
                if network:
                    c = network_comparison(c, out_a[name], "fp32")
                if not c.passed:
                    raise ExportError(f"simplification changed output {name} on {case.name} "
                                      f"(max abs diff {c.max_abs:.3g}); use --simplifier none")


def stamp_onnx(source: Path, target: Path, metadata: dict[str, str]) -> None:
    """Copy the graph with what it holds in its metadata (``attn_export.block`` ...), so
    ``validate`` can name the block of a model and of a golden file that do not belong together."""
    import onnx

    model = onnx.load(str(source), load_external_data=False)
    for key, value in metadata.items():
        entry = next((p for p in model.metadata_props if p.key == key), None)
        entry = entry or model.metadata_props.add(key=key)
        entry.value = value
    onnx.save(model, str(target))


def keep_derived(report: dict, txn: ArtefactSet, onnx_name: str) -> None:
    """Carry the precision graphs of the previous export over when LABEL.onnx came out
    byte-identical (same block or network, options and seed): they still derive from it.
    Otherwise they are stale and the set removes them (``derived_names``) with their report
    sections."""
    from attn_export.export.report import read_report

    old = read_report(txn.folder)
    if old.get("sha256", {}).get(onnx_name) != report["sha256"][onnx_name]:
        return
    for precision in ("fp16", "int8"):
        section = old.get(precision)
        name = section.get("file") if isinstance(section, dict) else None
        digest = old["sha256"].get(name or "")
        if name and digest and (txn.folder / name).is_file() \
                and sha256_file(txn.folder / name) == digest:
            report[precision] = section
            report["sha256"][name] = digest
            report["passed"] = report["passed"] and section.get("passed", True)
            txn.remove = [n for n in txn.remove if n != name]
