"""The CLI as a user meets it: exit codes, one-line errors, files written or not."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from attn_export.cli import main
from attn_export.modules.registry import list_blocks

NO_TORCH = "import sys; sys.modules['torch'] = None; from attn_export.cli import main; main()"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("cbam")
    result = CliRunner().invoke(main, ["cbam", "--opset", "17", "--dynamic", "batch",
                                       "--input-shape", "1x32x12x10", "--output-dir", str(out)])
    assert result.exit_code == 0, result.output
    return out, result.output


def _run(*args):
    return CliRunner().invoke(main, list(args))


def test_export_writes_the_three_files_and_a_table(exported):
    out, output = exported
    assert sorted(p.name for p in out.iterdir()) == ["cbam.golden.npz", "cbam.onnx", "report.json"]
    assert "onnxruntime[CPU]" in output and "pass" in output and "tolerance:" in output
    report = json.loads((out / "report.json").read_text())
    assert report["passed"] and report["opset"] == 17 and report["exporter"] == "torchscript"
    assert {"torch", "onnx", "onnxruntime", "onnxslim"} <= set(report["versions"])
    assert report["validated_shapes"] == ["1x32x12x10", "2x32x12x10", "3x32x12x10"]
    assert {"torch", "export", "simplify", "validate"} <= set(report["timings_s"])


def test_default_output_dir_is_exports_block(tmp_path):
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert _run("se", "--channels", "32").exit_code == 0
    finally:
        os.chdir(cwd)
    assert (tmp_path / "exports" / "se" / "se.onnx").is_file()


def test_validate_passes_on_its_golden_and_fails_on_a_perturbed_one(exported, tmp_path):
    out, _ = exported
    ok = _run("validate", str(out / "cbam.onnx"), "--golden", str(out / "cbam.golden.npz"))
    assert ok.exit_code == 0 and "FAIL" not in ok.output
    data = dict(np.load(out / "cbam.golden.npz"))
    key = next(k for k in data if k.startswith("out/"))
    data[key] = data[key] + 0.01
    bad = tmp_path / "bad.golden.npz"
    np.savez(bad, **data)
    result = _run("validate", str(out / "cbam.onnx"), "--golden", str(bad))
    assert result.exit_code == 1 and "FAIL" in result.output


def test_validate_needs_no_torch(exported):
    out, _ = exported
    proc = subprocess.run([sys.executable, "-c", NO_TORCH, "validate", str(out / "cbam.onnx"),
                           "--golden", str(out / "cbam.golden.npz")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "pass" in proc.stdout


def test_help_lists_blocks_without_torch():
    proc = subprocess.run([sys.executable, "-c", NO_TORCH, "--help"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    for name in list_blocks():
        assert name in proc.stdout


def test_list_shows_every_block_with_modes_and_hazards():
    result = _run("list")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].split()[:4] == ["name", "tier", "shape", "modes"]
    table = [line for line in lines[1:] if not line.startswith("memory: ")]
    assert {line.split()[0] for line in table} == set(list_blocks())
    assert "H3,H4,H5" in result.output
    # (H*W)^2 attention states its memory cost and the bound's kwarg before anyone exports it
    assert "memory: pam: (H*W)^2 attention" in result.output and "max_positions" in result.output
    assert set(json.loads(_run("list", "--json").output)) == set(list_blocks())


def _assert_clean_failure(result, match, code=1):
    assert result.exit_code == code, result.output
    assert match in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("args,match", [
    (["cbma"], "unknown block 'cbma'; did you mean cbam? expected one of: "),
    (["cbam", "--opset", "9"], "opset 9 is out of range; expected 11..21"),
    (["cbam", "--channels", "4"], "bottleneck of 0 channels"),
    (["cbam", "--set", "kernel_size=5"], "kernel_size must be 3 or 7"),
    (["cbam", "--set", "ratoi=4"], "unknown argument(s) ratoi"),
    (["cbam", "--channels", "16", "--input-shape", "1x32x8x8"], "disagrees with --input-shape"),
    (["cbam", "--exporter", "dynamo", "--opset", "17"], "could not produce opset 17"),
    (["strip_pooling", "--dynamic", "all"], "fix H and W with --input-shape"),
])
def test_bad_input_is_one_line_exit_1_and_no_files(tmp_path, args, match):
    out = tmp_path / "out"
    result = _run(*args, "--output-dir", str(out))
    _assert_clean_failure(result, match)
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("args,match", [
    (["cbam", "--input-shape", "1x32x8"], "is not NxCxHxW"),
    (["cbam", "--input-shape", "1x32x0x8"], "is not NxCxHxW"),
    (["cbam", "--set", "noequals"], "is not key=value"),
    (["cbam", "--dynamic", "hw"], "'hw' is not one of"),
])
def test_bad_flags_exit_2(args, match):
    _assert_clean_failure(_run(*args), match, code=2)


def test_unwritable_output_dir():
    # /proc refuses new folders even to root, which CI runs as (a chmod'ed folder would not).
    result = _run("se", "--output-dir", "/proc/attn-export-test/se")
    _assert_clean_failure(result, "cannot create output folder")


def test_output_dir_that_is_a_file(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    _assert_clean_failure(_run("se", "--output-dir", str(target / "sub")), "cannot create")


def test_validate_corrupt_onnx_and_golden(exported, tmp_path):
    out, _ = exported
    onnx_bytes = (out / "cbam.onnx").read_bytes()
    truncated = tmp_path / "t.onnx"
    truncated.write_bytes(onnx_bytes[: len(onnx_bytes) // 2])
    _assert_clean_failure(_run("validate", str(truncated), "--golden",
                               str(out / "cbam.golden.npz")), "truncated")
    bad_golden = tmp_path / "g.npz"
    bad_golden.write_bytes((out / "cbam.golden.npz").read_bytes()[:200])
    _assert_clean_failure(_run("validate", str(out / "cbam.onnx"), "--golden", str(bad_golden)),
                          "corrupt or truncated")


def test_validate_golden_of_another_model(exported, tmp_path):
    out, _ = exported
    other = tmp_path / "se"
    assert _run("se", "--channels", "16", "--output-dir", str(other)).exit_code == 0
    result = _run("validate", str(out / "cbam.onnx"), "--golden", str(other / "se.golden.npz"))
    _assert_clean_failure(result, "they do not belong together")


def test_user_inputs_are_validated_too(tmp_path):
    feat = tmp_path / "feat.npy"
    np.save(feat, np.random.default_rng(0).standard_normal((2, 16, 5, 7)).astype(np.float32))
    out = tmp_path / "o"
    result = _run("se", "--channels", "16", "--dynamic", "all", "--inputs", str(feat),
                  "--output-dir", str(out))
    assert result.exit_code == 0, result.output
    assert "feat@2x16x5x7" in result.output


def test_convert_a_timm_checkpoint_and_load_it(tmp_path):
    import torch

    from attn_export.modules.checkpoints import load_pretrained
    from tests.modules.test_squeeze_excitation import TimmSEModule
    from tests.weights import randomize

    timm_se = randomize(TimmSEModule(32), seed=3)
    ckpt = tmp_path / "timm_se.pth"
    torch.save({"state_dict": timm_se.state_dict()}, ckpt)
    result = _run("convert", str(ckpt), "--block", "se", "--source", "timm")
    assert result.exit_code == 0, result.output
    assert "from the 'timm' layout" in result.output
    ours = load_pretrained("se", tmp_path / "timm_se.attn.pth")
    x = torch.randn(2, 32, 7, 5)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), timm_se(x), atol=1e-6, rtol=1e-5)


def test_convert_refuses_a_foreign_file_cleanly(tmp_path):
    bad = tmp_path / "notes.pth"
    bad.write_text("not a checkpoint")
    result = _run("convert", str(bad), "--block", "cbam", "--output", str(tmp_path / "o.pth"))
    _assert_clean_failure(result, "cannot read checkpoint")
    assert not (tmp_path / "o.pth").exists()


def test_a_failing_export_prints_one_line_not_the_exporter_dump(tmp_path):
    # The published CoordAtt cannot export with dynamic H/W (H2); TorchScript then dumps its IR
    # through C++ streams, which a user must not have to scroll through.
    proc = subprocess.run(
        [sys.executable, "-c", "from attn_export.cli import main; main()", "coordatt",
         "--variant", "reference", "--dynamic", "all", "--output-dir", str(tmp_path / "o")],
        capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stdout == "" and len(proc.stderr.splitlines()) == 1, proc.stderr[:2000]
    assert "adaptive pooling" in proc.stderr and "Torch IR" not in proc.stderr


def test_pam_above_its_memory_bound_is_refused_in_one_line_naming_the_flag(tmp_path):
    out = tmp_path / "pam"
    result = _run("pam", "--input-shape", "1x16x130x130", "--output-dir", str(out))
    _assert_clean_failure(result, "16900 positions")
    assert "--set max_positions=16900" in result.output
    assert not out.exists() or not any(out.iterdir())
