"""Shuffle Attention: reference == the published sa_layer, deploy == reference (H11)."""

import pytest
import torch
from torch import nn
from torch.nn.parameter import Parameter

from attn_export.errors import BlockConfigError
from attn_export.modules.factory import create_block
from attn_export.modules.registry import block_info
from attn_export.modules.shuffle_attention import ShuffleAttention, ShuffleAttentionReference
from tests.onnx_checks import export_and_compare
from tests.weights import randomize


class PublishedSALayer(nn.Module):
    """Test-only transcription of wofmanaf/SA-Net ``models/sa_resnet.py`` ``sa_layer``."""

    def __init__(self, channel, groups=64):
        super().__init__()
        self.groups = groups
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.cweight = Parameter(torch.zeros(1, channel // (2 * groups), 1, 1))
        self.cbias = Parameter(torch.ones(1, channel // (2 * groups), 1, 1))
        self.sweight = Parameter(torch.zeros(1, channel // (2 * groups), 1, 1))
        self.sbias = Parameter(torch.ones(1, channel // (2 * groups), 1, 1))
        self.sigmoid = nn.Sigmoid()
        self.gn = nn.GroupNorm(channel // (2 * groups), channel // (2 * groups))

    @staticmethod
    def channel_shuffle(x, groups):
        b, c, h, w = x.shape
        x = x.reshape(b, groups, -1, h, w)
        x = x.permute(0, 2, 1, 3, 4)
        return x.reshape(b, -1, h, w)

    def forward(self, x):
        b, c, h, w = x.shape
        x = x.reshape(b * self.groups, -1, h, w)
        x_0, x_1 = x.chunk(2, dim=1)
        xn = self.avg_pool(x_0)
        xn = self.cweight * xn + self.cbias
        xn = x_0 * self.sigmoid(xn)
        xs = self.gn(x_1)
        xs = self.sweight * xs + self.sbias
        xs = x_1 * self.sigmoid(xs)
        out = torch.cat([xn, xs], dim=1)
        out = out.reshape(b, -1, h, w)
        return self.channel_shuffle(out, 2)


def _pair(channels=128, groups=64):
    ref = randomize(ShuffleAttentionReference(channels, groups))
    dep = ShuffleAttention(channels, groups).eval()
    dep.load_state_dict(ref.state_dict(), strict=True)
    return ref, dep


def test_published_state_dict_loads_strictly_and_matches():
    published = randomize(PublishedSALayer(256))
    ref = ShuffleAttentionReference(256).eval()
    ref.load_state_dict(published.state_dict(), strict=True)
    x = torch.randn(2, 256, 9, 6)
    with torch.no_grad():
        torch.testing.assert_close(ref(x), published(x), atol=0, rtol=0)


@pytest.mark.parametrize("hw", [(9, 13), (16, 16), (1, 5), (20, 7)], ids=str)
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("channels,groups", [(128, 64), (48, 4), (24, 2)])
def test_deploy_equals_reference(hw, batch, channels, groups):
    ref, dep = _pair(channels, groups)
    x = torch.randn(batch, channels, *hw) * 3
    with torch.no_grad():
        torch.testing.assert_close(dep(x), ref(x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("variant", ["reference", "deploy"])
def test_published_default_refuses_narrow_widths_naming_the_kwarg(variant):
    with pytest.raises(BlockConfigError, match=r"divisible by 2 \* groups = 128.*groups=\.\.\."):
        create_block("shuffle_attention", 64, variant)
    assert create_block("shuffle_attention", 64, variant, groups=8) is not None


@pytest.mark.parametrize("opset", [13, 17])
def test_exports_with_dynamic_hw(tmp_path, opset):
    _, dep = _pair(48, 4)
    export_and_compare(dep, tmp_path, (1, 48, 12, 10), [(1, 48, 12, 10), (3, 48, 7, 15)],
                       opset=opset, dynamic="all",
                       forbidden=block_info("shuffle_attention").forbidden_ops)
