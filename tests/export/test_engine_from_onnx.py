"""Engine builds end to end: the install hint where TensorRT is absent, the CLI, and real builds
where TensorRT and a GPU exist. The parts are tested beside their files: test_trt_build_settings,
test_trt_build_graph (parser errors, paths, graphs, sidecar), test_timing_cache; builds over the
fake TensorRT in test_engine_from_onnx_trt."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from attn_export.errors import MissingDependencyError
from attn_export.export.engine_from_onnx import build_engine
from attn_export.export.trt_build.settings import BuildOptions
from tests.export.onnx_graphs import small_onnx

HAS_TRT = importlib.util.find_spec("tensorrt") is not None


@pytest.mark.skipif(HAS_TRT, reason="checks the message shown where TensorRT is absent")
def test_build_without_tensorrt_fails_first_with_the_install_hint(tmp_path):
    source = small_onnx(tmp_path / "blk.onnx")
    with pytest.raises(MissingDependencyError, match="pip install tensorrt"):
        build_engine(source, BuildOptions(precision="fp16"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blk.onnx"]  # nothing was written


# --------------------------------------------------------------------------------------------------
# With TensorRT and a GPU
# --------------------------------------------------------------------------------------------------


@pytest.mark.trt
@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_build_and_validate_each_precision(tmp_path, precision):
    from attn_export.runtime.compare import compare
    from attn_export.runtime.onnxruntime_runner import OnnxRuntimeRunner
    from attn_export.runtime.tensorrt_runner import TensorRTRunner

    source = small_onnx(tmp_path / "blk.onnx")
    (tmp_path / "report.json").write_text(json.dumps({"input_shape": [1, 4, 8, 8]}))
    cache = tmp_path / "t.cache"
    options = BuildOptions(precision=precision, timing_cache=cache, max_shapes="4x4x8x8")
    first = build_engine(source, options)
    assert first.engine_path == tmp_path / f"blk.{precision}.engine"
    assert first.sidecar.profiles[0]["max"] == [4, 4, 8, 8] and cache.stat().st_size > 0
    again = build_engine(source, options)
    assert again.sidecar.timing_cache["had_entries"] is True  # the cache was reused
    x = np.random.default_rng(1).standard_normal((3, 4, 8, 8)).astype(np.float32)
    want = OnnxRuntimeRunner(source, ["CPUExecutionProvider"]).infer({"input": x})["output"]
    with TensorRTRunner(again.engine_path) as runner:
        got = runner.infer({"input": x})["output"]
    assert compare(got, want, precision).passed


@pytest.mark.trt
@pytest.mark.gpu
def test_parser_error_names_node_and_op(tmp_path):
    from attn_export.errors import ExportError

    path = tmp_path / "bad.onnx"
    node = helper.make_node("NoSuchOp", ["input"], ["output"], name="/weird/op", domain="custom")
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("custom", 1)])
    onnx.save(model, str(path))
    with pytest.raises(ExportError, match=r"node /weird/op \(NoSuchOp\)"):
        build_engine(path, BuildOptions(use_timing_cache=False))


# --------------------------------------------------------------------------------------------------
# The CLI: attn-export build, attn-export BLOCK --engine
# --------------------------------------------------------------------------------------------------


@pytest.mark.skipif(HAS_TRT, reason="checks the message shown where TensorRT is absent")
def test_cli_build_without_tensorrt_is_one_line_exit_1(tmp_path):
    from click.testing import CliRunner

    from attn_export.cli import main

    source = small_onnx(tmp_path / "blk.onnx")
    result = CliRunner().invoke(main, ["build", str(source), "--precision", "int8"])
    assert result.exit_code == 1
    assert result.output.startswith("error: TensorRT's Python package is not importable")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blk.onnx"]


@pytest.mark.skipif(HAS_TRT, reason="checks the message shown where TensorRT is absent")
def test_cli_export_with_engine_fails_before_exporting(tmp_path):
    from click.testing import CliRunner

    from attn_export.cli import main

    result = CliRunner().invoke(main, ["se", "--engine", "--output-dir", str(tmp_path / "se")])
    assert result.exit_code == 1 and "pip install tensorrt" in result.output
    assert not (tmp_path / "se").exists()


@pytest.mark.parametrize(
    "args, message",
    [(["--hardware-compatibility", "volta"], "Invalid value for '--hardware-compatibility'"),
     (["--optimization-level", "9"], "Invalid value for '--optimization-level'"),
     (["--precision", "bf16"], "Invalid value for '--precision'")],
    ids=["hw-level", "opt-level", "precision"],
)
def test_cli_build_bad_flags_exit_2(tmp_path, args, message):
    from click.testing import CliRunner

    from attn_export.cli import main

    source = small_onnx(tmp_path / "blk.onnx")
    result = CliRunner().invoke(main, ["build", str(source), *args])
    assert result.exit_code == 2 and message in result.output


@pytest.mark.trt
@pytest.mark.gpu
def test_cli_export_engine_and_validate_it(tmp_path):
    """The documented three commands: export with --engine, build INT8 on the device, validate."""
    from click.testing import CliRunner

    from attn_export.cli import main

    out = tmp_path / "cbam"
    calib = tmp_path / "calib"
    calib.mkdir()
    for i in range(4):
        np.save(calib / f"{i}.npy", np.random.default_rng(i).standard_normal((32, 16, 16)))
    runner = CliRunner()
    first = runner.invoke(main, ["cbam", "--opset", "17", "--engine", "--precision", "fp16",
                                 "--input-shape", "1x32x16x16", "--output-dir", str(out)])
    assert first.exit_code == 0, first.output
    assert (out / "cbam.fp16.engine").is_file() and (out / "cbam.fp16.engine.json").is_file()
    int8 = runner.invoke(main, ["build", str(out / "cbam.onnx"), "--precision", "int8",
                                "--calib-data", str(calib)])
    assert int8.exit_code == 0, int8.output
    check = runner.invoke(main, ["validate", str(out / "cbam.fp16.engine"), "--golden",
                                 str(out / "cbam.golden.npz")])
    assert check.exit_code == 0 and "tensorrt[" in check.output, check.output
