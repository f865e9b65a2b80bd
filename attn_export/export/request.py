"""What an export is asked to do and what it gives back: one request, one result, one clock.

Blocks, registered networks and a user's ``FILE.py:FUNCTION`` are exported by the same stages
(:mod:`attn_export.export.pipeline`); the request's ``kind`` picks the source that builds the
module (:mod:`attn_export.export.sources`), which is all that differs between them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attn_export.atomic import fault_point
from attn_export.errors import AttnExportError
from attn_export.export.onnx_from_torch import DEFAULT_EXPORTER
from attn_export.export.simplified_onnx import DEFAULT_SIMPLIFIER

Progress = Callable[[str], None]
KINDS = ("block", "network")
DEFAULT_SPATIAL = (32, 32)
"""H x W of a block export when neither --input-shape nor the block says otherwise."""


@dataclass
class ExportRequest:
    """What the user asked for; ``pipeline.resolve`` fills the defaults and refuses what cannot
    work, before any work is done.

    ``block`` names what is exported: a block (``kind="block"``), or a registered network or a
    user's ``FILE.py:FUNCTION`` (``kind="network"``). ``kwargs`` are the ``--set`` values: the
    block's arguments, or a network builder's (those it does not take go to its blocks).
    """

    block: str
    kind: str = "block"
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
    checkpoint: Path | None = None
    layout: str = "auto"
    attn: str | None = None
    num_classes: int | None = None
    maps: tuple[str, ...] = ()  # --map CLASS=BLOCK[:SOURCE]: the user's classes to swap
    calib_data: Path | None = None  # its held-out samples become validation cases
    natural: bool = False  # also validate on natural images (scikit-learn's photographs)


def network_request(model: str, sets: dict[str, Any] | None = None, **options: Any
                    ) -> ExportRequest:
    """The request of ``attn-export model MODEL``: ``sets`` are its ``--set`` values."""
    return ExportRequest(block=model, kind="network", kwargs=dict(sets or {}), **options)


@dataclass
class ExportResult:
    """The files of one committed export set and what was measured on them."""

    onnx_path: Path
    golden_path: Path
    report_path: Path
    rows: list
    report: dict
    swaps: list = field(default_factory=list)
    task: str | None = None

    @property
    def passed(self) -> bool:
        return self.report["passed"]


class Clock:
    """The one progress clock of an export: stage timings for the report, a fault point after
    every stage (``stage:NAME``, see :func:`attn_export.atomic.fault_point`), and progress
    messages for a caller that prints them."""

    def __init__(self, progress: Progress | None = None) -> None:
        self.laps: dict[str, float] = {}
        self._progress = progress
        self._start = time.perf_counter()

    def say(self, message: str) -> None:
        if self._progress is not None:
            self._progress(message)

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.laps[stage] = round(now - self._start, 3)
        self._start = now
        fault_point(f"stage:{stage}")


def derived_names(label: str) -> list[str]:
    """Files derived from LABEL.onnx that a new export makes stale (their report entries go too)."""
    return [f"{label}.fp16.onnx", f"{label}.int8.onnx"]


def prepare_output_dir(path: Path) -> Path:
    """Refuse an output folder that cannot be written, before any work; it is created only when
    the artefact set takes its lock, so a refused or interrupted export leaves no empty folder."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise AttnExportError(f"cannot create output folder {path}: {existing} is not a folder; "
                              "choose another with --output-dir")
    if not os.access(existing, os.W_OK):
        raise AttnExportError(f"output folder {path} is not writable ({existing} is read-only "
                              "or not ours); choose another with --output-dir")
    return path
