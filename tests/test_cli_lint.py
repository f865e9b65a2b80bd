"""``attn-export lint``: the table, the JSON, and the exit codes (0 accepted, 1 rejected, 2 bad flag)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto as TP
from onnx import helper as oh
from onnx import numpy_helper

from attn_export.cli import main


def _save(path, node, opset, inits=()):
    vi = [oh.make_tensor_value_info(n, TP.FLOAT, [1, 4, 8, 8]) for n in ("x", "y")]
    graph = oh.make_graph([node], "g", vi[:1], vi[1:], list(inits))
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", opset)], ir_version=10)
    onnx.save(model, str(path))
    return str(path)


@pytest.fixture()
def layernorm(tmp_path):
    inits = [numpy_helper.from_array(np.ones(4, np.float32), "s"),
             numpy_helper.from_array(np.zeros(4, np.float32), "b")]
    node = oh.make_node("LayerNormalization", ["x", "s", "b"], ["y"], axis=1, name="ln")
    return _save(tmp_path / "ln.onnx", node, 17, inits)


@pytest.fixture(scope="module")
def cbam(tmp_path_factory):
    from attn_export.export.onnx_from_torch import onnx_from_torch
    from attn_export.modules.factory import create_block

    path = tmp_path_factory.mktemp("cbam") / "cbam.onnx"
    return str(onnx_from_torch(create_block("cbam", 32), (1, 32, 16, 16), path, opset=17,
                               dynamic="all"))


def _run(*args):
    return CliRunner().invoke(main, list(args))


def test_exported_block_is_accepted_with_a_table_and_summary(cbam):
    result = _run("lint", cbam, "--trt", "10.3")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["node", "op", "level", "reason"]
    assert any(" Sigmoid " in line and " ok " in line for line in lines)
    assert "TensorRT 10.3 (JetPack 6.1), opset 17" in lines[-1] and "should accept" in lines[-1]


def test_errors_exit_1_with_the_reason_per_node(layernorm):
    result = _run("lint", layernorm, "--trt", "8.5")
    assert result.exit_code == 1
    row = next(line for line in result.output.splitlines() if line.startswith("ln "))
    assert "error" in row and "arrives in TensorRT 8.6" in row
    assert "1 error(s)" in result.output and "should reject" in result.output
    assert _run("lint", layernorm, "--trt", "11").exit_code == 0


def test_json_output_is_the_report(layernorm):
    result = _run("lint", layernorm, "--trt", "8.5.2", "--json")
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert data["trt_version"] == "8.5" and data["passed"] is False
    assert [f["node"] for f in data["findings"] if f["level"] == "error"] == ["ln"]


def test_unknown_version_is_a_bad_flag_listing_the_known_ones(layernorm):
    result = _run("lint", layernorm, "--trt", "9.2")
    assert result.exit_code == 2
    assert "10.3" in result.output and "11.5" in result.output


def test_truncated_file_is_one_line_and_exit_1(tmp_path, layernorm):
    data = open(layernorm, "rb").read()
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(data[: len(data) // 2])
    result = _run("lint", str(broken))
    assert result.exit_code == 1
    assert result.output.startswith("error: ") and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("flag", ["--trt-version", "--trt"])
@pytest.mark.parametrize("given", ["10.16", "10.16.1.11"])
def test_jetpack_72_tensorrt_is_linted_with_the_10_15_table_and_says_so(layernorm, flag, given):
    """TensorRT 10.16 (JetPack 7.2) has no table of its own: it reads 10.15's, and the report
    gives the json's reason instead of pretending to a 10.16 table."""
    result = _run("lint", layernorm, flag, given, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["trt_version"] == "10.15"
    assert any("10.16" in note and "10.15" in note for note in data["notes"])
    plain = _run("lint", layernorm, flag, given)
    assert "note: TensorRT 10.16 (JetPack 7.2) is read with the 10.15 table" in plain.output
    assert "note: TensorRT 10.16" not in _run("lint", layernorm, flag, "10.15").output
