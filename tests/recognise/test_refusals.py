"""Known classes configured in a way no block of ours computes: kept, with the reason."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from attn_export.modules.recognise.base import known_classes
from attn_export.modules.recognise.scan import scan_network
from attn_export.modules.swap import to_deploy

needs_timm = pytest.mark.skipif(importlib.util.find_spec("timm") is None,
                                reason="timm is not installed (pip install -e '.[dev]')")


def test_every_recogniser_names_module_path_and_class():
    table = known_classes()
    assert {"timm", "torchvision", "ultralytics", "smp", "mmcv"} == set(table.values())
    for module_path, cls in table:
        assert "." in module_path and cls.isidentifier()


@needs_timm
@pytest.mark.parametrize("build, reason", [
    ("SEModule(16, add_maxpool=True)", "add_maxpool"),
    ("EcaModule(16, use_mlp=True)", "use_mlp"),
    ("SelectiveKernel(16, 32, stride=2)", "stride 2"),
    ("SelectiveKernel(16, 32)", "from 16 to 32 channels"),
], ids=["se-maxpool", "eca-mlp", "sk-stride", "sk-width"])
def test_timm_variants_without_a_block_are_kept_with_the_reason(build, reason):
    from timm.layers import EcaModule, SelectiveKernel, SEModule  # noqa: F401

    module = eval(build)  # noqa: S307 - a fixed constructor call of this test
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 1), module).eval()
    rows = scan_network(net, example=torch.randn(1, 3, 16, 16))
    assert len(rows) == 1 and rows[0].recogniser == "timm" and not rows[0].swapped
    assert reason in rows[0].reason


@needs_timm
def test_eca_without_a_network_input_says_why_it_waits():
    from timm.layers import EcaModule

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 1), EcaModule(16)).eval()
    report: list = []
    assert to_deploy(net, report=report) is net and isinstance(net[1], EcaModule)
    assert "width is not in its weights" in report[0].reason
    to_deploy(net, example_input=torch.randn(1, 3, 8, 8))
    assert not isinstance(net[1], EcaModule)
