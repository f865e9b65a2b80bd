"""``attn-export build MODEL.onnx``: a TensorRT engine with its JSON sidecar, then validated."""

from __future__ import annotations

from pathlib import Path

import click

from attn_export.commands.common import handle_errors
from attn_export.commands.engine_build import build_and_validate


@click.command("build")
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp16",
              show_default=True)
@click.option("--fp16-mode", type=click.Choice(["typed", "flag"]), default="typed",
              show_default=True, help="typed: the float16 ONNX, strongly typed (10.x, 11.x); "
              "flag: BuilderFlag.FP16 on the FP32 graph (10.x only).")
@click.option("--calib-data", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="INT8 calibration inputs: a folder of .npy maps (default: seeded samples).")
@click.option("--quantize-gates", is_flag=True, help="INT8: quantize sigmoid gates too (F2).")
@click.option("--min-shape", help="Profile minimum, e.g. 1x64x16x16 or input:1x64x16x16.")
@click.option("--opt-shape", help="Profile optimum [the export shape].")
@click.option("--max-shape", help="Profile maximum.")
@click.option("--workspace", type=int, default=1024, show_default=True,
              help="Workspace memory-pool limit, MiB.")
@click.option("--timing-cache", type=click.Path(dir_okay=False, path_type=Path),
              help="Timing cache file [per TensorRT version and GPU, in ~/.cache/attn-export].")
@click.option("--no-timing-cache", is_flag=True, help="Build without loading or saving a cache.")
@click.option("--version-compatible", is_flag=True,
              help="Plan that later TensorRT versions can run (BuilderFlag.VERSION_COMPATIBLE).")
@click.option("--exclude-lean-runtime", is_flag=True,
              help="With --version-compatible: leave the lean runtime out of the plan.")
@click.option("--hardware-compatibility",
              type=click.Choice(["none", "ampere_plus", "same_compute_capability"]),
              default="none", show_default=True, help="Run on other GPUs (not on JetPack).")
@click.option("--optimization-level", type=click.IntRange(0, 5),
              help="Builder optimization level [TensorRT's default, 3].")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Engine path [MODEL's folder, BLOCK.PRECISION.engine].")
@click.option("--golden", type=click.Path(dir_okay=False, path_type=Path),
              help="Validate against this golden file [BLOCK.golden.npz beside MODEL, if any].")
@handle_errors
def build_command(model, precision, fp16_mode, calib_data, quantize_gates, min_shape, opt_shape,
                  max_shape, workspace, timing_cache, no_timing_cache, version_compatible,
                  exclude_lean_runtime, hardware_compatibility, optimization_level, output,
                  golden):
    """Build a TensorRT engine from MODEL.onnx with a JSON sidecar, then validate it."""
    from attn_export.export.engine_from_onnx import BuildOptions

    options = BuildOptions(
        precision=precision, fp16_mode=fp16_mode, workspace_mib=workspace, min_shapes=min_shape,
        opt_shapes=opt_shape, max_shapes=max_shape, timing_cache=timing_cache,
        use_timing_cache=not no_timing_cache, version_compatible=version_compatible,
        exclude_lean_runtime=exclude_lean_runtime, hardware_compatibility=hardware_compatibility,
        optimization_level=optimization_level, calib_data=calib_data,
        quantize_gates=quantize_gates)
    if golden is None:
        stem = model.name.split(".")[0]
        golden = model.with_name(f"{stem}.golden.npz")
    build_and_validate(model, options, golden, None, output)
