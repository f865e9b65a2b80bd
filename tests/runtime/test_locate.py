"""``validate --locate`` finds a planted fault (one constant changed in one node) in each pairing
that runs here: FP16 graph vs its FP32 sibling, INT8 graph vs its FP32 sibling, ONNX vs PyTorch.
TensorRT vs ONNX needs TensorRT's per-layer outputs and is refused with a pointer."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from attn_export.cli import main
from attn_export.errors import ValidationError
from attn_export.export.pipeline import ExportRequest, export_block
from attn_export.export.precision import precision_set_from_export
from attn_export.runtime.golden import load_golden
from attn_export.runtime.locate import block_of, locate_against_onnx, module_path


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """lka (three convolutions in a row) exported with its FP16 and INT8 graphs."""
    out = tmp_path_factory.mktemp("lka")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = export_block(ExportRequest(block="lka", input_shape=(1, 32, 16, 16),
                                         output_dir=out))
        for precision in ("fp16", "int8"):
            precision_set_from_export(res.onnx_path, res.golden_path, precision)
    return out


def plant(source: Path, target: Path, node_name: str, factor: float) -> None:
    """Scale the float weight tensor that ``node_name`` reads (through a Q/DQ pair in INT8)."""
    model = onnx.load(str(source))
    producers = {o: n for n in model.graph.node for o in n.output}
    name = next(n for n in model.graph.node if n.name == node_name).input[1]
    while name in producers:  # DequantizeLinear <- QuantizeLinear <- the float weight
        name = producers[name].input[0]
    weight = next(t for t in model.graph.initializer if t.name == name)
    values = numpy_helper.to_array(weight)
    weight.CopyFrom(numpy_helper.from_array((values * factor).astype(values.dtype), name))
    onnx.save(model, str(target))


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_reduced_graph_vs_fp32_sibling_names_the_planted_node(exported, tmp_path, precision):
    bad = exported / f"bad.{precision}.onnx"
    plant(exported / f"lka.{precision}.onnx", bad, "/conv1/Conv", 1.25)
    gold = exported / "lka.golden.npz"
    result = CliRunner().invoke(main, ["validate", str(bad), "--golden", str(gold), "--locate",
                                       "--reference", str(exported / "lka.onnx")])
    assert "first node out of bound: /conv1/Conv (Conv)" in result.output, result.output
    located = json.loads((exported / "report.json").read_text())["locate"]
    assert located["first_bad_node"] == "/conv1/Conv" and located["module_path"] == "conv1"
    steps = [p["node"] for p in located["path"]]
    growth = [p["rel_l2"] for p in located["path"]]
    at = steps.index("/conv1/Conv")
    assert at > 0 and growth[at] > 2 * growth[at - 1]  # the error jumps where the fault is
    assert located["local_rel_l2"] > located["local_bound"]


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_planted_fault_is_worse_than_the_precision_explains(exported, precision):
    """Judged against the floor recorded in the golden file (torch-free): FP16 by PyTorch
    float16, INT8 by the float simulation at the calibrated scales."""
    bad = exported / f"fault.{precision}.onnx"
    plant(exported / f"lka.{precision}.onnx", bad, "/conv1/Conv", 1.08)
    healthy = CliRunner().invoke(main, ["validate", str(exported / f"lka.{precision}.onnx"),
                                        "--golden", str(exported / "lka.golden.npz")])
    assert f"verdict ({precision}): as good as the precision allows" in healthy.output
    result = CliRunner().invoke(main, ["validate", str(bad), "--golden",
                                       str(exported / "lka.golden.npz")])
    assert result.exit_code == 1
    assert f"verdict ({precision}): worse than the precision explains" in result.output, \
        result.output


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_healthy_reduced_graph_has_no_bad_node(exported, precision):
    gold = load_golden(exported / "lka.golden.npz")
    prepare = None
    if precision == "fp16":
        from attn_export.runtime.fp16_rounding import fp16_rounding_model as prepare
    for case in gold.cases[:2]:
        loc = locate_against_onnx(exported / f"lka.{precision}.onnx", exported / "lka.onnx",
                                  case.inputs, precision, case.name, prepare)
        assert loc.first_bad_node is None, loc.lines()
        assert loc.nodes and max(n.local_rel_l2 for n in loc.nodes) > 0  # it compared something


def test_sibling_is_found_beside_the_graph(exported, tmp_path):
    """Without --reference, X.fp16.onnx is located against X.onnx beside it."""
    folder = tmp_path / "lka"
    folder.mkdir()
    for name in ("lka.onnx", "lka.golden.npz", "report.json"):
        (folder / name).write_bytes((exported / name).read_bytes())
    plant(exported / "lka.fp16.onnx", folder / "lka.fp16.onnx", "/conv_spatial/Conv", 0.7)
    result = CliRunner().invoke(main, ["validate", str(folder / "lka.fp16.onnx"), "--golden",
                                       str(folder / "lka.golden.npz"), "--locate"])
    assert "lka.fp16.onnx vs lka.onnx" in result.output
    assert "first node out of bound: /conv_spatial/Conv" in result.output, result.output


def test_onnx_vs_pytorch_names_the_planted_module(exported, tmp_path):
    """An FP32 graph is located against the module rebuilt from report.json (same seed)."""
    folder = tmp_path / "lka"
    folder.mkdir()
    for name in ("lka.golden.npz", "report.json"):
        (folder / name).write_bytes((exported / name).read_bytes())
    plant(exported / "lka.onnx", folder / "lka.onnx", "/conv_spatial/Conv", 1.1)
    result = CliRunner().invoke(main, ["validate", str(folder / "lka.onnx"), "--golden",
                                       str(folder / "lka.golden.npz"), "--locate"])
    assert result.exit_code == 1
    assert "lka.onnx vs PyTorch" in result.output, result.output
    assert "first node out of bound: /conv_spatial/Conv (Conv)" in result.output
    assert "module: conv_spatial" in result.output
    healthy = CliRunner().invoke(main, ["validate", str(exported / "lka.onnx"), "--golden",
                                        str(exported / "lka.golden.npz"), "--locate"])
    assert healthy.exit_code == 0 and "no node leaves its local bound" in healthy.output


def test_engine_pairing_is_refused_with_a_pointer(exported):
    from attn_export.commands.locate import locate_for_cli

    gold = load_golden(exported / "lka.golden.npz")
    with pytest.raises(ValidationError, match="locate the ONNX it was built from"):
        locate_for_cli(Path("lka.fp16.engine"), exported / "lka.golden.npz", gold, [], "fp16",
                       None)


def test_missing_reference_is_one_line(exported):
    result = CliRunner().invoke(main, ["validate", str(exported / "lka.fp16.onnx"), "--golden",
                                       str(exported / "lka.golden.npz"), "--locate",
                                       "--reference", "nowhere.onnx"])
    assert result.exit_code == 1 and "--reference nowhere.onnx is not a file" in result.output
    assert "Traceback" not in result.output


class _Node:
    def __init__(self, name: str) -> None:
        self.name, self.metadata_props = name, []


@pytest.mark.parametrize("name, path", [
    ("/decoder/blocks.1/attention1/attention/cSE/cSE.0/ReduceMean",
     "decoder.blocks.1.attention1.attention.cSE.0"),
    ("/encoder/stages.0/stages.0.0/Conv", "encoder.stages.0.0"),
    ("/layer1/layer1.0/conv1/Conv", "layer1.0.conv1"),
    ("/Mul_1", ""),
], ids=["smp-decoder", "module-list", "resnet", "root"])
def test_module_path_from_exporter_names(name, path):
    assert module_path(_Node(name)) == path


def test_block_is_the_deepest_swapped_block_else_the_host_layer():
    blocks = ["layer1.0.se", "layer1.0"]
    assert block_of("layer1.0.se.fc1", blocks) == "layer1.0.se"
    assert block_of("layer2.1.conv1", blocks) == "layer2.1"


def test_verdict_and_sibling_locate_need_no_torch(exported, tmp_path):
    """validate (and serve, through validate_runner) judge by the recorded floor without torch;
    locating a reduced graph against its FP32 sibling is torch-free too."""
    import subprocess
    import sys

    no_torch = ("import sys; sys.modules['torch'] = None; from attn_export.cli import main; "
                "main()")
    bad = tmp_path / "bad.fp16.onnx"
    plant(exported / "lka.fp16.onnx", bad, "/conv1/Conv", 1.08)
    proc = subprocess.run([sys.executable, "-c", no_torch, "validate", str(bad), "--golden",
                           str(exported / "lka.golden.npz"), "--locate", "--reference",
                           str(exported / "lka.onnx")], capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    assert "verdict (fp16): worse than the precision explains" in proc.stdout
    assert "the torch-fp16 floor" in proc.stdout
    assert "first node out of bound: /conv1/Conv (Conv)" in proc.stdout


def test_pytorch_pairing_without_torch_names_the_extra(exported):
    import subprocess
    import sys

    no_torch = ("import sys; sys.modules['torch'] = None; from attn_export.cli import main; "
                "main()")
    proc = subprocess.run([sys.executable, "-c", no_torch, "validate",
                           str(exported / "lka.onnx"), "--golden",
                           str(exported / "lka.golden.npz"), "--locate"],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "needs torch: pip install 'attn-export[torch]'" in proc.stderr + proc.stdout
