"""Precision plans per TensorRT version, the FP16 converter, INT8 Q/DQ quantization, and the FP16 /
INT8 graphs of real blocks validated on ONNX Runtime CPU against PyTorch."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from attn_export.errors import ValidationError
from attn_export.export.precision import (
    KEEP_FP32_OPS,
    Fp16RoundingRunner,
    calibration_feeds_from_dir,
    fp16_from_onnx,
    gate_nodes,
    gemv_nodes,
    graph_kind,
    parse_trt_version,
    plan_precision,
    precision_onnx_path,
    seeded_calibration_feeds,
    write_fp16_onnx,
    write_int8_onnx,
)
from attn_export.export.profiles import onnx_input_specs
from attn_export.modules.registry import list_blocks
from attn_export.runtime.base import TensorSpec
from attn_export.runtime.compare import compare
from attn_export.runtime.onnxruntime_runner import OnnxRuntimeRunner

F32 = TensorProto.FLOAT


def model_of(nodes, inputs, outputs="y", inits=(), opset=17):
    """A small float32 model: ``inputs`` name -> shape, one float output."""
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(n, F32, s) for n, s in inputs.items()],
        [helper.make_tensor_value_info(outputs, F32, None)],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in dict(inits).items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 9
    return model


def run(model, feed, optimized=True):
    options = ort.SessionOptions()
    if not optimized:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    return session.run(None, feed)[0]


def elem_type(model, name):
    inferred = onnx.shape_inference.infer_shapes(model)
    for v in (*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input):
        if v.name == name:
            return v.type.tensor_type.elem_type
    return next(t.data_type for t in model.graph.initializer if t.name == name)


# --------------------------------------------------------------------------------------------------
# The plan per TensorRT version
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "precision, version, mode, graph, typed, flags",
    [
        ("fp32", "10.3", "typed", "fp32", False, ()),
        ("fp32", "11.0", "typed", "fp32", True, ()),
        ("fp16", "10.3.0.30", "typed", "fp16", True, ()),
        ("fp16", "10.3", "flag", "fp32", False, ("FP16", "PREFER_PRECISION_CONSTRAINTS")),
        ("fp16", "11.2", "typed", "fp16", True, ()),
        ("int8", "10.3", "typed", "qdq", True, ()),
        ("int8", "10.15", "flag", "qdq", False, ("INT8", "FP16")),
        ("int8", "11.0", "typed", "qdq", True, ()),
    ],
    ids=["fp32-10", "fp32-11", "fp16-10-typed", "fp16-10-flag", "fp16-11", "int8-10-typed",
         "int8-10-flag", "int8-11"],
)
def test_plan_per_trt_version(precision, version, mode, graph, typed, flags):
    plan = plan_precision(precision, version, mode)
    assert (plan.graph, plan.strongly_typed, plan.builder_flags) == (graph, typed, flags)
    assert plan.pin_fp32_layers == (mode == "flag" and precision == "fp16")
    assert plan.cleared_flags == (("TF32",) if precision == "fp32" else ())
    assert plan.to_dict()["trt_version"] == ".".join(map(str, parse_trt_version(version)))
    # TensorRT 11 removed weak typing: no precision flag may appear in an 11.x plan
    if version.startswith("11"):
        assert not {"FP16", "INT8"} & set(plan.builder_flags)


@pytest.mark.parametrize(
    "args, message",
    [(("fp16", "11.0", "flag"), "TensorRT 11.x removed"), (("fp16", "8.6"), "not supported"),
     (("bf16", "10.3"), "unknown precision"), (("fp16", "10.3", "auto"), "unknown fp16 mode"),
     (("fp16", "ten"), "cannot read TensorRT version")],
    ids=["flag-on-11", "trt8", "bf16", "mode", "version-text"],
)
def test_plan_refuses(args, message):
    with pytest.raises(ValidationError, match=message):
        plan_precision(*args)


def test_parse_trt_version():
    assert parse_trt_version("10") == (10, 0, 0)
    assert parse_trt_version("10.3.0.30") == (10, 3, 0)
    assert parse_trt_version((11, 1)) == (11, 1, 0)


def test_precision_paths():
    assert precision_onnx_path("exports/cbam/cbam.onnx", "fp16").name == "cbam.fp16.onnx"
    assert precision_onnx_path("exports/cbam/cbam.onnx", "int8").name == "cbam.int8.onnx"
    assert precision_onnx_path("exports/cbam/cbam.onnx", "fp32").name == "cbam.onnx"


# --------------------------------------------------------------------------------------------------
# The FP16 converter on small graphs
# --------------------------------------------------------------------------------------------------


def gate_graph():
    """y = x * sigmoid(mean_hw(x) * w): the SE pattern with a ReduceMean."""
    nodes = [helper.make_node("ReduceMean", ["x"], ["m"], axes=[2, 3], keepdims=1),
             helper.make_node("Mul", ["m", "w"], ["s"]),
             helper.make_node("Sigmoid", ["s"], ["g"]),
             helper.make_node("Mul", ["x", "g"], ["y"])]
    return model_of(nodes, {"x": ["N", 4, "H", "W"]}, inits={"w": np.full((1, 4, 1, 1), 0.5)})


def test_fp16_keeps_io_float32_and_reductions_float32():
    model = gate_graph()
    conv = fp16_from_onnx(model)
    out = conv.model
    assert out.graph.input[0].type.tensor_type.elem_type == F32
    assert out.graph.output[0].type.tensor_type.elem_type == F32
    assert out.graph.output[0].name == "y"
    assert elem_type(out, "m") == F32  # ReduceMean kept (F1)
    assert elem_type(out, "g") == TensorProto.FLOAT16
    assert "ReduceMean" in next(iter(conv.kept_fp32.values()))
    assert graph_kind(out) == "fp16" and graph_kind(model) == "fp32"
    x = np.random.default_rng(0).standard_normal((2, 4, 5, 7)).astype(np.float32)
    np.testing.assert_allclose(run(out, {"x": x}), run(model, {"x": x}), atol=2e-3, rtol=2e-3)
    assert model.graph.node[0].name == ""  # the input model is not modified


def test_keep_lists_are_honoured():
    conv = fp16_from_onnx(gate_graph(), keep_fp32_ops=KEEP_FP32_OPS | {"Sigmoid"})
    assert elem_type(conv.model, "g") == F32
    named = fp16_from_onnx(gate_graph(), keep_fp32_ops=(), keep_fp32_nodes=("Mul_3",))
    assert elem_type(named.model, "m") == TensorProto.FLOAT16
    assert named.kept_fp32 == {"Mul_3": "listed in keep_fp32_nodes"}


def test_tensors_out_of_fp16_range_on_sample_data_stay_float32():
    """F1 on the data: x*x reaches 1e4 for x = 100, beyond the 4096 headroom limit."""
    nodes = [helper.make_node("Mul", ["x", "x"], ["sq"]),
             helper.make_node("Sqrt", ["sq"], ["r"]),
             helper.make_node("Relu", ["r"], ["y"])]
    model = model_of(nodes, {"x": [1, 8]})
    x = np.full((1, 8), 100.0, np.float32)
    conv = fp16_from_onnx(model, sample_feeds=[{"x": x}])
    assert {"Mul_0", "Sqrt_1"} <= set(conv.kept_fp32)
    assert "reaches 1e+04" in conv.kept_fp32["Mul_0"]
    assert elem_type(conv.model, "y__fp16") == TensorProto.FLOAT16  # Relu on sqrt: back in range
    blind = fp16_from_onnx(model)  # without data the square is converted
    assert elem_type(blind.model, "sq") == TensorProto.FLOAT16


def test_epsilons_fp16_would_flush_keep_their_node_float32():
    """BLOCKS.md: external attention's 1e-9 vanishes in FP16 (smallest subnormal ~6e-8)."""
    nodes = [helper.make_node("Add", ["x", "eps"], ["d"]),
             helper.make_node("Div", ["x", "d"], ["y"])]
    model = model_of(nodes, {"x": [1, 4]}, inits={"eps": [1e-9]})
    conv = fp16_from_onnx(model)
    assert "Add_0" in conv.kept_fp32 and "flushes to 0" in conv.kept_fp32["Add_0"]
    x = np.array([[0.0, 1.0, 2.0, 3.0]], np.float32)
    assert np.isfinite(run(conv.model, {"x": x})).all()


def test_shape_arithmetic_stays_float32():
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Cast", ["s"], ["sf"], to=F32),
             helper.make_node("Div", ["sf", "two"], ["h"]),
             helper.make_node("ReduceMax", ["h"], ["hm"], keepdims=0),
             helper.make_node("Mul", ["x", "hm"], ["y"])]
    model = model_of(nodes, {"x": [1, 3000]}, inits={"two": [2.0]})
    conv = fp16_from_onnx(model)
    assert "shape arithmetic" in conv.kept_fp32["Div_2"]
    assert "Mul_4" not in conv.kept_fp32  # data times a shape-derived scalar is data: FP16
    x = np.ones((1, 3000), np.float32)
    assert run(conv.model, {"x": x})[0, 0] == 1500.0  # 3000 / 2 computed in float32


def test_two_inputs_of_one_type_constraint_stay_consistent():
    """Equal's T inputs must agree even though its output is bool (found on GCT's graph)."""
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Equal", ["r", "zero"], ["is0"]),
             helper.make_node("Where", ["is0", "one", "r"], ["y"])]
    model = model_of(nodes, {"x": [2, 3]}, inits={"zero": [0.0], "one": [1.0]})
    out = fp16_from_onnx(model).model
    x = np.array([[-1, 2, 0], [3, -4, 5]], np.float32)
    np.testing.assert_array_equal(run(out, {"x": x}), [[1, 2, 1], [3, 1, 5]])


def test_rounding_runner_rounds_every_fp16_tensor(tmp_path):
    """Plain ONNX Runtime CPU drops the FP16 rounding of ops it has no FP16 kernel for; the
    rounding runner keeps it, so the FP16 tolerance is judged on real FP16 numbers."""
    nodes = [helper.make_node("Mul", ["x", "half"], ["y"])]
    model = model_of(nodes, {"x": [1, 64]}, inits={"half": [0.5]})
    path = tmp_path / "m.onnx"
    onnx.save(fp16_from_onnx(model).model, str(path))
    x = np.random.default_rng(1).uniform(10, 40, (1, 64)).astype(np.float32)
    rounded = Fp16RoundingRunner(path).infer({"x": x})["y"]
    np.testing.assert_array_equal(rounded, (x.astype(np.float16) * np.float16(0.5)).astype(np.float32))
    assert np.abs(rounded - 0.5 * x).max() > 1e-3  # the rounding is visible


# --------------------------------------------------------------------------------------------------
# INT8: gates, GEMVs, calibration data
# --------------------------------------------------------------------------------------------------


def test_gate_nodes_follow_shape_ops_to_the_gating_mul():
    nodes = [helper.make_node("Sigmoid", ["a"], ["g"], name="sig"),
             helper.make_node("Unsqueeze", ["g", "ax"], ["gu"], name="unsq"),
             helper.make_node("Mul", ["x", "gu"], ["p"], name="gate_mul"),
             helper.make_node("HardSigmoid", ["p"], ["h"], name="hsig"),
             helper.make_node("Mul", ["h", "p"], ["q"], name="hmul"),
             helper.make_node("Sigmoid", ["q"], ["y"], name="last")]
    model = model_of(nodes, {"a": [1, 4], "x": [1, 4, 1], "ax": [1]})
    assert gate_nodes(model) == ["sig", "unsq", "gate_mul", "hsig", "hmul", "last"]


def test_gemv_nodes_are_vector_gemms_and_1x1_map_convs():
    nodes = [helper.make_node("Gemm", ["v", "w"], ["f"], name="fc", transB=1),
             helper.make_node("Conv", ["p", "k"], ["c"], name="conv1x1map"),
             helper.make_node("Conv", ["x", "k"], ["d"], name="conv"),
             helper.make_node("ReduceSum", ["d"], ["y"], keepdims=0)]
    model = model_of(nodes, {"v": [1, 4], "p": [1, 4, 1, 1], "x": [1, 4, 8, 8]},
                     inits={"w": np.ones((4, 4)), "k": np.ones((4, 4, 1, 1))})
    assert gemv_nodes(model) == ["fc", "conv1x1map"]


SPEC = TensorSpec("input", np.dtype(np.float32), (1, 4, None, None))


def test_calibration_folder_reads_samples_and_batches(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "a.npy", rng.standard_normal((4, 8, 8)))  # one sample, float64
    np.save(tmp_path / "b.npy", rng.standard_normal((3, 4, 6, 6)).astype(np.float32))  # a batch
    (tmp_path / "notes.txt").write_text("ignored")
    feeds = calibration_feeds_from_dir(tmp_path, [SPEC])
    assert [f["input"].shape for f in feeds] == [(1, 4, 8, 8)] + [(1, 4, 6, 6)] * 3
    assert all(f["input"].dtype == np.float32 for f in feeds)
    assert len(calibration_feeds_from_dir(tmp_path, [SPEC], limit=2)) == 2


def test_calibration_npz_holds_one_array_per_input(tmp_path):
    specs = [TensorSpec("a", np.dtype(np.float32), (None, 2)),
             TensorSpec("b", np.dtype(np.float32), (None, 3))]
    np.savez(tmp_path / "s.npz", a=np.ones((5, 2)), b=np.zeros((5, 3)))
    feeds = calibration_feeds_from_dir(tmp_path, specs)
    assert len(feeds) == 1 and feeds[0]["a"].shape == (5, 2)
    np.save(tmp_path / "t.npy", np.ones((1, 2)))
    with pytest.raises(ValidationError, match="use .npz files keyed by input name"):
        calibration_feeds_from_dir(tmp_path, specs)


@pytest.mark.parametrize(
    "setup, message",
    [(lambda d: None, "holds no .npy"),
     (lambda d: np.save(d / "x.npy", np.ones((1, 3, 8, 8))), "dim 1 must be 4"),
     (lambda d: np.save(d / "x.npy", np.array(["a"] * 4)), "does not fit input"),
     (lambda d: (d / "x.npy").write_bytes(b"garbage"), "cannot read calibration file")],
    ids=["empty", "channels", "strings", "corrupt"],
)
def test_calibration_folder_refusals(tmp_path, setup, message):
    setup(tmp_path)
    with pytest.raises(ValidationError, match=message):
        calibration_feeds_from_dir(tmp_path, [SPEC])


def test_calibration_path_must_be_a_folder(tmp_path):
    with pytest.raises(ValidationError, match="is not a folder"):
        calibration_feeds_from_dir(tmp_path / "missing", [SPEC])


def test_seeded_calibration_warns_and_is_reproducible():
    with pytest.warns(UserWarning, match="--calib-data"):
        a = seeded_calibration_feeds([SPEC], {"input": (1, 4, 8, 8)}, count=4, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b = seeded_calibration_feeds([SPEC], {"input": (1, 4, 8, 8)}, count=4, seed=3)
    assert len(a) == 4 and all(np.array_equal(x["input"], y["input"]) for x, y in zip(a, b,
                                                                                      strict=True))
    assert a[1]["input"].min() >= 0 and a[1]["input"].max() > 10  # the post-ReLU kind


# --------------------------------------------------------------------------------------------------
# Real blocks: FP16 and INT8 graphs on ONNX Runtime CPU against PyTorch FP32
# --------------------------------------------------------------------------------------------------

SHAPE = (1, 32, 12, 10)


@pytest.fixture(scope="module", params=["se", "cbam"])
def exported(request, tmp_path_factory):
    """BLOCK.onnx (dynamic batch) and the golden-style cases with PyTorch's outputs."""
    import torch

    from attn_export.export.onnx_from_torch import onnx_from_torch
    from attn_export.modules.factory import create_block
    from attn_export.runtime.inputs import standard_cases

    torch.manual_seed(0)
    block = create_block(request.param, SHAPE[1], reduction=4) if request.param == "se" \
        else create_block(request.param, SHAPE[1], ratio=4)
    folder = tmp_path_factory.mktemp(request.param)
    path = onnx_from_torch(block.eval(), SHAPE, folder / f"{request.param}.onnx", 17,
                           "torchscript", "batch")
    cases = standard_cases(SHAPE, 1) + standard_cases((3, *SHAPE[1:]), 2)[:2]
    with torch.no_grad():
        expected = [(name, x, block(torch.from_numpy(x)).numpy()) for name, x in cases]
    return request.param, path, expected


def check_runner(runner, expected, precision):
    results = []
    for name, x, want in expected:
        got = runner.infer({"input": x})["output"]
        c = compare(got, want, precision)
        assert c.passed, f"{precision} {name}: {c}"
        results.append(c)
    return results


def test_fp16_graph_of_block_passes_the_fp16_tolerance(exported):
    name, path, expected = exported
    conv = write_fp16_onnx(path, sample_feeds=[{"input": x} for _, x, _ in expected[:2]])
    assert conv.path == path.with_name(f"{name}.fp16.onnx")
    assert graph_kind(onnx.load(str(conv.path))) == "fp16"
    assert conv.converted_nodes > 0 and conv.kept_fp32
    results = check_runner(Fp16RoundingRunner(conv.path), expected, "fp16")
    assert max(r.max_abs for r in results) > 0  # FP16 really rounded something
    with pytest.raises(ValidationError, match="already a fp16 graph"):
        write_fp16_onnx(conv.path)


def test_int8_qdq_graph_of_block_passes_the_int8_tolerance(exported, tmp_path):
    name, path, expected = exported
    calib = tmp_path / "calib"
    calib.mkdir()
    for i, (_, x, _) in enumerate(expected):
        np.save(calib / f"{i}.npy", x)
    result = write_int8_onnx(path, calib_data=calib)
    assert result.path == path.with_name(f"{name}.int8.onnx")
    assert result.samples == len(expected) and "from" in result.calibration
    qdq = onnx.load(str(result.path))
    zero_points = [numpy_helper.to_array(t) for t in qdq.graph.initializer
                   if t.name.endswith("_zero_point")]
    assert all(z.dtype == np.int8 and not z.any() for z in zero_points)  # symmetric (TensorRT)
    if name == "se":  # only vector FCs (GEMV) and the gate: nothing INT8 pays for stays
        assert graph_kind(qdq) == "fp32" and "/fc/fc.0/MatMul" in result.excluded
    else:  # CBAM's 7x7 spatial conv is quantized
        assert graph_kind(qdq) == "qdq" and zero_points
    check_runner(OnnxRuntimeRunner(result.path, ["CPUExecutionProvider"]), expected, "int8")


def test_int8_keeps_sigmoid_gates_float_unless_asked(exported, tmp_path):
    """F2: with the guard, no Q/DQ sits in front of the gating Mul; --quantize-gates adds it."""
    name, path, expected = exported
    with pytest.warns(UserWarning, match="seeded synthetic samples"):
        guarded = write_int8_onnx(path, tmp_path / "g.onnx", shapes={"input": SHAPE})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        forced = write_int8_onnx(path, tmp_path / "q.onnx", shapes={"input": SHAPE},
                                 quantize_gates=True)
    assert guarded.excluded and not set(gate_nodes(onnx.load(str(path)))) - set(guarded.excluded)

    def dq_fed_muls(model_path):
        model = onnx.load(str(model_path))
        made_by = {o: n.op_type for n in model.graph.node for o in n.output}
        return sum(n.op_type == "Mul" and any(made_by.get(i) == "DequantizeLinear"
                                              for i in n.input) for n in model.graph.node)

    assert dq_fed_muls(guarded.path) == 0
    assert dq_fed_muls(forced.path) > 0
    assert forced.quantized_ops["QuantizeLinear"] > guarded.quantized_ops.get("QuantizeLinear", 0)


def test_int8_needs_a_shape_for_dynamic_inputs(exported, tmp_path):
    _, path, _ = exported
    with pytest.raises(ValidationError, match="has dynamic dims"):
        write_int8_onnx(path, tmp_path / "x.onnx")


def test_int8_refuses_an_already_reduced_graph(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(fp16_from_onnx(gate_graph()).model, str(path))
    with pytest.raises(ValidationError, match="already a fp16 graph"):
        write_int8_onnx(path, calib_data=tmp_path)


def test_calibration_shapes_come_from_the_graph_when_static(tmp_path):
    nodes = [helper.make_node("Conv", ["x", "k"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"])]
    model = model_of(nodes, {"x": [1, 4, 8, 8]},
                     inits={"k": np.random.default_rng(0).standard_normal((4, 4, 3, 3))})
    path = tmp_path / "conv.onnx"
    onnx.save(model, str(path))
    assert onnx_input_specs(model)[0].shape == (1, 4, 8, 8)
    with pytest.warns(UserWarning):
        result = write_int8_onnx(path)
    assert result.quantized_ops.get("QuantizeLinear", 0) >= 2  # activation and weight


# --------------------------------------------------------------------------------------------------
# The CLI: attn-export BLOCK --precision, attn-export validate on reduced graphs
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_export(tmp_path_factory):
    from click.testing import CliRunner

    from attn_export.cli import main

    out = tmp_path_factory.mktemp("cli_cbam")
    base = ["cbam", "--input-shape", "1x32x12x10", "--dynamic", "batch", "--set", "ratio=4",
            "--output-dir", str(out)]
    fp16 = CliRunner().invoke(main, [*base, "--precision", "fp16", "--trt-version", "11.0"])
    int8 = CliRunner().invoke(main, [*base, "--precision", "int8"])
    return out, fp16, int8


def test_cli_export_writes_and_validates_the_reduced_graphs(cli_export):
    out, fp16, int8 = cli_export
    assert fp16.exit_code == 0, fp16.output
    assert "fp16 graph ->" in fp16.output and "TensorRT 11.0.0 plan: strongly typed" in fp16.output
    assert "onnxruntime[CPU, FP16 rounding]" in fp16.output and "FAIL" not in fp16.output
    assert int8.exit_code == 0, int8.output
    assert "warning: no --calib-data given" in int8.output
    assert "cosine >= 0.97" in int8.output and "FAIL" not in int8.output
    assert {"cbam.fp16.onnx", "cbam.int8.onnx"} <= {p.name for p in out.iterdir()}


@pytest.mark.parametrize("graph, tolerance", [("cbam.fp16.onnx", "0.06 +"),
                                              ("cbam.int8.onnx", "0.35 +"),
                                              ("cbam.onnx", "1e-05 +")],
                         ids=["fp16", "int8", "fp32"])
def test_cli_validate_infers_the_precision_of_the_graph(cli_export, graph, tolerance):
    from click.testing import CliRunner

    from attn_export.cli import main

    out, _, _ = cli_export
    result = CliRunner().invoke(main, ["validate", str(out / graph), "--golden",
                                       str(out / "cbam.golden.npz")])
    assert result.exit_code == 0, result.output
    assert f"tolerance: |actual - torch| <= {tolerance}" in result.output


def test_cli_judges_a_reduced_graph_by_the_precision_asked(cli_export):
    from click.testing import CliRunner

    from attn_export.cli import main

    out, _, _ = cli_export
    result = CliRunner().invoke(main, ["validate", str(out / "cbam.int8.onnx"), "--golden",
                                       str(out / "cbam.golden.npz"), "--precision", "fp32"])
    assert result.exit_code == 1 and "beyond the fp32 tolerance" in result.output


@pytest.mark.parametrize("value", ["nine", "8.6"], ids=["text", "trt8"])
def test_cli_refuses_a_bad_trt_version_as_a_bad_flag(value, tmp_path):
    from click.testing import CliRunner

    from attn_export.cli import main

    result = CliRunner().invoke(main, ["se", "--trt-version", value, "--output-dir",
                                       str(tmp_path)])
    assert result.exit_code == 2 and "--trt-version" in result.output
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("name", list_blocks())
def test_fp16_graph_of_every_block_passes_the_fp16_tolerance(name, tmp_path):
    """Every registered block's float16 graph, on the golden-style inputs (make test-slow)."""
    import torch

    from attn_export.export.onnx_from_torch import onnx_from_torch
    from attn_export.export.pipeline import randomize_norm_statistics
    from attn_export.modules.factory import create_block
    from attn_export.modules.registry import block_info
    from attn_export.runtime.inputs import standard_cases

    info = block_info(name)
    shape = (1, info.default_channels, 16, 16)
    torch.manual_seed(0)
    block = create_block(name, shape[1], **({"input_size": shape[2:]} if info.needs_geometry
                                             else {})).eval()
    randomize_norm_statistics(block)
    path = onnx_from_torch(block, shape, tmp_path / f"{name}.onnx", 17, "torchscript", "none")
    with torch.no_grad():
        expected = [(n, x, block(torch.from_numpy(x)).numpy()) for n, x in standard_cases(shape)]
    conv = write_fp16_onnx(path, sample_feeds=[{"input": x} for _, x, _ in expected])
    check_runner(Fp16RoundingRunner(conv.path), expected, "fp16")
