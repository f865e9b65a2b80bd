"""Building and validating a TensorRT engine, and the TensorRT a precision plan targets: shared
by the ``export``, ``model`` and ``build`` verbs (each imports this, none imports another verb).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import click

from attn_export.commands.common import echo_warnings, fail

FALLBACK_TRT = "10.3"
"""The TensorRT planned for when none is installed: JetPack 6's."""


def installed_trt() -> str:
    """The installed TensorRT's version, else 10.3 (JetPack 6), for planning without a GPU."""
    from attn_export.runtime.tensorrt_runner import installed_trt_version

    return installed_trt_version() or FALLBACK_TRT


def build_and_validate(onnx_path, options, golden_path, target_trt, output=None) -> None:
    """Build the engine, print where it went, validate it against the golden file if any."""
    from attn_export.export.engine_from_onnx import build_engine
    from attn_export.runtime.golden import load_golden
    from attn_export.runtime.tensorrt_runner import TensorRTRunner
    from attn_export.runtime.trt_version import TrtVersion
    from attn_export.runtime.validate import format_table, validate_runner

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        built = build_engine(onnx_path, options, output)
    echo_warnings(caught)
    if target_trt and built.plan.trt_version.major != TrtVersion.parse(target_trt).major:
        click.echo(f"warning: --trt-version {target_trt} but TensorRT "
                   f"{built.sidecar.built_with['tensorrt']} built the engine", err=True)
    s = built.sidecar
    click.echo(f"engine -> {built.engine_path} ({s.engine['bytes']} bytes, {s.precision}, "
               f"TensorRT {s.built_with['tensorrt']}, {s.built_with['gpu']} sm"
               f"{s.built_with['compute_capability']}, built in {s.build_time_s:.1f} s)")
    for note in built.notes:
        click.echo(f"plan: {note}")
    click.echo(f"sidecar -> {built.sidecar_path}")
    if golden_path is None or not Path(golden_path).is_file():
        click.echo("no golden file beside the model: engine not validated (pass --golden)")
        return
    with TensorRTRunner(built.engine_path) as runner:
        rows = validate_runner(runner, load_golden(golden_path), s.precision)
    click.echo(format_table(rows))
    if not all(r.comparison.passed for r in rows):
        fail(f"{built.engine_path} differs from PyTorch beyond the {s.precision} tolerance")
