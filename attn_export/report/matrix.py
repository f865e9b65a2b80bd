"""The compatibility matrix, measured: block x form x exporter x opset x shape mode x precision.

Each cell exports one block (``export_block``: export, check, simplify, validate against
PyTorch), then derives and validates its FP16 and INT8 graphs on ONNX Runtime, and lints the
float32 graph for every TensorRT version we describe. Cells run in worker processes (one per
core, one intra-op thread each) and are appended to ``PATH.partial.jsonl`` as they finish, so an
interrupted run resumes where it stopped; ``matrix.json`` is written once every cell is in.
"""

from __future__ import annotations

import itertools
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

OPSETS = (11, 13, 17, 18, 21)
FORMS = ("deploy", "reference")
EXPORTERS = ("torchscript", "dynamo")
PRECISIONS = ("fp32", "fp16", "int8")
CELL_SIZE = 16
"""H = W of each cell's export: small, so the full matrix fits a 2-core evening."""


@dataclass(frozen=True)
class Cell:
    """One export: which block, which form, how it is exported."""

    block: str
    form: str
    exporter: str
    opset: int
    mode: str

    @property
    def key(self) -> str:
        return f"{self.block}/{self.form}/{self.exporter}/{self.opset}/{self.mode}"


def lint_versions() -> list[str]:
    """The concrete TensorRT versions the lint tables describe (aliases such as 10.x left out)."""
    from attn_export.export.lint.table import table_versions

    return table_versions()


def plan_cells(blocks: Sequence[str], forms: Sequence[str] = FORMS,
               exporters: Sequence[str] = EXPORTERS, opsets: Sequence[int] = OPSETS,
               modes: Sequence[str] | None = None) -> list[Cell]:
    """Every combination; a deploy form's unsupported shape modes are left out (refused by design,
    and that refusal has its own test)."""
    from attn_export.modules.registry import BLOCKS, SHAPE_MODES

    cells = []
    for block, form, exporter, opset, mode in itertools.product(
            blocks, forms, exporters, opsets, modes or SHAPE_MODES):
        if form == "deploy" and mode not in BLOCKS[block].shape_modes:
            continue
        cells.append(Cell(block, form, exporter, opset, mode))
    return cells


def _outcome(rows) -> dict:
    """pass / FAIL with the worst error of a list of validation rows."""
    bad = [r for r in rows if not r.comparison.passed]
    judged = bad or rows
    worst = max(judged, key=lambda r: r.comparison.max_abs) if judged else None
    out = {"outcome": "FAIL" if bad else "pass"}
    if worst is not None:
        out |= {"max_abs": float(worst.comparison.max_abs), "case": worst.case,
                "rel_l2": float(getattr(worst.comparison, "rel_l2", float("nan")))}
    return out


def _failure(exc: BaseException) -> dict:
    from attn_export.errors import AttnExportError

    kind = "ERROR" if isinstance(exc, AttnExportError) else "CRASH"
    text = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
    return {"outcome": kind, "reason": text}


def run_cell(cell: Cell, precisions: Sequence[str] = PRECISIONS,
             versions: Sequence[str] | None = None) -> dict:
    """Measure one cell; every failure is an outcome, never an exception."""
    from attn_export.export.lint import lint_onnx
    from attn_export.export.pipeline import ExportRequest, export_block
    from attn_export.export.precision import precision_onnx_from_export
    from attn_export.modules.registry import BLOCKS

    record: dict = {**asdict(cell), "key": cell.key, "precisions": {}, "lint": {}}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        shape = (1, BLOCKS[cell.block].default_channels, CELL_SIZE, CELL_SIZE)
        try:
            result = export_block(ExportRequest(
                block=cell.block, variant=cell.form, input_shape=shape, opset=cell.opset,
                exporter=cell.exporter, dynamic=cell.mode, output_dir=Path(tmp)))
        except Exception as exc:  # a crash is a measured outcome here, not a reason to stop
            record["precisions"] = {p: _failure(exc) for p in precisions}
            record["seconds"] = round(time.perf_counter() - start, 2)
            return record
        record["precisions"]["fp32"] = _outcome(result.rows)
        for precision in (p for p in precisions if p != "fp32"):
            try:
                derived = precision_onnx_from_export(result.onnx_path, result.golden_path,
                                                     precision)
                record["precisions"][precision] = _outcome(derived.rows)
            except Exception as exc:  # noqa: BLE001 - measured, as above
                record["precisions"][precision] = _failure(exc)
        for version in versions if versions is not None else lint_versions():
            try:
                record["lint"][version] = "accept" if lint_onnx(result.onnx_path,
                                                                version).passed else "reject"
            except Exception as exc:  # noqa: BLE001
                record["lint"][version] = f"error: {str(exc)[:80]}"
    record["seconds"] = round(time.perf_counter() - start, 2)
    return record


def _worker_init() -> None:
    """One intra-op thread per worker (the workers are the parallelism); the seeded-calibration
    warning of every INT8 cell is expected here and would drown the progress lines."""
    import warnings

    import torch

    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
    warnings.filterwarnings("ignore", message="no --calib-data given")


def _run_one(args: tuple[Cell, tuple[str, ...], tuple[str, ...]]) -> dict:
    cell, precisions, versions = args
    return run_cell(cell, precisions, versions)


def partial_path(out: Path) -> Path:
    return out.with_name(out.name + ".partial.jsonl")


def done_keys(out: Path) -> dict[str, dict]:
    """Records already measured by an interrupted run (a torn last line is ignored)."""
    records = {}
    path = partial_path(out)
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            records[record["key"]] = record
    return records


def run_matrix(out: Path, cells: Iterable[Cell], precisions: Sequence[str] = PRECISIONS,
               workers: int | None = None, progress: Callable[[str], None] = print) -> dict:
    """Measure every cell not measured yet, in ``workers`` processes; write ``out`` at the end."""
    import multiprocessing as mp

    cells = list(cells)
    records = done_keys(out)
    todo = [c for c in cells if c.key not in records]
    versions = tuple(lint_versions())
    workers = workers or min(os.cpu_count() or 1, 2)
    if records:
        progress(f"resuming: {len(cells) - len(todo)} of {len(cells)} cells already measured")
    start = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    with partial_path(out).open("a") as log:
        if todo:
            ctx = mp.get_context("spawn")
            with ctx.Pool(workers, initializer=_worker_init) as pool:
                jobs = ((c, tuple(precisions), versions) for c in todo)
                for i, record in enumerate(pool.imap_unordered(_run_one, jobs), 1):
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                    records[record["key"]] = record
                    left = (time.perf_counter() - start) / i * (len(todo) - i)
                    summary = " ".join(f"{p}:{v['outcome']}" for p, v in
                                       record["precisions"].items())
                    progress(f"[{i}/{len(todo)}, ~{left / 60:.0f} min left] {record['key']}: "
                             f"{summary}")
    matrix = {"versions": _versions(), "cell_size": CELL_SIZE, "lint_versions": list(versions),
              "cells": [records[c.key] for c in cells]}
    from attn_export.atomic import write_atomic

    write_atomic(out, lambda tmp: tmp.write_text(json.dumps(matrix, indent=1)))
    partial_path(out).unlink(missing_ok=True)
    return matrix


def _versions() -> dict[str, str]:
    from attn_export.export.onnx_from_torch import exporter_versions

    return exporter_versions()
