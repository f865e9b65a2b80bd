"""Engine builds: the builder settings per TensorRT version, timing cache files, parser-error text,
graph preparation and the sidecar (here), and real builds where TensorRT and a GPU exist."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from attn_export.errors import MissingDependencyError, ValidationError
from attn_export.export.engine_from_onnx import (
    DEFAULT_WORKSPACE_MIB,
    BuilderSettings,
    BuildOptions,
    build_engine,
    builder_settings,
    default_timing_cache_path,
    describe_parser_error,
    engine_path_for,
    export_shapes_near,
    layers_to_pin,
    make_sidecar,
    prepare_graph,
    read_timing_cache,
    write_timing_cache,
)
from attn_export.export.precision import graph_kind
from attn_export.export.precision_plan import plan_precision
from attn_export.export.profiles import InputProfile
from attn_export.export.sidecar import RuntimeEnv, read_sidecar, sha256_file, write_sidecar

HAS_TRT = importlib.util.find_spec("tensorrt") is not None
ENV = RuntimeEnv("10.3.0", "Orin (nvgpu)", "8.7", "12.6", "Linux aarch64")


@pytest.mark.parametrize(
    "precision, version, mode, network, flags",
    [
        ("fp16", "10.3", "typed", ("STRONGLY_TYPED",), ()),
        ("fp16", "10.3", "flag", (), ("FP16", "PREFER_PRECISION_CONSTRAINTS")),
        ("fp16", "11.0", "typed", (), ()),
        ("int8", "10.3", "flag", (), ("INT8", "FP16")),
        ("int8", "11.1", "typed", (), ()),
        ("fp32", "10.3", "typed", (), ()),
    ],
    ids=["fp16-10-typed", "fp16-10-flag", "fp16-11", "int8-10-flag", "int8-11", "fp32-10"],
)
def test_builder_settings_per_version(precision, version, mode, network, flags):
    plan = plan_precision(precision, version, mode)
    settings = builder_settings(plan, BuildOptions(precision=precision, fp16_mode=mode))
    assert settings.network_flags == network  # 11.x: strongly typed always, flag not passed
    assert settings.builder_flags == flags
    assert settings.workspace_bytes == DEFAULT_WORKSPACE_MIB << 20
    assert settings.pin_fp32_layers == (mode == "flag" and precision == "fp16")
    assert settings.cleared_flags == ("TF32",)


def test_compatibility_options_become_flags_and_levels():
    plan = plan_precision("fp16", "10.3")
    settings = builder_settings(plan, BuildOptions(
        version_compatible=True, exclude_lean_runtime=True, workspace_mib=256,
        hardware_compatibility="same_compute_capability", optimization_level=5))
    assert settings == BuilderSettings(
        network_flags=("STRONGLY_TYPED",),
        builder_flags=("VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME"),
        cleared_flags=("TF32",), workspace_bytes=256 << 20,
        hardware_compatibility_level="SAME_COMPUTE_CAPABILITY",
        optimization_level=5)
    assert builder_settings(plan, BuildOptions(workspace_mib=None)).workspace_bytes is None


@pytest.mark.parametrize(
    "options, jetson, message",
    [
        (BuildOptions(hardware_compatibility="ampere_plus"), True, "not supported on JetPack"),
        (BuildOptions(hardware_compatibility="turing"), False, "unknown hardware compatibility"),
        (BuildOptions(exclude_lean_runtime=True), False, "add --version-compatible"),
        (BuildOptions(workspace_mib=0), False, "positive number of MiB"),
        (BuildOptions(optimization_level=6), False, "0..5"),
    ],
    ids=["hw-on-jetson", "hw-level", "lean-without-vc", "workspace", "opt-level"],
)
def test_builder_settings_refusals(options, jetson, message):
    with pytest.raises(ValidationError, match=message):
        builder_settings(plan_precision("fp16", "10.3"), options, jetson=jetson)


def test_layers_pinned_under_weak_typing():
    assert layers_to_pin(["CONVOLUTION", "REDUCE", "ACTIVATION", "NORMALIZATION"]) == [1, 3]


# --------------------------------------------------------------------------------------------------
# Timing cache
# --------------------------------------------------------------------------------------------------


def test_timing_cache_is_per_trt_version_and_gpu(tmp_path, monkeypatch):
    path = default_timing_cache_path(ENV, tmp_path)
    assert path == tmp_path / "trt-10.3.0-orin-nvgpu-sm87.timing-cache"
    other = default_timing_cache_path(RuntimeEnv("10.3.0", "RTX 4090", "8.9"), tmp_path)
    assert other != path
    monkeypatch.setenv("ATTN_EXPORT_CACHE", str(tmp_path / "c"))
    assert default_timing_cache_path(ENV).parent == tmp_path / "c"


def test_timing_cache_round_trip_is_atomic(tmp_path):
    path = tmp_path / "sub" / "t.cache"
    assert read_timing_cache(path) == b""  # no cache yet: build from scratch
    write_timing_cache(path, b"\x00cache")
    assert read_timing_cache(path) == b"\x00cache"
    assert [p.name for p in path.parent.iterdir()] == ["t.cache"]  # no temp file left


def test_unreadable_timing_cache_warns_and_builds_without(tmp_path):
    (tmp_path / "dir.cache").mkdir()
    with pytest.warns(UserWarning, match="building without it"):
        assert read_timing_cache(tmp_path / "dir.cache") == b""


# --------------------------------------------------------------------------------------------------
# Parser errors, paths, graphs, sidecar
# --------------------------------------------------------------------------------------------------

NODES = [("/fc/Gemm", "Gemm"), ("/custom/Op", "MyOp")]


@pytest.mark.parametrize(
    "args, expected",
    [
        ((1, "No importer registered for op: MyOp"),
         "node /custom/Op (MyOp): No importer registered for op: MyOp"),
        ((1, "bad", "/given", "GivenOp"), "node /given (GivenOp): bad"),
        ((7, "out of range"), "out of range"),
        ((-1, " graph-level "), "graph-level"),
    ],
    ids=["from-graph", "from-binding", "index-out-of-range", "no-node"],
)
def test_parser_errors_name_the_node_and_op(args, expected):
    assert describe_parser_error(NODES, *args) == expected


def test_engine_paths():
    assert engine_path_for(Path("e/cbam/cbam.onnx"), "fp16") == Path("e/cbam/cbam.fp16.engine")
    assert engine_path_for(Path("e/cbam/cbam.int8.onnx"), "int8") == Path("e/cbam/cbam.int8.engine")


def test_export_shape_comes_from_the_report(tmp_path):
    assert export_shapes_near(tmp_path / "m.onnx") == {}
    (tmp_path / "report.json").write_text(json.dumps({"input_shape": [1, 64, 32, 32]}))
    assert export_shapes_near(tmp_path / "m.onnx") == {"input": (1, 64, 32, 32)}


def small_onnx(path: Path) -> Path:
    conv = helper.make_node("Conv", ["input", "k"], ["c"], pads=[1, 1, 1, 1])
    nodes = [conv, helper.make_node("Sigmoid", ["c"], ["g"]),
             helper.make_node("Mul", ["input", "g"], ["output"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 4, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(
            np.random.default_rng(0).standard_normal((4, 4, 3, 3)).astype(np.float32), "k")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


def test_prepare_graph_writes_or_reuses_the_plans_graph(tmp_path):
    source = small_onnx(tmp_path / "blk.onnx")
    fp16 = prepare_graph(source, plan_precision("fp16", "10.3"), BuildOptions(), {})
    assert fp16 == tmp_path / "blk.fp16.onnx" and graph_kind(onnx.load(str(fp16))) == "fp16"
    assert prepare_graph(fp16, plan_precision("fp16", "11.0"), BuildOptions(), {}) == fp16
    assert prepare_graph(source, plan_precision("fp16", "10.3", "flag"), BuildOptions(),
                         {}) == source
    with pytest.warns(UserWarning, match="seeded"):
        qdq = prepare_graph(source, plan_precision("int8", "11.0"), BuildOptions(),
                            {"input": (1, 4, 8, 8)})
    assert qdq == tmp_path / "blk.int8.onnx" and graph_kind(onnx.load(str(qdq))) == "qdq"
    with pytest.raises(ValidationError, match="is a fp16 graph but the int8 plan"):
        prepare_graph(fp16, plan_precision("int8", "11.0"), BuildOptions(), {})


def test_prepare_graph_reuses_the_graph_the_export_validated(tmp_path):
    import os

    source = small_onnx(tmp_path / "blk.onnx")
    plan = plan_precision("int8", "10.3")
    with pytest.warns(UserWarning, match="seeded"):
        qdq = prepare_graph(source, plan, BuildOptions(), {"input": (1, 4, 8, 8)})
    os.utime(qdq, (1e9 + 10, 1e9 + 10))
    os.utime(source, (1e9, 1e9))
    assert prepare_graph(source, plan, BuildOptions(), {}) == qdq  # reused: no warning, no shape
    assert qdq.stat().st_mtime == 1e9 + 10
    calib = tmp_path / "calib"
    calib.mkdir()
    np.save(calib / "a.npy", np.ones((4, 8, 8), np.float32))
    prepare_graph(source, plan, BuildOptions(calib_data=calib), {})  # --calib-data re-quantizes
    assert qdq.stat().st_mtime > 1e9 + 10
    os.utime(source, None)  # BLOCK.onnx re-exported after the graph: stale, rewritten
    fp16 = prepare_graph(source, plan_precision("fp16", "10.3"), BuildOptions(), {})
    assert fp16.stat().st_mtime >= source.stat().st_mtime


def test_sidecar_records_the_build(tmp_path):
    engine = tmp_path / "blk.fp16.engine"
    engine.write_bytes(b"serialized plan")
    graph = small_onnx(tmp_path / "blk.fp16.onnx")
    plan = plan_precision("fp16", "10.3")
    options = BuildOptions(precision="fp16", version_compatible=True)
    settings = builder_settings(plan, options)
    profile = [InputProfile("input", (1, 4, 8, 8), (2, 4, 8, 8), (8, 4, 8, 8))]
    io = [{"name": "input", "mode": "input", "dtype": "FLOAT", "shape": [-1, 4, 8, 8]}]
    sidecar = make_sidecar(engine, graph, plan, ENV, profile, settings, io, 3.21,
                           tmp_path / "t.cache", True, options)
    write_sidecar(engine, sidecar)
    back = read_sidecar(engine)
    assert back == sidecar
    assert back.engine == {"file": "blk.fp16.engine", "sha256": sha256_file(engine), "bytes": 15}
    assert back.onnx["file"] == "blk.fp16.onnx"
    assert back.built_with["compute_capability"] == "8.7" and back.built_with["tensorrt"] == "10.3.0"
    assert back.plan["network_flags"] == ["STRONGLY_TYPED"]
    assert "VERSION_COMPATIBLE" in back.plan["builder_flags"] and back.version_compatible
    assert back.profiles[0]["max"] == [8, 4, 8, 8]
    assert back.workspace_bytes == DEFAULT_WORKSPACE_MIB << 20
    assert back.timing_cache["had_entries"] is True and back.build_time_s == 3.21
    assert back.created.endswith("+00:00") and back.tool.startswith("attn-export ")
    assert engine.read_bytes() == b"serialized plan"  # metadata never enters the plan file


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
