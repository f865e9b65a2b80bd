"""The three-word verdict on real FP16 network graphs, and ``validate --locate`` on planted faults.

The network is our smp-style U-Net with scSE in its decoder (``unet_scse``: smp's module names, see
``attn_export/models/unet.py``), exported with ``--dynamic batch --precision fp16`` through the
CLI: its floor is PyTorch float16 on the same inputs, recorded in the golden file.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from attn_export.cli import main
from attn_export.runtime.floor import AS_GOOD, WORSE
from attn_export.runtime.golden import load_golden

FAULT_NODE = "/decoder/blocks.3/conv2/conv2.0/Conv"


@pytest.fixture(scope="module")
def unet_fp16(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("unet") / "unet_scse"
    result = CliRunner().invoke(main, ["model", "unet_scse", "--input-shape", "1x3x32x32",
                                       "--dynamic", "batch", "--precision", "fp16",
                                       "--output-dir", str(out)])
    assert result.exit_code == 0, result.output
    assert f"verdict (fp16): {AS_GOOD}" in result.output
    return out


def _plant_fault(source: Path, target: Path, node_name: str, factor: float) -> None:
    """One constant changed in one node: the weight tensor of ``node_name`` scaled."""
    model = onnx.load(str(source))
    node = next(n for n in model.graph.node if n.name == node_name)
    weight = next(t for t in model.graph.initializer if t.name == node.input[1])
    values = numpy_helper.to_array(weight)
    weight.CopyFrom(numpy_helper.from_array((values * factor).astype(values.dtype), weight.name))
    onnx.save(model, str(target))


def test_unet_scse_fp16_dynamic_batch_is_as_good_as_the_precision_allows(unet_fp16):
    report = json.loads((unet_fp16 / "report.json").read_text())
    rows = report["fp16"]["metrics"]
    assert {r["verdict"] for r in rows} == {AS_GOOD}
    batches = {r["case"].split("@")[1].split("x")[0] for r in rows}
    assert len(batches) > 1  # --dynamic batch validated at several batch sizes
    for row in rows:
        assert row["floor"]["kind"] == "torch-fp16"
        assert row["floor"]["rel_l2"] > 0 and set(row["floor"]) == {"kind", "max_abs", "rel_l2",
                                                                      "cosine"}
        assert row["factor"] == pytest.approx(row["rel_l2"] / row["floor"]["rel_l2"], rel=1e-3)
        assert row["input_kind"] == "seeded"
    assert report["inputs_used"]
    gold = load_golden(unet_fp16 / "unet_scse.golden.npz")
    assert set(gold.meta["floor"]["fp16"]["cases"]) == {c.name for c in gold.cases}


def test_validate_prints_the_verdict_with_its_factor(unet_fp16):
    result = CliRunner().invoke(main, ["validate", str(unet_fp16 / "unet_scse.fp16.onnx"),
                                       "--golden", str(unet_fp16 / "unet_scse.golden.npz")])
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.startswith("verdict (fp16)"))
    assert AS_GOOD in line and re.search(r"\d\.?\d*x the torch-fp16 floor \d", line), line


def test_planted_fault_is_worse_than_the_precision_explains_and_located(unet_fp16, tmp_path):
    folder = tmp_path / "unet"
    shutil.copytree(unet_fp16, folder)
    bad = folder / "unet_scse.fp16.onnx"
    _plant_fault(unet_fp16 / "unet_scse.fp16.onnx", bad, FAULT_NODE, 1.06)
    result = CliRunner().invoke(main, ["validate", str(bad), "--golden",
                                       str(folder / "unet_scse.golden.npz"), "--locate"])
    assert result.exit_code == 1, result.output
    assert f"verdict (fp16): {WORSE}" in result.output
    assert "--locate" in result.output  # the verdict points to where to look
    assert f"first node out of bound: {FAULT_NODE} (Conv)" in result.output
    assert "module: decoder.blocks.3.conv2.0" in result.output
    located = json.loads((folder / "report.json").read_text())["locate"]
    assert located["first_bad_node"] == FAULT_NODE and located["op"] == "Conv"
    assert located["module_path"] == "decoder.blocks.3.conv2.0"
    assert located["block"] == "decoder.blocks.3.conv2"
    steps = [p["node"] for p in located["path"]]
    assert FAULT_NODE in steps and steps[0].startswith("/encoder")
    growth = {p["node"]: p["rel_l2"] for p in located["path"]}
    before = steps[steps.index(FAULT_NODE) - 1]
    assert growth[FAULT_NODE] > 10 * growth[before]  # the error jumps at the fault
    assert set(located["input_ranges"]) and all(lo <= hi for lo, hi in
                                                located["input_ranges"].values())


def test_healthy_graph_locates_no_node(unet_fp16):
    result = CliRunner().invoke(main, ["validate", str(unet_fp16 / "unet_scse.fp16.onnx"),
                                       "--golden", str(unet_fp16 / "unet_scse.golden.npz"),
                                       "--locate"])
    assert result.exit_code == 0, result.output
    assert "no node leaves its local bound" in result.output


def test_degenerate_reference_gets_no_verdict(unet_fp16, tmp_path):
    """A network whose output is numerical dust (efficientnet_b0 seeded: max |y| 8e-13) matches
    anything; FP16 underflows it to 0 and the fixed table passes that. The verdict says so."""
    from attn_export.runtime.golden import save_golden

    gold = load_golden(unet_fp16 / "unet_scse.golden.npz")
    for case in gold.cases:
        case.outputs = {k: (v * 1e-11).astype(np.float32) for k, v in case.outputs.items()}
    gold.meta.pop("model_sha256", None)
    tiny = tmp_path / "tiny.golden.npz"
    save_golden(tiny, gold)
    result = CliRunner().invoke(main, ["validate", str(unet_fp16 / "unet_scse.fp16.onnx"),
                                       "--golden", str(tiny)])
    assert "verdict (fp16): degenerate output" in result.output, result.output
    assert "says nothing" in result.output
