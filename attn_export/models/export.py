"""``attn-export model``: build or load a network, convert its checkpoint, swap its blocks for their
deploy twins (proven equal), export, simplify, validate on ONNX Runtime, write golden and report.

The stages are the block pipeline's own functions (``onnx_from_torch``, ``simplified_onnx``,
``check_simplification``, ``golden_from_torch``, ``validate_runner``); this module adds what only
a network has: building by name or from a user's file, checkpoint layouts, and the swap report.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attn_export.errors import BlockConfigError, ExportError, ShapeModeError

Progress = Callable[[str], None]


@dataclass
class ModelRequest:
    """What the user asked for (``resolve_model_request`` fills the defaults)."""

    model: str
    checkpoint: Path | None = None
    source: str = "auto"
    attn: str | None = None
    sets: dict[str, Any] = field(default_factory=dict)
    input_shape: tuple[int, int, int, int] | None = None
    dynamic: str = "none"
    num_classes: int | None = None
    opset: int = 17
    exporter: str = "torchscript"
    simplifier: str = "onnxslim"
    output_dir: Path | None = None
    inputs: list[Path] = field(default_factory=list)
    seed: int = 0
    maps: tuple[str, ...] = ()  # --map CLASS=BLOCK[:SOURCE]


@dataclass
class ModelExport:
    onnx_path: Path
    golden_path: Path
    report_path: Path
    rows: list
    report: dict
    swaps: list
    task: str

    @property
    def passed(self) -> bool:
        return self.report["passed"]


def label_of(spec: str) -> str:
    """The artefact stem: the registry name, or the user's function (file stem for ``build``)."""
    from attn_export.models.user import is_user_spec, parse_user_spec

    if not is_user_spec(spec):
        return spec
    path, func = parse_user_spec(spec)
    return path.stem if func == "build" else f"{path.stem}_{func}"


def _check_shape(req: ModelRequest, card) -> None:
    from attn_export.export.onnx_from_torch import check_opset, dynamic_dims

    check_opset(req.opset, req.exporter)
    dynamic_dims(req.dynamic)
    n, c, h, w = req.input_shape
    multiple = card.size_multiple if card else 1
    if c != 3 and card is not None:
        raise ShapeModeError(f"{req.model} takes 3-channel images, got --input-shape with {c}")
    if h % multiple or w % multiple:
        raise ShapeModeError(f"{req.model}: H and W must be multiples of {multiple} (its skip "
                             f"connections join maps of strides up to {multiple}), got {h}x{w}")
    if req.dynamic == "all" and multiple > 1:
        raise ShapeModeError(f"{req.model} cannot be validated with --dynamic all: its maps must "
                             f"stay multiples of {multiple}; use --dynamic batch")


def resolve_model_request(req: ModelRequest):
    """Defaults from the card; refuse what cannot work before anything is built. Returns the card
    (None for a user's file)."""
    from attn_export.models.registry import model_card
    from attn_export.models.user import is_user_spec

    card = None if is_user_spec(req.model) else model_card(req.model)
    if req.input_shape is None:
        size = card.test_size if card else (224, 224)
        req.input_shape = (1, 3, *size)
    _check_shape(req, card)
    req.output_dir = Path(req.output_dir or Path("exports") / label_of(req.model))
    return card


def build_model(req: ModelRequest, card):
    """The network with PyTorch's initialisation, seeded, before any checkpoint."""
    import torch

    from attn_export.models import create_model
    from attn_export.models.user import build_user_model

    kwargs = dict(req.sets)
    if req.num_classes is not None:
        kwargs["num_classes"] = req.num_classes
    torch.manual_seed(req.seed)
    if card is None:
        if req.attn is not None:
            raise BlockConfigError("--attn applies to registry networks; your builder decides "
                                   "its own blocks (pass them with --set if it takes them)")
        return build_user_model(req.model, **kwargs)
    return create_model(req.model, **_split_sets(req, card, kwargs))


def _split_sets(req: ModelRequest, card, kwargs: dict) -> dict:
    """``--set`` keys the builder takes go to it; the others are the block's arguments."""
    import inspect

    from attn_export.models.registry import model_builder

    accepted = set(inspect.signature(model_builder(req.model)).parameters)
    builder = {k: v for k, v in kwargs.items() if k in accepted}
    block = {k: v for k, v in kwargs.items() if k not in accepted}
    if req.attn is not None:
        builder["attn"] = req.attn
    if block:
        if builder.get("attn", card.attn) is None:
            raise BlockConfigError(f"{req.model}: --set {', '.join(block)} is not an argument of "
                                   "the network and there is no block to give it to (--attn)")
        builder["attn_kwargs"] = {**builder.get("attn_kwargs", {}), **block}
    return builder


def prepared_model(req: ModelRequest, card, progress: Progress):
    """Build, load the checkpoint (or seed the norm statistics), eval mode."""
    from attn_export.export.pipeline import randomize_norm_statistics
    from attn_export.models.checkpoints import load_network_checkpoint

    progress(f"building {req.model}")
    model = build_model(req, card)
    loaded = None
    if req.checkpoint is not None:
        progress(f"loading {req.checkpoint} ({req.source} layout)")
        loaded = load_network_checkpoint(model, req.checkpoint, req.source, req.model)
    else:
        randomize_norm_statistics(model, req.seed)  # identity BN statistics hide bugs
    return model.eval(), loaded


def export_model(req: ModelRequest, progress: Progress = lambda _m: None) -> ModelExport:
    """Run the whole job for one network; see the module docstring."""
    import numpy as np
    import torch

    from attn_export.atomic import ArtefactSet
    from attn_export.export.pipeline import ExportRequest, derived_names, prepare_output_dir
    from attn_export.models.swap_report import deploy_with_report
    from attn_export.modules.recognise.mapping import resolve_map

    card = resolve_model_request(req)
    clock = {"t": time.perf_counter(), "laps": {}}

    def lap(stage: str) -> None:
        now = time.perf_counter()
        clock["laps"][stage] = round(now - clock["t"], 3)
        clock["t"] = now

    model, loaded = prepared_model(req, card, progress)
    example = torch.from_numpy(np.random.default_rng(req.seed).standard_normal(
        req.input_shape, dtype=np.float32))
    progress("swapping blocks for their deploy twins (to_deploy, checked on a real input)")
    deployed, swaps, network_diff = deploy_with_report(model, example,
                                                       mapping=resolve_map(req.maps, model))
    lap("build_swap")
    out = prepare_output_dir(req.output_dir)  # only once the network built: no empty folder
    label = label_of(req.model)
    ereq = ExportRequest(block=label, channels=req.input_shape[1], input_shape=req.input_shape,
                         opset=req.opset, exporter=req.exporter, dynamic=req.dynamic,
                         simplifier=req.simplifier, output_dir=out, inputs=req.inputs,
                         seed=req.seed)
    # one artefact set, like a block export: NETWORK.onnx, its golden file and report.json land
    # together or not at all (attn_export.atomic), and stale precision graphs go with them
    with ArtefactSet(out, remove=derived_names(label)) as txn:
        onnx_path, rows, golden_path, ops, hashes = _export_stages(deployed, ereq, txn, label,
                                                                   lap, progress)
        report = _report(req, card, ereq, rows, clock["laps"], ops, onnx_path, golden_path,
                         swaps, network_diff, loaded, deployed)
        report["sha256"] = hashes
        report_path = txn.final_path("report.json")
        txn.write_text("report.json", json.dumps(report, indent=2) + "\n")
    return ModelExport(onnx_path, golden_path, report_path, rows, report, swaps,
                       card.task if card else "unknown")


def _export_stages(module, ereq, txn, label: str, lap, progress):
    """golden -> export -> check -> simplify -> re-check -> validate: the block pipeline's stages,
    judged by the network rule (``runtime/network_rule.py``), staged in ``txn`` (an ArtefactSet)."""
    from attn_export.atomic import sha256_file
    from attn_export.export.check import checked_onnx, op_types
    from attn_export.export.onnx_from_torch import onnx_from_torch
    from attn_export.export.pipeline import golden_from_torch, stamp_onnx
    from attn_export.export.simplified_onnx import simplified_onnx
    from attn_export.runtime.golden import save_golden
    from attn_export.runtime.network_rule import JUDGED_AS_NETWORK, check_network_simplification
    from attn_export.runtime.onnxruntime_runner import OnnxRuntimeRunner
    from attn_export.runtime.validate import validate_runner

    progress("running PyTorch on the validation inputs (golden outputs)")
    golden = golden_from_torch(module, ereq)
    golden.meta["judged_as"] = JUDGED_AS_NETWORK  # `attn-export validate` applies the same rule
    lap("torch")
    scratch = txn.scratch()
    progress(f"exporting to ONNX (opset {ereq.opset}, {ereq.exporter})")
    raw = onnx_from_torch(module, ereq.input_shape, scratch / "raw.onnx", ereq.opset,
                          ereq.exporter, ereq.dynamic)
    raw_ops = op_types(checked_onnx(raw))
    lap("export")
    progress(f"simplifying ({ereq.simplifier}) and checking the simplified graph")
    simplified = simplified_onnx(raw, scratch / "simplified.onnx", ereq.simplifier)
    final_ops = op_types(checked_onnx(simplified))
    check_network_simplification(raw, simplified, golden)
    lap("simplify")
    onnx_name, golden_name = f"{label}.onnx", f"{label}.golden.npz"
    staged_onnx = txn.write(onnx_name, lambda tmp: stamp_onnx(simplified, tmp, ereq))
    progress(f"validating ONNX Runtime against PyTorch on {len(golden.cases)} inputs")
    with OnnxRuntimeRunner(staged_onnx) as runner:
        rows = validate_runner(runner, golden, "fp32")  # the network rule: see golden.meta
    lap("validate")
    golden.meta["model_sha256"] = sha256_file(staged_onnx)
    staged_golden = txn.write(golden_name, lambda tmp: save_golden(tmp, golden))
    hashes = {onnx_name: golden.meta["model_sha256"], golden_name: sha256_file(staged_golden)}
    return (txn.final_path(onnx_name), rows, txn.final_path(golden_name), (raw_ops, final_ops),
            hashes)


def _report(req, card, ereq, rows, timings, ops, onnx_path, golden_path, swaps, network_diff,
            loaded, deployed) -> dict:
    from attn_export.export.pipeline import build_report
    from attn_export.models import count_parameters

    report = build_report(ereq, rows, timings, ops[0], ops[1], onnx_path, golden_path)
    report.pop("variant", None)
    report.pop("kwargs", None)
    report["network"] = {
        "name": req.model, "task": card.task if card else "unknown",
        "attn": req.attn or (card.attn if card else None), "sets": req.sets,
        "num_classes": req.num_classes, "parameters": count_parameters(deployed),
        "checkpoint": loaded.to_dict() if loaded else None,
    }
    report["swaps"] = [s.to_dict() for s in swaps]
    report["swap_network_max_abs_diff"] = network_diff
    return report


def format_swaps(swaps, network_diff: float) -> str:
    """The swap table the command prints: every block, what replaced it, the difference."""
    from attn_export.models.swap_report import format_swap_records

    return format_swap_records(swaps, network_diff)


def check_passed(result: ModelExport) -> None:
    if not result.passed:
        raise ExportError(f"{result.onnx_path}: ONNX Runtime differs from PyTorch beyond the fp32 "
                          "tolerance (see the table)")
