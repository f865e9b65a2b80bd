"""The simplification stage: onnxslim (default), onnxsim (optional extra) and none."""

import json
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from attn_export.cli import main
from attn_export.errors import ExportError, MissingDependencyError
from attn_export.export.check import checked_onnx, op_types
from attn_export.export.onnx_from_torch import onnx_from_torch
from attn_export.export.simplified_onnx import simplified_onnx
from attn_export.modules.factory import create_block
from attn_export.runtime.onnxruntime_runner import OnnxRuntimeRunner


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    # the reference SE reads x.size(): the raw graph holds Shape/Gather/Unsqueeze arithmetic
    block = create_block("se", 32, "reference")
    return onnx_from_torch(block, (1, 32, 8, 8), tmp_path_factory.mktemp("r") / "raw.onnx")


def test_onnxslim_folds_shape_arithmetic_and_keeps_outputs(raw, tmp_path):
    out = simplified_onnx(raw, tmp_path / "s.onnx", "onnxslim")
    before, after = op_types(checked_onnx(raw)), op_types(checked_onnx(out))
    assert sum(after.values()) < sum(before.values())
    assert "Shape" in before and "Shape" not in after
    x = np.random.default_rng(0).standard_normal((1, 32, 8, 8)).astype(np.float32)
    with OnnxRuntimeRunner(raw) as a, OnnxRuntimeRunner(out) as b:
        np.testing.assert_allclose(a.infer({"input": x})["output"], b.infer({"input": x})["output"],
                                   rtol=1e-6, atol=1e-7)


def test_none_copies(raw, tmp_path):
    out = simplified_onnx(raw, tmp_path / "s.onnx", "none")
    assert out.read_bytes() == raw.read_bytes()


def test_unknown_simplifier(raw, tmp_path):
    with pytest.raises(ExportError, match="onnxslim, onnxsim, none"):
        simplified_onnx(raw, tmp_path / "s.onnx", "polygraphy")


def test_onnxsim_missing_says_how_to_fix(raw, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxsim", None)  # as on a machine without the extra
    with pytest.raises(MissingDependencyError, match="attn-export\\[onnxsim\\]"):
        simplified_onnx(raw, tmp_path / "s.onnx", "onnxsim")
    assert not (tmp_path / "s.onnx").exists()


@pytest.mark.parametrize("block", ["cbam", "coordatt", "gct"])
def test_onnxsim_export_keeps_dims_dynamic_and_validates(block, tmp_path):
    """The design's alternative simplifier, run for real: export at --dynamic all, then the
    graph onnxsim wrote must still take any N, H, W and match PyTorch at every validated shape."""
    pytest.importorskip("onnxsim", reason="pip install 'attn-export[onnxsim]' (x86_64 wheels)")
    result = CliRunner().invoke(main, [block, "--dynamic", "all", "--simplifier", "onnxsim",
                                       "--input-shape", "1x32x12x10", "--output-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["passed"] and report["simplifier"] == "onnxsim" and "onnxsim" in report["versions"]
    assert len({s.split("x", 1)[1] for s in report["validated_shapes"]}) > 1  # H, W varied too
    dims = checked_onnx(tmp_path / f"{block}.onnx").graph.input[0].type.tensor_type.shape.dim
    assert [bool(d.dim_param) for d in dims] == [True, False, True, True]
    again = CliRunner().invoke(main, ["validate", str(tmp_path / f"{block}.onnx"),
                                      "--golden", str(tmp_path / f"{block}.golden.npz")])
    assert again.exit_code == 0, again.output
