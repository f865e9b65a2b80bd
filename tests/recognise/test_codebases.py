"""Each codebase's real classes in a small network: scanned, swapped, proven, exported.

One network per codebase runs in the default suite (a CLI export of it included); the full
published networks (timm SE-ResNet, torchvision MobileNetV3, smp U-Net) are ``slow``. mmcv needs
a compiled build: its recogniser is tested on transcriptions under the real module paths
(``mmcv_transcribed.py``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import onnx
import pytest
import torch
from click.testing import CliRunner

from attn_export.cli import main
from attn_export.export.onnx_gates import attention_gates
from attn_export.modules.recognise import scan_network
from attn_export.modules.swap import to_deploy
from tests.recognise import nets

NETS = Path(nets.__file__)
EXAMPLE = (1, 3, 20, 24)

EXPECTED = {
    "timm_net": ("timm", ["se", "eca", "cbam", "sk", "gc", "pooled_se(silu, sigmoid)"]),
    "torchvision_net": ("torchvision", ["se", "pooled_se(silu, sigmoid)",
                                        "pooled_se(relu, hardsigmoid)"]),
    "ultralytics_net": ("ultralytics", ["ultralytics_cbam", "rtm_channel_gate",
                                        "mean_max_spatial_gate", "ultralytics_cbam"]),
    "smp_net": ("smp", ["scse", "scse"]),
    "mmcv_net": ("mmcv", ["gc", "gc", "se", "rtm_channel_gate"]),
}
PACKAGE = {"timm_net": "timm", "torchvision_net": "torchvision", "ultralytics_net": "ultralytics",
           "smp_net": "segmentation_models_pytorch", "mmcv_net": None}


def _build(name: str) -> torch.nn.Module:
    package = PACKAGE[name]
    if package and importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} is not installed (pip install -e '.[dev]')")
    torch.manual_seed(0)
    model = getattr(nets, name)().eval()
    with torch.no_grad():  # non-trivial norms and biases, as trained weights have
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return model


@pytest.mark.parametrize("name", list(EXPECTED))
def test_scan_recognises_every_module_of_the_codebase(name):
    model = _build(name)
    rows = scan_network(model, example=torch.randn(EXAMPLE))
    codebase, blocks = EXPECTED[name]
    assert [r.recogniser for r in rows] == [codebase] * len(blocks)
    assert [r.block for r in rows] == blocks
    assert all(r.swapped and r.max_abs_diff < 1e-4 for r in rows), [r.reason for r in rows]


@pytest.mark.parametrize("name", list(EXPECTED))
def test_to_deploy_swaps_them_without_a_mapping(name):
    model = _build(name)
    x = torch.randn(2, 3, 17, 23)
    with torch.no_grad():
        before = model(x)
    report: list = []
    deployed = to_deploy(model, example_input=x, report=report)
    assert len(report) == len(EXPECTED[name][1]) and all(r.swapped for r in report)
    swapped = [deployed.get_submodule(r.path) for r in report]
    assert not any(type(m).__module__.split(".")[0] in ("timm", "torchvision", "ultralytics",
                                                        "segmentation_models_pytorch", "mmcv",
                                                        "mmdet") for m in swapped)
    with torch.no_grad():
        torch.testing.assert_close(deployed(x), before, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_model_command_exports_and_reports_each_recognised_module(name, tmp_path):
    _build(name)  # skips when the package is missing
    result = CliRunner().invoke(main, ["model", f"{NETS}:{name}", "--input-shape", "1x3x24x24",
                                       "--output-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    codebase, blocks = EXPECTED[name]
    table = [line for line in result.output.splitlines() if f"  {codebase}  " in line]
    assert len(table) == len(blocks), result.output
    assert f"{len(blocks)} blocks swapped" in result.output
    graph = onnx.load(str(tmp_path / f"nets_{name}.onnx"))
    # the rewrite did something: no adaptive pooling left (H4), the gates still there
    ops = {node.op_type for node in graph.graph.node}
    assert "GlobalAveragePool" not in ops and "GlobalMaxPool" not in ops
    assert attention_gates(graph)


@pytest.mark.slow
@pytest.mark.parametrize("builder, recogniser, count", [
    ("timm:seresnet18", "timm", 8),
    ("timm:ecaresnet26t", "timm", 8),
    ("timm:efficientnet_b0", "timm", 16),
    ("timm:mobilenetv3_small_100", "timm", 9),
    ("torchvision:mobilenet_v3_small", "torchvision", 9),
    ("torchvision:efficientnet_b0", "torchvision", 16),
    ("smp:Unet", "smp", 10),
])
def test_published_networks_are_recognised_whole(builder, recogniser, count):
    package, name = builder.split(":")
    if package == "timm":
        import timm

        model = timm.create_model(name)
    elif package == "torchvision":
        import torchvision

        model = getattr(torchvision.models, name)()
    else:
        import segmentation_models_pytorch as smp

        model = smp.Unet("resnet18", encoder_weights=None, decoder_attention_type="scse")
    model.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
    report: list = []
    deployed = to_deploy(model, example_input=x, report=report)
    assert [r.recogniser for r in report] == [recogniser] * count
    assert all(r.swapped for r in report), [r.reason for r in report if not r.swapped]
    with torch.no_grad():
        torch.testing.assert_close(deployed(x), before, atol=1e-4, rtol=1e-4)
