"""EMA: reference == the published code, deploy == reference at odd sizes and H != W (H2, H11)."""

import pytest
import torch
from torch import nn

from attn_export.errors import BlockConfigError
from attn_export.modules.efficient_multiscale_attention import EMA, EMAReference
from attn_export.modules.factory import create_block
from attn_export.modules.registry import block_info
from tests.onnx_checks import export_and_compare
from tests.weights import randomize


class PublishedEMA(nn.Module):
    """Test-only transcription of YOLOonMe/EMA-attention-module ``EMA``."""

    def __init__(self, channels, c2=None, factor=32):
        super().__init__()
        self.groups = factor
        assert channels // self.groups > 0
        self.softmax = nn.Softmax(-1)
        self.agp = nn.AdaptiveAvgPool2d((1, 1))
        self.pool_h = nn.AdaptiveAvgPool2d((None, 1))
        self.pool_w = nn.AdaptiveAvgPool2d((1, None))
        self.gn = nn.GroupNorm(channels // self.groups, channels // self.groups)
        self.conv1x1 = nn.Conv2d(channels // self.groups, channels // self.groups, 1, 1, 0)
        self.conv3x3 = nn.Conv2d(channels // self.groups, channels // self.groups, 3, 1, 1)

    def forward(self, x):
        b, c, h, w = x.size()
        group_x = x.reshape(b * self.groups, -1, h, w)
        x_h = self.pool_h(group_x)
        x_w = self.pool_w(group_x).permute(0, 1, 3, 2)
        hw = self.conv1x1(torch.cat([x_h, x_w], dim=2))
        x_h, x_w = torch.split(hw, [h, w], dim=2)
        x1 = self.gn(group_x * x_h.sigmoid() * x_w.permute(0, 1, 3, 2).sigmoid())
        x2 = self.conv3x3(group_x)
        x11 = self.softmax(self.agp(x1).reshape(b * self.groups, -1, 1).permute(0, 2, 1))
        x12 = x2.reshape(b * self.groups, c // self.groups, -1)
        x21 = self.softmax(self.agp(x2).reshape(b * self.groups, -1, 1).permute(0, 2, 1))
        x22 = x1.reshape(b * self.groups, c // self.groups, -1)
        weights = (torch.matmul(x11, x12) + torch.matmul(x21, x22)).reshape(b * self.groups, 1, h, w)
        return (group_x * weights.sigmoid()).reshape(b, c, h, w)


def _pair(channels=64, **kwargs):
    ref = randomize(EMAReference(channels, **kwargs))
    dep = EMA(channels, **kwargs).eval()
    dep.load_state_dict(ref.state_dict(), strict=True)
    return ref, dep


def test_published_state_dict_loads_strictly_and_matches():
    published = randomize(PublishedEMA(64, factor=8))
    ref = EMAReference(64, factor=8).eval()
    ref.load_state_dict(published.state_dict(), strict=True)
    x = torch.randn(2, 64, 11, 7)
    with torch.no_grad():
        torch.testing.assert_close(ref(x), published(x), atol=0, rtol=0)


@pytest.mark.parametrize("hw", [(9, 13), (16, 16), (1, 5), (20, 7)], ids=str)
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("channels,factor", [(64, 32), (48, 4)])
def test_deploy_equals_reference(hw, batch, channels, factor):
    ref, dep = _pair(channels, factor=factor)
    x = torch.randn(batch, channels, *hw) * 3
    with torch.no_grad():
        torch.testing.assert_close(dep(x), ref(x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("channels,factor", [(16, 32), (40, 32), (64, 0)])
def test_widths_the_groups_do_not_divide_are_refused(channels, factor):
    with pytest.raises(BlockConfigError, match="factor"):
        create_block("ema", channels, factor=factor)


@pytest.mark.parametrize("opset", [13, 17])
def test_exports_with_dynamic_hw(tmp_path, opset):
    _, dep = _pair()
    export_and_compare(dep, tmp_path, (1, 64, 12, 10), [(1, 64, 12, 10), (3, 64, 7, 15)],
                       opset=opset, dynamic="all", forbidden=block_info("ema").forbidden_ops,
                       atol=1e-4, rtol=1e-4)
