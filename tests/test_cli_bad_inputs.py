"""Bad input of every kind the adversarial review found: one line that says what was expected,
a non-zero exit, no traceback, nothing written."""

from __future__ import annotations

import json

import click
import numpy as np
import pytest
from click.testing import CliRunner

from attn_export.cli import main
from attn_export.commands.common import handle_errors
from attn_export.runtime.golden import Golden, GoldenCase, save_golden


def _run(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def _one_line(result, match, code):
    """Exit ``code``, exactly one line that is an error (click's usage lines aside), no traceback."""
    assert result.exit_code == code, result.output
    errors = [line for line in result.output.splitlines()
              if line.startswith(("error:", "Error:"))]
    assert len(errors) == 1, result.output
    assert match in errors[0], errors[0]
    assert "Traceback" not in result.output
    if code == 1:
        assert len(result.output.strip().splitlines()) == 1, result.output


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Input files a user might wrongly hand over, and a real se/eca export of the same shape."""
    d = tmp_path_factory.mktemp("bad")
    x = np.random.default_rng(0).standard_normal((1, 16, 8, 8)).astype(np.float32)
    nan = x.copy()
    nan[0, 0, 0, 0] = np.nan
    np.save(d / "nan.npy", nan)
    np.save(d / "inf.npy", np.where(x > 2, np.inf, x))
    np.save(d / "complex.npy", x + 1j * x)
    (d / "text.npy").write_text("1 2 3\n4 5 6\n")
    np.savez(d / "archive.npy", a=x)  # np.savez keeps the name it is given
    (d / "archive.npy.npz").rename(d / "archive.npy")
    np.save(d / "good.npy", x)
    (d / "calib").mkdir()
    np.save(d / "calib" / "sample.npy", nan)
    for block in ("se", "eca"):
        result = _run(block, "--channels", 16, "--input-shape", "1x16x8x8", "--output-dir",
                      d / block)
        assert result.exit_code == 0, result.output
    save_golden(d / "empty.golden.npz", Golden([], {"block": "se", "cases": []}))
    gold = d / "nan.golden.npz"
    save_golden(gold, Golden([GoldenCase("normal@1x16x8x8", {"input": x}, {"output": nan})],
                             {"block": "se", "cases": ["normal@1x16x8x8"]}))
    return d


EXPORT_CASES = [
    (["se", "--channels", 0], "--channels must be a positive integer, got 0", 1),
    (["se", "--channels", -8], "--channels must be a positive integer, got -8", 1),
    (["se", "--seed", -1], "-1 is not in the range", 2),
    (["se", "--seed", 2**32], "4294967296 is not in the range", 2),
    (["se", "--set", "reduction=[4,8]"], "--set reduction=[4, 8] is not valid; expected a positive", 1),
    (["se", "--set", "reduction=-2"], "--set reduction=-2 is not valid", 1),
    (["se", "--set", "reduction=2.5"], "--set reduction=2.5 is not valid", 1),
    (["epsa", "--set", "conv_kernels=3"], "--set conv_kernels=3 is not valid; expected a list", 1),
    (["epsa", "--set", "conv_kernels=[3,'a']"], "conv_kernels=[3, 'a'] is not valid", 1),
    (["sk", "--set", "kernel_size={3:5}"], "kernel_size={3: 5} is not valid", 1),
    (["gct", "--set", "epsilon=[1]"], "epsilon=[1] is not valid; expected a positive number", 1),
    (["cbam", "--set", "mlp_bias=1"], "mlp_bias=1 is not valid; expected True or False", 1),
    (["se", "--input-shape", "64x64x4096x4096"], "needs at least", 1),
    (["mhsa", "--input-shape", "8x64x256x256"], "of memory to export and validate", 1),
    (["cbma"], "did you mean cbam?", 1),
    (["srm", "--input-shape", "1x64x1x1"], "a map of one pixel has no spatial statistics", 1),
    (["se", "--channels", 16, "--inputs", "{d}/nan.npy"], "holds 1 NaN/inf value(s)", 1),
    (["se", "--channels", 16, "--inputs", "{d}/inf.npy"], "NaN/inf value(s)", 1),
    (["se", "--channels", 16, "--inputs", "{d}/complex.npy"], "is complex (complex64)", 1),
    (["se", "--channels", 16, "--inputs", "{d}/text.npy"], "not in numpy's .npy format", 1),
    (["se", "--channels", 16, "--inputs", "{d}/archive.npy"], "is an .npz archive", 1),
    (["se", "--channels", 16, "--precision", "int8", "--calib-data", "{d}/calib"],
     "calibration file", 1),
    (["se", "--channels", 16, "--opset", 11, "--precision", "int8"],
     "INT8 needs opset 13 or later (--opset 11 is opset 11)", 1),
]


@pytest.mark.parametrize("args,match,code", EXPORT_CASES, ids=lambda v: None if not isinstance(
    v, list) else "_".join(str(a) for a in v[:3]).replace("{d}/", ""))
def test_bad_export_input_is_one_line_and_writes_nothing(files, tmp_path, args, match, code):
    out = tmp_path / "out"
    args = [str(a).replace("{d}", str(files)) for a in args]
    result = _run(*args, "--output-dir", out)
    _one_line(result, match, code)
    assert not out.exists(), sorted(out.iterdir())
    if "--inputs" in args:
        assert "PyTorch output" not in result.output  # NaN inputs are not blamed on the block


def test_nan_calibration_data_blames_the_data(files, tmp_path):
    result = _run("se", "--channels", 16, "--precision", "int8", "--calib-data", files / "calib",
                  "--output-dir", tmp_path / "o")
    assert "holds 1 NaN/inf value(s)" in result.output and "sample.npy" in result.output


VALIDATE_CASES = [
    ("se/se.onnx", "good.npy", "is a single .npy array, not a golden .npz"),
    ("se/se.onnx", "empty.golden.npz", "holds no cases"),
    ("se/se.onnx", "nan.golden.npz", "is complex or not finite"),
    ("se/se.onnx", "eca/eca.golden.npz", "written for block 'eca' but"),
    ("eca/eca.onnx", "se/se.golden.npz", "holds block 'eca'"),
    ("text.npy", "se/se.golden.npz", "is not a readable ONNX model"),
]


@pytest.mark.parametrize("model,golden,match", VALIDATE_CASES)
def test_bad_validate_input_is_one_line(files, model, golden, match):
    _one_line(_run("validate", files / model, "--golden", files / golden), match, 1)


def _external_data_model(folder):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "w"], ["output"])], "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    path = folder / "ext.onnx"
    onnx.save(model, str(path), save_as_external_data=True, location="ext.data",
              size_threshold=0)
    (folder / "ext.data").unlink()
    return path


@pytest.mark.parametrize("verb", ["lint", "validate"])
def test_missing_external_data_is_named(files, tmp_path, verb):
    path = _external_data_model(tmp_path)
    args = [verb, path] + (["--golden", files / "se" / "se.golden.npz"] if verb == "validate"
                           else [])
    _one_line(_run(*args), "external data file 'ext.data', which is not beside it", 1)


def test_a_golden_with_a_foreign_hash_is_judged_with_a_note(files, tmp_path):
    """Same block, another export: not refused (a user may re-simplify their graph), but the
    report says the pair was not recorded together, and the numbers decide."""
    other = tmp_path / "se"
    assert _run("se", "--channels", 16, "--input-shape", "1x16x8x8", "--seed", 5,
                "--output-dir", other).exit_code == 0
    result = _run("validate", other / "se.onnx", "--golden", files / "se" / "se.golden.npz")
    assert result.exit_code == 1  # other weights: the outputs differ
    assert "is not the model se.golden.npz was recorded with" in result.output
    assert "the golden file was written for 'se'" in result.output


def test_internal_errors_say_so_and_hide_the_traceback_unless_asked():
    @click.command()
    @handle_errors
    def broken():
        return {}["missing"]

    result = CliRunner().invoke(broken, [])
    _one_line(result, "internal error (KeyError: 'missing' at test_cli_bad_inputs.py:", 1)
    assert "bug in attn-export, not in your input" in result.output
    assert "ATTN_EXPORT_DEBUG=1" in result.output
    debug = CliRunner().invoke(broken, [], env={"ATTN_EXPORT_DEBUG": "1"})
    assert isinstance(debug.exception, KeyError)


def test_every_block_default_passes_its_own_kind_check():
    """The kind check must never refuse a block's own defaults (it would refuse valid --set)."""
    import inspect

    from attn_export.export.preflight import check_kwargs
    from attn_export.modules.registry import block_class, list_blocks

    for block in list_blocks():
        for variant in ("deploy", "reference"):
            params = inspect.signature(block_class(block, variant).__init__).parameters
            defaults = {k: p.default for k, p in params.items()
                        if p.default is not inspect.Parameter.empty
                        and not isinstance(p.default, type)}
            check_kwargs(block, variant, json.loads(json.dumps(defaults, default=list)))
