"""``attn-export model``: registry networks, checkpoints, INT8 proxies, and a user's own file."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from attn_export.cli import main
from attn_export.models.checkpoints import recorded_layouts
from tests.models.fake_checkpoints import fake_state_dict

USER_NET = '''
import torch
from torch import nn
from attn_export.modules.cbam import CBAMReference


class MyNet(nn.Module):
    def __init__(self, num_classes=10, width=16):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1), nn.BatchNorm2d(width), nn.ReLU())
        self.att = CBAMReference(width, ratio=4)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.head(self.att(self.stem(x)).mean((2, 3)))


def build(num_classes=10, width=16):
    return MyNet(num_classes, width)


def broken(**kwargs):
    raise RuntimeError("weights folder not found")


def not_a_module():
    return 42
'''


def run(*args):
    return CliRunner().invoke(main, ["model", *map(str, args)])


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "my_net.py"
    path.write_text(USER_NET)
    return path


def test_list_and_markdown():
    out = run("list").output
    assert "cbam_resnet50" in out and "28,089,608" in out and "tiny_detector" in out
    assert run("list", "--markdown").output.startswith("| network | task |")
    data = json.loads(run("list", "--json").output)
    assert data["eca_resnet50"]["params"] == 25_557_112


def test_a_users_file_exports_with_its_blocks_swapped(user_file, tmp_path):
    out_dir = tmp_path / "out"
    result = run(f"{user_file}:build", "--input-shape", "1x3x48x48", "--set", "width=8",
                 "--num-classes", "5", "--output-dir", out_dir)
    assert result.exit_code == 0, result.output
    assert "att  CBAMReference -> CBAM" in result.output
    assert "1 blocks swapped" in result.output
    report = json.loads((out_dir / "report.json").read_text())
    assert report["swaps"][0]["path"] == "att" and report["swaps"][0]["max_abs_diff"] < 1e-5
    assert report["passed"] and (out_dir / "my_net.onnx").is_file()
    # one artefact set, like a block's: hashes recorded, and `validate` judges the pair by the
    # network rule the golden file names (not the block rule), so what `model` passed, passes
    assert set(report["sha256"]) == {"my_net.onnx", "my_net.golden.npz"}
    assert not [p.name for p in out_dir.iterdir() if p.name.startswith(".attn-export")]
    from attn_export.runtime.golden import load_golden

    assert load_golden(out_dir / "my_net.golden.npz").meta["judged_as"] == "network"
    checked = CliRunner().invoke(main, ["validate", str(out_dir / "my_net.onnx"), "--golden",
                                        str(out_dir / "my_net.golden.npz")])
    assert checked.exit_code == 0, checked.output
    assert "[" in result.output  # progress lines with elapsed time go to stderr (mixed here)


def test_a_users_file_loads_its_own_checkpoint(user_file, tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("my_net_for_test", user_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(3)
    ckpt = tmp_path / "ckpt.pth"
    torch.save({"state_dict": module.build(num_classes=4).state_dict()}, ckpt)
    result = run(f"{user_file}:build", "--checkpoint", ckpt, "--num-classes", "4",
                 "--input-shape", "1x3x32x32", "--output-dir", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "(ours layout, " in result.output
    result = run(f"{user_file}:build", "--checkpoint", ckpt, "--input-shape", "1x3x32x32",
                 "--output-dir", tmp_path / "out2")
    assert result.exit_code == 1 and "shapes differ at head.bias, head.weight" in result.output


@pytest.mark.parametrize("spec, message", [
    ("{f}:broken", "my_net.py:broken() failed: RuntimeError: weights folder not found"),
    ("{f}:not_a_module", "my_net.py:not_a_module returned a int, not a torch nn.Module"),
    ("{f}:missing", "my_net.py: no function 'missing' (functions found: build, broken, "
     "not_a_module)"),
    ("{d}/absent.py:build", "absent.py: no such file"),
])
def test_a_broken_user_builder_fails_in_one_line(user_file, tmp_path, spec, message):
    out_dir = tmp_path / "out"
    result = run(spec.format(f=user_file, d=tmp_path), "--output-dir", out_dir)
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) <= 2
    assert not out_dir.exists()


def test_a_user_file_that_does_not_import_names_the_file_and_the_error(tmp_path):
    bad = tmp_path / "bad_net.py"
    bad.write_text("import torch\ndef build(:\n    pass\n")
    result = run(f"{bad}:build")
    assert result.exit_code == 1
    assert f"error: {bad}: cannot import it (SyntaxError:" in result.output
    assert "Traceback" not in result.output


def test_unknown_network_and_fixed_layouts_are_refused():
    result = run("resnet101")
    assert result.exit_code == 1 and "unknown network 'resnet101'" in result.output
    result = run("cbam_resnet50", "--attn", "se")
    assert result.exit_code == 1 and "published layout with cbam" in result.output


def test_official_checkpoint_through_the_cli(tmp_path):
    layout = recorded_layouts()["torchvision_resnet18"]
    ckpt = tmp_path / "resnet18.pth"
    sd = fake_state_dict(layout)
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, ckpt)
    result = run("resnet18", "--checkpoint", ckpt, "--input-shape", "1x3x64x64",
                 "--output-dir", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert re.search(rf"checkpoint {re.escape(str(ckpt))} \(ours layout, \d+ tensors\)",
                     result.output)
    assert "nothing swapped" in result.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["network"]["checkpoint"]["tensors"] == len(sd) and report["passed"]


def test_int8_reports_gate_error_per_block_and_top1_agreement(tmp_path):
    calib = tmp_path / "calib"
    calib.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):  # the golden file's two input ranges: N(0, 1) and post-ReLU up to ~30
        x = rng.standard_normal((3, 64, 64), dtype=np.float32)
        np.save(calib / f"img{i}.npy", x if i % 2 else np.maximum(x * 10, 0))
    out_dir = tmp_path / "out"
    result = run("resnet18", "--attn", "se", "--set", "stages=[False,False,True,True]",
                 "--precision", "int8", "--calib-data", calib, "--output-dir", out_dir)
    assert result.exit_code == 0, result.output
    assert "gate error layer3.0.attn: max |int8 - fp32|" in result.output
    assert "top-1 agreement with fp32 on the 6 calibration inputs" in result.output
    report = json.loads((out_dir / "report.json").read_text())
    int8 = report["int8"]
    assert sorted(int8["gate_error"]) == ["layer3.0.attn", "layer3.1.attn", "layer4.0.attn",
                                          "layer4.1.attn"]
    assert all(0 <= e < 0.5 for e in int8["gate_error"].values())
    assert 0 <= int8["top1_agreement"] <= 1 and int8["cosine"] > 0.9
    # the graph and its report section are one artefact set: the report holds the graph's hash
    from attn_export.atomic import sha256_file

    assert report["sha256"]["resnet18.int8.onnx"] == sha256_file(out_dir / "resnet18.int8.onnx")
    import onnx

    graph = onnx.load(str(out_dir / "resnet18.int8.onnx")).graph
    producer = {o: n for n in graph.node for o in n.output}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    quantized = [n for n in convs if producer.get(n.input[1]) is not None
                 and producer[n.input[1]].op_type == "DequantizeLinear"]
    assert len(quantized) >= 17  # the host's convolutions (the SE MLPs are GEMVs: kept float)
    sigmoid_users = [n for n in graph.node for i in n.input
                     if producer.get(i) is not None and producer[i].op_type == "Sigmoid"]
    assert sigmoid_users and all(n.op_type != "QuantizeLinear" for n in sigmoid_users)


def test_a_whole_model_pickle_is_refused_through_the_cli(tmp_path):
    path = tmp_path / "whole.pt"
    torch.save(torch.nn.Conv2d(3, 3, 1), path)
    result = run("resnet18", "--checkpoint", path, "--output-dir", tmp_path / "out")
    assert result.exit_code == 1
    assert "pickles a Python object (torch.nn.modules.conv.Conv2d), not a state_dict" in result.output
    assert not (tmp_path / "out" / "resnet18.onnx").exists()




def test_the_docs_networks_table_is_the_registrys():
    from attn_export.commands.model import markdown_table
    from tools.update_docs_tables import NETWORKS_PAGE

    text = NETWORKS_PAGE.read_text()
    table = text.split("<!-- networks:start -->\n")[1].split("\n<!-- networks:end -->")[0]
    assert table == markdown_table(), "docs/networks.md table is stale: run `make tables`"
