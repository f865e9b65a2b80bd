import importlib.util

import numpy as np
import pytest

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


@pytest.mark.skipif(importlib.util.find_spec("onnxsim") is not None, reason="onnxsim installed")
def test_onnxsim_missing_says_how_to_fix(raw, tmp_path):
    with pytest.raises(MissingDependencyError, match="attn-export\\[onnxsim\\]"):
        simplified_onnx(raw, tmp_path / "s.onnx", "onnxsim")
    assert not (tmp_path / "s.onnx").exists()
