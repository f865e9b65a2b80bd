"""Real blocks: FP16 and INT8 graphs on ONNX Runtime CPU against PyTorch FP32, and the CLI."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from attn_export.errors import ValidationError
from attn_export.export.fp16_from_onnx import fp16_from_onnx
from attn_export.export.int8_from_onnx import (
    gate_nodes,
)
from attn_export.export.precision import write_fp16_onnx, write_int8_onnx
from attn_export.export.profiles import onnx_input_specs
from attn_export.modules.registry import block_info, list_blocks
from attn_export.runtime.compare import compare
from attn_export.runtime.fp16_rounding import Fp16RoundingRunner
from attn_export.runtime.onnxruntime_runner import OnnxRuntimeRunner
from attn_export.runtime.validation_runner import graph_kind
from tests.export.onnx_graphs import gate_graph, model_of

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
@pytest.mark.parametrize("name", [n for n in list_blocks() if len(block_info(n).inputs) == 1])
def test_fp16_graph_of_every_block_passes_the_fp16_tolerance(name, tmp_path):
    # Multi-input blocks (dia, sca): tests/export/test_catalog_tail_precision.py feeds their states.
    """Every registered block's float16 graph, on the golden-style inputs (make test-slow)."""
    import torch

    from attn_export.export.onnx_from_torch import onnx_from_torch
    from attn_export.export.stages import randomize_norm_statistics
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


def test_int8_refuses_an_opset_11_graph(tmp_path):
    """ONNX Runtime cannot load per-channel Q/DQ weights below opset 13 (the matrix measured 28
    of 38 blocks): the quantizer refuses in one line instead of writing such a graph."""
    from attn_export.errors import ValidationError
    from attn_export.export.pipeline import ExportRequest, export_block
    from attn_export.export.precision import write_int8_onnx

    result = export_block(ExportRequest(block="se", channels=16, opset=11, output_dir=tmp_path))
    with pytest.raises(ValidationError, match="INT8 needs opset 13 or later"):
        write_int8_onnx(result.onnx_path, tmp_path / "se.int8.onnx")
    assert not (tmp_path / "se.int8.onnx").exists()
