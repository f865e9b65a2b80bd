"""Offline TensorRT lint: crafted graphs against each version's table, and the whole catalog.

Each crafted graph carries one construct that the support table (attn_export/export/
trt_support.json) says some versions reject; the test asserts it is flagged exactly for those
versions and accepted (no error) by the others. These expectations restate our table; the ones a
primary source states (the ONNX-TensorRT parser's operator matrix) are checked independently,
with the quotes, in test_lint_cited.py. Graphs are built with onnx.helper at IR 10:
onnx 1.23 writes IR 14 by default, which ONNX Runtime 1.31 cannot read.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper as oh
from onnx import numpy_helper

from attn_export.errors import ModelFileError
from attn_export.export.lint import (
    GRAPH,
    UnknownTrtVersionError,
    known_versions,
    lint_onnx,
    resolve_trt_version,
    support_table,
)
from attn_export.export.lint.rules import RULES

VERSIONS = ("8.5", "10.3", "10", "11")


def _model(nodes, inputs, outputs, inits=(), opset=17, domains=()):
    graph = oh.make_graph(nodes, "crafted", inputs, outputs, list(inits))
    imports = [oh.make_opsetid("", opset)] + [oh.make_opsetid(d, 1) for d in domains]
    return oh.make_model(graph, opset_imports=imports, ir_version=10)


def _vi(name, dtype=TP.FLOAT, shape=(1, 4, 8, 8)):
    return oh.make_tensor_value_info(name, dtype, None if shape is None else list(shape))


def _const(name, value, dtype=None):
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def _relu(opset):
    return _model([oh.make_node("Relu", ["x"], ["y"], name="relu")], [_vi("x")], [_vi("y")],
                  opset=opset)


def _layernorm():
    node = oh.make_node("LayerNormalization", ["x", "s", "b"], ["y"], axis=1, name="ln")
    return _model([node], [_vi("x")], [_vi("y")],
                  [_const("s", np.ones(4), np.float32), _const("b", np.zeros(4), np.float32)])


def _slice_runtime_axes():
    node = oh.make_node("Slice", ["x", "starts", "ends", "axes"], ["y"], name="slice")
    return _model([node], [_vi("x"), _vi("axes", TP.INT64, (1,))], [_vi("y", shape=(1, 4, 8, 2))],
                  [_const("starts", [0], np.int64), _const("ends", [2], np.int64)], opset=13)


def _bf16_cast():
    nodes = [oh.make_node("Cast", ["x"], ["h"], to=TP.BFLOAT16, name="to_bf16"),
             oh.make_node("Cast", ["h"], ["y"], to=TP.FLOAT, name="to_fp32")]
    return _model(nodes, [_vi("x")], [_vi("y")])


def _integer_pow():
    node = oh.make_node("Pow", ["x", "e"], ["y"], name="pow")
    return _model([node], [_vi("x", TP.INT32, (4,))], [_vi("y", TP.INT32, (4,))],
                  [_const("e", [2], np.int32)])


def _einsum_ellipsis():
    node = oh.make_node("Einsum", ["a", "b"], ["y"], equation="...ij,...jk->...ik",
                        name="einsum")
    return _model([node], [_vi("a", shape=(2, 3, 4)), _vi("b", shape=(2, 4, 5))],
                  [_vi("y", shape=(2, 3, 5))], opset=13)


def _squeeze_folded_axes():
    nodes = [oh.make_node("Constant", [], ["c"], value=_const("v", [2], np.int32), name="c"),
             oh.make_node("Cast", ["c"], ["axes"], to=TP.INT64, name="cast"),
             oh.make_node("Squeeze", ["x", "axes"], ["y"], name="squeeze")]
    return _model(nodes, [_vi("x", shape=(1, 4, 1, 8))], [_vi("y", shape=(1, 4, 8))], opset=13)


def _removed_plugin():
    node = oh.make_node("Normalize_TRT", ["x"], ["y"], domain="trt.plugins", name="normalize")
    return _model([node], [_vi("x")], [_vi("y")], domains=("trt.plugins",))


def _swish():
    node = oh.make_node("Swish", ["x"], ["y"], name="swish")
    return _model([node], [_vi("x")], [_vi("y")], opset=24)


def _stft():
    node = oh.make_node("STFT", ["signal", "step", "window"], ["y"], name="stft")
    return _model([node], [_vi("signal", shape=(1, 64, 1))], [_vi("y", shape=(1, 3, 17, 2))],
                  [_const("step", 16, np.int64), _const("window", np.hanning(32), np.float32)])


def _pad_runtime_axes():
    node = oh.make_node("Pad", ["x", "pads", "", "axes"], ["y"], name="pad")
    return _model([node], [_vi("x"), _vi("axes", TP.INT64, (1,))], [_vi("y", shape=None)],
                  [_const("pads", [1, 1], np.int64)], opset=18)


def _topk_runtime_k():
    node = oh.make_node("TopK", ["x", "k"], ["v", "i"], axis=1, name="topk")
    return _model([node], [_vi("x", shape=(1, 10)), _vi("k", TP.INT64, (1,))],
                  [_vi("v", shape=(1, None)), _vi("i", TP.INT64, (1, None))], opset=11)


def _reverse_sequence_dynamic():
    node = oh.make_node("ReverseSequence", ["x", "lens"], ["y"], batch_axis=1, time_axis=0,
                        name="reverse")
    return _model([node], [_vi("x", shape=("T", 4, 8))], [_vi("y", shape=("T", 4, 8))],
                  [_const("lens", [3, 3, 3, 3], np.int64)], opset=13)


def _int8_network_input():
    node = oh.make_node("Cast", ["x"], ["y"], to=TP.FLOAT, name="dequant_cast")
    return _model([node], [_vi("x", TP.INT8, (4,))], [_vi("y", shape=(4,))])


def _resize_cubic():
    node = oh.make_node("Resize", ["x", "", "scales"], ["y"], mode="cubic", name="resize")
    return _model([node], [_vi("x")], [_vi("y", shape=(1, 4, 16, 16))],
                  [_const("scales", [1, 1, 2, 2], np.float32)], opset=13)


def _maxpool_indices():
    node = oh.make_node("MaxPool", ["x"], ["y", "idx"], kernel_shape=[2, 2], name="pool")
    return _model([node], [_vi("x")], [_vi("y", shape=None), _vi("idx", TP.INT64, None)])


def _unique_in_if_branch():
    then = oh.make_graph([oh.make_node("Unique", ["x"], ["u"], name="unique")], "then", [],
                         [_vi("u", shape=None)])
    other = oh.make_graph([oh.make_node("Identity", ["x"], ["w"], name="same")], "else", [],
                          [_vi("w", shape=None)])
    node = oh.make_node("If", ["cond"], ["y"], then_branch=then, else_branch=other, name="if")
    return _model([node], [_vi("x", shape=(8,)), _vi("cond", TP.BOOL, ())], [_vi("y", shape=None)])


# id: (builder, versions whose table rejects it, where the error must be reported)
CASES = {
    "layernorm-op": (_layernorm, {"8.5"}, {"ln"}),
    "slice-runtime-axes": (_slice_runtime_axes, {"8.5"}, {"slice"}),
    "opset-18": (lambda: _relu(18), {"8.5"}, {GRAPH}),
    "topk-runtime-k": (_topk_runtime_k, {"8.5"}, {"topk"}),
    "reverse-sequence-dynamic": (_reverse_sequence_dynamic, {"8.5"}, {"reverse"}),
    "bf16-tensor": (_bf16_cast, {"8.5"}, {"to_bf16"}),
    "opset-21": (lambda: _relu(21), {"8.5", "10.3"}, {GRAPH}),
    "integer-pow": (_integer_pow, {"8.5", "10.3"}, {"pow"}),
    "einsum-ellipsis": (_einsum_ellipsis, {"8.5", "10.3"}, {"einsum"}),
    "squeeze-folded-axes": (_squeeze_folded_axes, {"8.5", "10.3"}, {"squeeze"}),
    "stft": (_stft, {"8.5", "10.3"}, {"stft"}),
    "pad-runtime-axes": (_pad_runtime_axes, {"8.5", "10.3"}, {"pad", GRAPH}),
    "swish-opset-24": (_swish, {"8.5", "10.3", "10"}, {"swish"}),
    "opset-25": (lambda: _relu(25), {"8.5", "10.3", "10"}, {GRAPH}),
    "int8-network-input": (_int8_network_input, {"10.3", "10", "11"}, {GRAPH}),
    "removed-plugin": (_removed_plugin, {"11"}, {"normalize"}),
    "resize-cubic": (_resize_cubic, set(VERSIONS), {"resize"}),
    "maxpool-indices": (_maxpool_indices, set(VERSIONS), {"pool"}),
    "unique-in-if-branch": (_unique_in_if_branch, set(VERSIONS), {"if/then_branch/unique"}),
}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_construct_flagged_exactly_where_the_table_rejects_it(case, version):
    build, rejected_by, where = CASES[case]
    report = lint_onnx(build(), version)
    if version in rejected_by:
        assert not report.passed
        assert {f.node for f in report.errors} & where, report.table()
    else:
        assert report.passed, report.table()


def _decomposed_layernorm(dtype=TP.FLOAT):
    np_type = np.float16 if dtype == TP.FLOAT16 else np.float32
    nodes = [oh.make_node("ReduceMean", ["x"], ["m"], axes=[1], name="mean"),
             oh.make_node("Sub", ["x", "m"], ["d"], name="centre"),
             oh.make_node("Pow", ["d", "two"], ["sq"], name="square"),
             oh.make_node("ReduceMean", ["sq"], ["y"], axes=[1], name="variance")]
    return _model(nodes, [_vi("x", dtype)], [_vi("y", dtype, (1, 1, 8, 8))],
                  [_const("two", 2.0, np_type)])


@pytest.mark.parametrize("version", VERSIONS)
def test_layernorm_variance_warns_h9_where_fp16_may_be_chosen(version):
    fp32 = lint_onnx(_decomposed_layernorm(), version)
    h9 = [f for f in fp32.warnings if f.node == "square" and f.reason.startswith("H9")]
    assert fp32.passed
    # weakly typed builds (8.5, 10.x) may pick FP16 under --fp16; 11.x keeps an FP32 graph FP32
    assert bool(h9) == (version != "11")
    fp16 = lint_onnx(_decomposed_layernorm(TP.FLOAT16), version)
    assert any(f.node == "square" and f.reason.startswith("H9") for f in fp16.warnings)


def _qdq(x="x", zp_type=np.int8, zp=0, axis=None, weights=None):
    """x -> QuantizeLinear -> DequantizeLinear -> Sigmoid gating the map m, or DQ(weights) ->
    Conv. (A Sigmoid that multiplies nothing, or only its own input, is no gate: no F2.)"""
    if weights is not None:
        scale = _const("ws", np.full(weights.shape[axis], 0.1), np.float32)
        nodes = [oh.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wf"], axis=axis,
                              name="dq_w"),
                 oh.make_node("Conv", ["x", "wf"], ["y"], name="conv")]
        inits = [_const("w", weights, np.int8), scale,
                 _const("wz", np.zeros(weights.shape[axis]), np.int8)]
        return _model(nodes, [_vi("x")], [_vi("y", shape=(1, 8, 6, 6))], inits, opset=13)
    nodes = [oh.make_node("QuantizeLinear", [x, "s", "z"], ["q"], name="q"),
             oh.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"], name="dq"),
             oh.make_node("Sigmoid", ["dq"], ["g"], name="gate"),
             oh.make_node("Mul", ["m", "g"], ["y"], name="gate_mul")]
    dtype = TP.INT32 if x == "xi" else TP.FLOAT
    return _model(nodes, [_vi(x, dtype), _vi("m")], [_vi("y")],
                  [_const("s", 0.1, np.float32), _const("z", zp, zp_type)], opset=13)


@pytest.mark.parametrize("version", VERSIONS)
def test_qdq_placement_rules(version):
    ok = lint_onnx(_qdq(), version)
    assert ok.passed, ok.table()
    assert any(f.node == "gate" and f.reason.startswith("F2") for f in ok.warnings)
    for bad, node in ((_qdq(zp=3), "q"), (_qdq(zp_type=np.uint8), "q"), (_qdq(x="xi"), "q")):
        assert node in {f.node for f in lint_onnx(bad, version).errors}
    weights = np.ones((8, 4, 3, 3))
    assert lint_onnx(_qdq(weights=weights, axis=0), version).passed
    wrong = lint_onnx(_qdq(weights=weights, axis=1), version)
    assert any(f.node == "dq_w" and "axis 1" in f.reason for f in wrong.errors)


@pytest.mark.parametrize("version", VERSIONS)
def test_lone_quantize_is_an_error(version):
    nodes = [oh.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="q"),
             oh.make_node("Cast", ["q"], ["y"], to=TP.FLOAT, name="cast")]
    report = lint_onnx(_model(nodes, [_vi("x")], [_vi("y")],
                              [_const("s", 0.1, np.float32), _const("z", 0, np.int8)], opset=13),
                       version)
    assert any(f.node == "q" and "DequantizeLinear" in f.reason for f in report.errors)


@pytest.mark.parametrize("version", VERSIONS)
def test_int64_narrowing_warns_only_on_8_5(version):
    node = oh.make_node("Add", ["x", "big"], ["y"], name="add")
    model = _model([node], [_vi("x", TP.INT64, (2,))], [_vi("y", TP.INT64, (2,))],
                   [_const("big", [2 ** 40, 1], np.int64)])
    report = lint_onnx(model, version)
    assert report.passed
    narrowed = [f for f in report.warnings if "INT64" in f.reason]
    if version == "8.5":
        assert {"add", GRAPH} <= {f.node for f in narrowed}, report.table()
    else:
        assert not narrowed, report.table()


@pytest.mark.parametrize("version", VERSIONS)
def test_unsupported_and_narrowed_dtypes(version):
    double = _model([oh.make_node("Relu", ["x"], ["y"], name="relu")], [_vi("x", TP.DOUBLE)],
                    [_vi("y", TP.DOUBLE)])
    report = lint_onnx(double, version)
    assert report.passed and any("DOUBLE" in f.reason for f in report.warnings)
    int16 = _model([oh.make_node("Relu", ["x"], ["y"], name="relu")], [_vi("x", TP.INT16)],
                   [_vi("y", TP.INT16)])
    assert {"relu", GRAPH} <= {f.node for f in lint_onnx(int16, version).errors}


def test_custom_operator_needs_a_plugin_but_is_not_an_error_on_10_3():
    node = oh.make_node("MyGate_TRT", ["x"], ["y"], domain="custom", name="gate")
    report = lint_onnx(_model([node], [_vi("x")], [_vi("y")], domains=("custom",)), "10.3")
    assert report.passed
    assert [f.node for f in report.warnings] == ["gate"]
    assert "plugin" in report.warnings[0].reason


def test_every_node_gets_a_verdict_and_ok_nodes_say_supported():
    report = lint_onnx(_decomposed_layernorm(), "11")
    assert [f.node for f in report.findings] == ["mean", "centre", "square", "variance"]
    assert all(f.level == "ok" and f.reason.startswith("supported") for f in report.findings)
    assert any("FP32 throughout" in n for n in report.notes)


def test_json_report_round_trips():
    report = lint_onnx(_layernorm(), "8.5")
    data = json.loads(report.to_json())
    assert data["trt_version"] == "8.5" and data["passed"] is False and data["opset"] == 17
    assert data["counts"]["error"] == len(report.errors) == 1
    assert {"node", "op_type", "level", "reason", "rule"} <= set(data["findings"][0])
    assert data["sources"] and all("ref" in s for s in data["sources"])


@pytest.mark.parametrize("given,key", [("10.3", "10.3"), ("10.3.0.26", "10.3"), ("10", "10.15"),
                                       ("10.x", "10.15"), ("11", "11.5"), ("11.x", "11.5"),
                                       ("8.5.2", "8.5"), ("TensorRT 11.0", "11.0"),
                                       ("10.16", "10.15"), ("10.16.1.11", "10.15"),
                                       ("11.5.0.1", "11.5")])
def test_version_matching(given, key):
    assert resolve_trt_version(given) == key


@pytest.mark.parametrize("given", ["9.2", "10.7", "12", "latest", ""])
def test_unknown_version_lists_the_known_ones(given):
    with pytest.raises(UnknownTrtVersionError) as info:
        lint_onnx(_layernorm(), given)
    message = str(info.value)
    assert all(v in message for v in ("8.5", "10.3", "10.15", "11.0", "11.5"))


def test_truncated_and_foreign_files_raise_model_file_error(tmp_path):
    whole = tmp_path / "whole.onnx"
    onnx.save(_layernorm(), str(whole))
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(whole.read_bytes()[: len(whole.read_bytes()) // 2])
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\xff\x00 not a protobuf \x13\x37" * 7)
    assert not lint_onnx(whole, "8.5").passed
    for path in (truncated, garbage, tmp_path / "missing.onnx"):
        with pytest.raises(ModelFileError, match=str(path.name)):
            lint_onnx(path, "10.3")
    with pytest.raises(ModelFileError, match="not an ONNX model"):
        lint_onnx(b"\xff\x00 not a protobuf", "10.3")


def test_table_data_is_complete_and_only_uses_known_rules():
    for key in known_versions():
        table = support_table(key)
        assert table["sources"], key
        assert table["opset"]["min"] <= 17 <= table["opset"]["max"]
        for op, spec in table["ops"].items():
            assert spec.get("supported") is False or spec["types"], (key, op)
            for rule in spec.get("rules", []):
                assert rule["rule"] in RULES or rule["rule"] == "note", (key, op, rule)


def test_lint_module_imports_no_torch():
    code = ("import sys, attn_export.export.lint as m; m.support_table('11'); "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def _catalog():
    from attn_export.modules.registry import list_blocks

    return list_blocks()


@pytest.mark.parametrize("name", _catalog())
def test_catalog_block_lints_clean_on_10_3_and_11_at_opset_17(tmp_path, name):
    from attn_export.export.onnx_from_torch import onnx_from_torch
    from attn_export.modules.factory import create_block
    from attn_export.modules.registry import block_info
    from tests.conftest import TEST_SHAPE_HW

    info = block_info(name)
    channels = info.default_channels
    geometry = {"input_size": TEST_SHAPE_HW} if info.needs_geometry else {}
    path = onnx_from_torch(create_block(name, channels, **geometry), (1, channels, *TEST_SHAPE_HW),
                           tmp_path / f"{name}.onnx", opset=17, exporter="torchscript",
                           dynamic=info.shape_modes[-1])
    for version in ("10.3", "11"):
        report = lint_onnx(path, version)
        assert report.passed, f"{name} on TensorRT {version}:\n{report.table()}"
