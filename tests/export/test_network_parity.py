"""A network export behaves like a block export wherever both do the same thing: they run one
pipeline, so a re-export keeps the precision graphs, the precision plan targets the installed
TensorRT, and a bad --trt-version is refused alike."""

from __future__ import annotations

import importlib
import json
import sys

import pytest
from click.testing import CliRunner

from attn_export.cli import main
from attn_export.runtime import trt_env
from tests.models.test_model_cli import USER_NET


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "my_net.py"
    path.write_text(USER_NET)
    return path


def _network(user_file, out, *extra):
    return _run("model", f"{user_file}:build", "--input-shape", "1x3x32x32", "--set", "width=8",
                "--output-dir", out, *extra)


def test_a_byte_identical_network_re_export_keeps_its_precision_graphs(user_file, tmp_path):
    out = tmp_path / "net"
    first = _network(user_file, out, "--precision", "fp16")
    assert first.exit_code == 0, first.output
    before = json.loads((out / "report.json").read_text())
    assert before["fp16"]["passed"] and "my_net.fp16.onnx" in before["sha256"]
    again = _network(user_file, out)
    assert again.exit_code == 0, again.output
    after = json.loads((out / "report.json").read_text())
    assert after["sha256"]["my_net.onnx"] == before["sha256"]["my_net.onnx"]
    assert (out / "my_net.fp16.onnx").is_file(), "the fp16 graph still derives from my_net.onnx"
    assert after["fp16"] == before["fp16"]
    assert after["sha256"]["my_net.fp16.onnx"] == before["sha256"]["my_net.fp16.onnx"]
    changed = _network(user_file, out, "--seed", "1")  # other weights: the graph is stale
    assert changed.exit_code == 0, changed.output
    assert not (out / "my_net.fp16.onnx").exists()
    assert "fp16" not in json.loads((out / "report.json").read_text())


@pytest.fixture
def trt_11(monkeypatch, tmp_path):
    """A TensorRT 11 install as far as version detection goes (its ``__version__``), no other
    TensorRT module importable: what the precision plan reads."""
    for name in trt_env.TRT_MODULES:
        monkeypatch.setitem(sys.modules, name, None)
        monkeypatch.delitem(sys.modules, name)
    root = tmp_path / "site"
    (root / "tensorrt").mkdir(parents=True)
    (root / "tensorrt" / "__init__.py").write_text("__version__ = '11.0.0.114'\n")
    monkeypatch.syspath_prepend(str(root))
    importlib.invalidate_caches()
    assert trt_env.installed_trt_version() == "11.0.0.114"


def test_network_int8_plans_for_the_installed_tensorrt_like_a_block(user_file, tmp_path, trt_11):
    block = _run("se", "--channels", "16", "--precision", "int8", "--output-dir", tmp_path / "se")
    assert block.exit_code == 0, block.output
    network = _network(user_file, tmp_path / "net", "--precision", "int8")
    assert network.exit_code == 0, network.output
    plans = [json.loads((tmp_path / f / "report.json").read_text())["int8"]
             for f in ("se", "net")]
    assert plans[0]["plan_trt"] == plans[1]["plan_trt"] == "11.0.0"
    assert plans[0]["plan_notes"] == plans[1]["plan_notes"]
    assert "TensorRT 11.0.0 plan: strongly typed" in network.output


@pytest.mark.parametrize("version", ["9.0", "ten", "8.6.1"])
def test_a_bad_trt_version_is_refused_by_model_as_by_export(version, tmp_path):
    block = _run("export", "se", "--trt-version", version, "--output-dir", tmp_path / "b")
    network = _run("model", "resnet18", "--trt-version", version, "--output-dir", tmp_path / "n")
    assert block.exit_code == network.exit_code == 2
    reason = [line for line in block.output.splitlines() if "--trt-version" in line]
    assert reason and reason[-1] in network.output.splitlines()
    assert not (tmp_path / "b").exists() and not (tmp_path / "n").exists()
