"""Bilinear attention: reference == the AIA BilinearAttention, deploy == reference (H4, H11)."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from attn_export.errors import BlockConfigError
from attn_export.modules.bilinear_attention import BilinearAttention, triangle_indices
from attn_export.modules.checkpoints import load_pretrained
from attn_export.modules.factory import create_block
from attn_export.modules.registry import block_info
from tests.onnx_checks import export_and_compare
from tests.weights import randomize

TRAINED_BN = {"weight": (0.7, 1.3), "running_mean": 0.2}


class PubConvBlock(nn.Module):
    def __init__(self, in_c, out_c, k, s=1, p=0):
        super().__init__()
        self.conv = nn.Conv2d(in_c, out_c, k, stride=s, padding=p)
        self.bn = nn.BatchNorm2d(out_c)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class PubDimChange(nn.Sequential):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.add_module('conv', PubConvBlock(in_channels, out_channels, k=1, s=1))


class PublishedBilinearAttention(nn.Module):
    """Test-only transcription of Attention-in-Attention-Networks ``BilinearAttention``."""

    def __init__(self, inChannels, outChannels):  # noqa: N803 (published names)
        super().__init__()
        midChannels = inChannels // 16  # noqa: N806
        self.dimReduceLayer1 = PubDimChange(inChannels, midChannels)
        self.dimReduceLayer2 = PubDimChange(midChannels * (midChannels + 1) // 2, outChannels)
        self.dimReduceLayer3 = PubDimChange(midChannels * (midChannels + 1) // 2, outChannels)

    def forward(self, x):
        input_x = x
        x = self.dimReduceLayer1(x)
        [batches, channels, rows, cols] = x.size()
        x = x.permute(0, 2, 3, 1).contiguous().view(-1, channels)
        x = torch.bmm(x.unsqueeze(2), x.unsqueeze(1))
        x_list = []
        for i in range(channels):
            x_temp = torch.diagonal(x, offset=-i, dim1=1, dim2=2)
            x_list.append(x_temp)
        x = torch.cat(x_list, dim=1)
        x = x.view(batches, rows, cols, -1)
        x = x.permute(0, 3, 1, 2).contiguous()
        mCha = F.avg_pool2d(x, x.size()[2:])  # noqa: N806
        mCha = self.dimReduceLayer3(mCha)  # noqa: N806
        output = self.dimReduceLayer2(x)
        output = mCha * output
        output = torch.sigmoid(output) * input_x
        return output


def _pair(channels=64):
    ref = randomize(create_block("bilinear", channels, "reference"), std=0.3, bn=TRAINED_BN)
    dep = BilinearAttention(channels).eval()
    dep.load_state_dict(ref.state_dict(), strict=True)
    return ref, dep


def test_published_checkpoint_loads_strictly_and_matches():
    published = randomize(PublishedBilinearAttention(96, 96), std=0.3, bn=TRAINED_BN)
    ref = load_pretrained("bilinear", published.state_dict(), variant="reference")
    x = torch.randn(2, 96, 9, 6)
    with torch.no_grad():
        torch.testing.assert_close(ref(x), published(x), atol=0, rtol=0)


def test_triangle_order_is_the_published_diagonals():
    x = torch.randn(5, 4)
    outer = torch.bmm(x.unsqueeze(2), x.unsqueeze(1))
    want = torch.cat([torch.diagonal(outer, offset=-i, dim1=1, dim2=2) for i in range(4)], 1)
    rows, cols = triangle_indices(4)
    torch.testing.assert_close(x[:, rows] * x[:, cols], want)


@pytest.mark.parametrize("hw", [(9, 13), (16, 16), (1, 5), (20, 7)], ids=str)
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("channels", [64, 48])
def test_deploy_equals_reference(hw, batch, channels):
    ref, dep = _pair(channels)
    x = torch.randn(batch, channels, *hw)
    with torch.no_grad():
        torch.testing.assert_close(dep(x), ref(x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kwargs,match", [({"out_channels": 32}, "must equal channels"),
                                          ({"channels": 8}, "bottleneck of 0")])
def test_bad_args(kwargs, match):
    with pytest.raises(BlockConfigError, match=match):
        create_block("bilinear", **{"channels": 64, **kwargs})


@pytest.mark.parametrize("opset", [13, 17])
def test_exports_with_dynamic_hw(tmp_path, opset):
    _, dep = _pair()
    export_and_compare(dep, tmp_path, (1, 64, 12, 10), [(1, 64, 12, 10), (3, 64, 7, 15)],
                       opset=opset, dynamic="all",
                       forbidden=block_info("bilinear").forbidden_ops)


def test_published_form_cannot_export_h4(tmp_path):
    from attn_export.errors import ExportError
    from attn_export.export.onnx_from_torch import onnx_from_torch

    ref, _ = _pair()
    with pytest.raises(ExportError, match="torchscript export at opset 17 failed"):
        onnx_from_torch(ref, (1, 64, 8, 8), tmp_path / "ref.onnx", 17)
