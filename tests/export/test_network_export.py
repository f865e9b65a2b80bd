"""Whole networks export, simplify and validate on ONNX Runtime like a block, blocks swapped."""

from __future__ import annotations

import json

import onnx
import pytest

from attn_export.errors import ShapeModeError
from attn_export.export.pipeline import export
from attn_export.export.request import network_request

FAST = [
    ("resnet18", "eca", {}, (1, 3, 64, 64), "batch"),
    ("resnet18", "simam", {"position": "conv2"}, (1, 3, 64, 64), "none"),
    ("mobilenetv2", "se", {"reduction": 4}, (1, 3, 64, 64), "none"),
    ("tiny_detector", "cbam", {}, (1, 3, 320, 320), "none"),
    ("unet_scse", None, {}, (1, 3, 64, 64), "batch"),
]
ALL_BLOCKS = ("se", "cbam", "eca", "coordatt", "simam", "gct")
SLOW = [
    (host, block, {}, shape, "none")
    for host, shape, blocks in (
        ("resnet18", (1, 3, 96, 96), ALL_BLOCKS), ("resnet34", (1, 3, 64, 64), ("se", "eca")),
        ("resnet50", (1, 3, 64, 64), ("cbam", "coordatt", "gct")),
        ("mobilenetv2", (1, 3, 96, 96), ALL_BLOCKS),
        ("tiny_detector", (1, 3, 320, 320), ("se", "eca", "simam")))
    for block in blocks
] + [(name, None, {}, (1, 3, 96, 96), "none") for name in
     ("se_resnet50", "cbam_resnet50", "eca_resnet50", "simam_resnet50", "mobilenetv2_ca")] + [
    ("tiny_detector", "coordatt", {}, (1, 3, 640, 640), "none"),
    ("resnet18", "cbam", {"position": "stage"}, (1, 3, 64, 64), "all"),
]


def _ids(case):
    host, block, sets, shape, dynamic = case
    return f"{host}-{block or 'card'}{'-' + '-'.join(map(str, sets.values())) if sets else ''}" \
        f"-{shape[2]}-{dynamic}"


def _check(case, tmp_path):
    host, block, sets, shape, dynamic = case
    result = export(network_request(host, dict(sets), attn=block, input_shape=shape, dynamic=dynamic,
                                  output_dir=tmp_path))
    assert result.passed, result.rows
    report = json.loads(result.report_path.read_text())
    assert report["network"]["name"] == host and report["input_shape"] == list(shape)
    assert report["swaps"] and all(s["deploy"] != s["reference"] for s in report["swaps"])
    diffs = [s["max_abs_diff"] for s in report["swaps"]]
    assert all(d is None or d < 1e-3 for d in diffs)
    assert diffs.count(None) == (1 if host == "unet_scse" else 0)  # smp's last attention1: no skip
    assert result.golden_path.is_file()
    ops = {n.op_type for n in onnx.load(str(result.onnx_path)).graph.node}
    assert not ops & {"GlobalAveragePool", "AveragePool"} or host == "resnet18" and not block
    return report


@pytest.mark.parametrize("case", FAST, ids=_ids)
def test_network_exports_and_validates(case, tmp_path):
    report = _check(case, tmp_path)
    if case[0] == "resnet18" and case[1] == "eca":
        assert [s["path"] for s in report["swaps"]][:2] == ["layer1.0.attn", "layer1.1.attn"]
        assert report["validated_shapes"] == ["1x3x64x64", "2x3x64x64", "3x3x64x64"]


@pytest.mark.slow
@pytest.mark.parametrize("case", SLOW, ids=_ids)
def test_network_matrix(case, tmp_path):
    _check(case, tmp_path)


def test_shapes_a_network_cannot_take_are_refused_before_building(tmp_path):
    with pytest.raises(ShapeModeError, match="multiples of 32"):
        export(network_request("tiny_detector", input_shape=(1, 3, 300, 300),
                               output_dir=tmp_path))
    with pytest.raises(ShapeModeError, match="use --dynamic batch"):
        export(network_request("unet_scse", dynamic="all", output_dir=tmp_path))
    with pytest.raises(ShapeModeError, match="3-channel images"):
        export(network_request("resnet18", input_shape=(1, 4, 64, 64), output_dir=tmp_path))
    assert not any(tmp_path.iterdir())
