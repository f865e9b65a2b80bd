"""Residual Attention: reference == the published AttentionModule_stage1..3, deploy == reference
built for each size (the deploy form upsamples to the skip's size)."""

import pytest
import torch
from torch import nn

from attn_export.errors import BlockConfigError, ShapeModeError
from attn_export.modules.factory import create_block
from attn_export.modules.residual_attention import (
    ResidualAttention,
    ResidualAttentionReference,
    reference_geometry,
)
from tests.conftest import exhaustive
from tests.onnx_checks import export_and_compare
from tests.weights import randomize

TRAINED_BN = {"weight": (0.7, 1.3), "running_mean": 0.2}


class PubResidualBlock(nn.Module):
    """Test-only transcription of ``basic_layers.py`` ResidualBlock (``/4`` made ``//4``: the
    published float division cannot build a Conv2d in Python 3)."""

    def __init__(self, input_channels, output_channels, stride=1):
        super().__init__()
        self.input_channels = input_channels
        self.output_channels = output_channels
        self.stride = stride
        self.bn1 = nn.BatchNorm2d(input_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(input_channels, output_channels // 4, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(output_channels // 4)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(output_channels // 4, output_channels // 4, 3, stride, padding=1,
                               bias=False)
        self.bn3 = nn.BatchNorm2d(output_channels // 4)
        self.relu = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(output_channels // 4, output_channels, 1, 1, bias=False)
        self.conv4 = nn.Conv2d(input_channels, output_channels, 1, stride, bias=False)

    def forward(self, x):
        residual = x
        out = self.bn1(x)
        out1 = self.relu(out)
        out = self.conv1(out1)
        out = self.bn2(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn3(out)
        out = self.relu(out)
        out = self.conv3(out)
        if (self.input_channels != self.output_channels) or (self.stride != 1):
            residual = self.conv4(out1)
        out += residual
        return out


def _mask(c):
    return nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                         nn.Conv2d(c, c, kernel_size=1, stride=1, bias=False),
                         nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                         nn.Conv2d(c, c, kernel_size=1, stride=1, bias=False), nn.Sigmoid())


class PublishedStage1(nn.Module):
    """Test-only transcription of ``attention_module.py`` AttentionModule_stage1."""

    def __init__(self, in_channels, out_channels, size1=(56, 56), size2=(28, 28), size3=(14, 14)):
        super().__init__()
        rb = PubResidualBlock
        self.first_residual_blocks = rb(in_channels, out_channels)
        self.trunk_branches = nn.Sequential(rb(in_channels, out_channels), rb(in_channels, out_channels))
        self.mpool1 = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.softmax1_blocks = rb(in_channels, out_channels)
        self.skip1_connection_residual_block = rb(in_channels, out_channels)
        self.mpool2 = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.softmax2_blocks = rb(in_channels, out_channels)
        self.skip2_connection_residual_block = rb(in_channels, out_channels)
        self.mpool3 = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.softmax3_blocks = nn.Sequential(rb(in_channels, out_channels), rb(in_channels, out_channels))
        self.interpolation3 = nn.UpsamplingBilinear2d(size=size3)
        self.softmax4_blocks = rb(in_channels, out_channels)
        self.interpolation2 = nn.UpsamplingBilinear2d(size=size2)
        self.softmax5_blocks = rb(in_channels, out_channels)
        self.interpolation1 = nn.UpsamplingBilinear2d(size=size1)
        self.softmax6_blocks = _mask(out_channels)
        self.last_blocks = rb(in_channels, out_channels)

    def forward(self, x):
        x = self.first_residual_blocks(x)
        out_trunk = self.trunk_branches(x)
        out_mpool1 = self.mpool1(x)
        out_softmax1 = self.softmax1_blocks(out_mpool1)
        out_skip1_connection = self.skip1_connection_residual_block(out_softmax1)
        out_mpool2 = self.mpool2(out_softmax1)
        out_softmax2 = self.softmax2_blocks(out_mpool2)
        out_skip2_connection = self.skip2_connection_residual_block(out_softmax2)
        out_mpool3 = self.mpool3(out_softmax2)
        out_softmax3 = self.softmax3_blocks(out_mpool3)
        out_interp3 = self.interpolation3(out_softmax3) + out_softmax2
        out = out_interp3 + out_skip2_connection
        out_softmax4 = self.softmax4_blocks(out)
        out_interp2 = self.interpolation2(out_softmax4) + out_softmax1
        out = out_interp2 + out_skip1_connection
        out_softmax5 = self.softmax5_blocks(out)
        out_interp1 = self.interpolation1(out_softmax5) + out_trunk
        out_softmax6 = self.softmax6_blocks(out_interp1)
        out = (1 + out_softmax6) * out_trunk
        return self.last_blocks(out)


class PublishedStage3(nn.Module):
    """Test-only transcription of ``attention_module.py`` AttentionModule_stage3."""

    def __init__(self, in_channels, out_channels, size1=(14, 14)):
        super().__init__()
        rb = PubResidualBlock
        self.first_residual_blocks = rb(in_channels, out_channels)
        self.trunk_branches = nn.Sequential(rb(in_channels, out_channels), rb(in_channels, out_channels))
        self.mpool1 = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.softmax1_blocks = nn.Sequential(rb(in_channels, out_channels), rb(in_channels, out_channels))
        self.interpolation1 = nn.UpsamplingBilinear2d(size=size1)
        self.softmax2_blocks = _mask(out_channels)
        self.last_blocks = rb(in_channels, out_channels)

    def forward(self, x):
        x = self.first_residual_blocks(x)
        out_trunk = self.trunk_branches(x)
        out_mpool1 = self.mpool1(x)
        out_softmax1 = self.softmax1_blocks(out_mpool1)
        out_interp1 = self.interpolation1(out_softmax1) + out_trunk
        out_softmax2 = self.softmax2_blocks(out_interp1)
        out = (1 + out_softmax2) * out_trunk
        return self.last_blocks(out)


@pytest.mark.parametrize("stage,published", [(1, PublishedStage1), (3, PublishedStage3)])
def test_published_defaults_load_strictly_and_match(stage, published):
    pub = randomize(published(16, 16), std=0.3, bn=TRAINED_BN)
    ref = ResidualAttentionReference(16, stage=stage).eval()
    ref.load_state_dict(pub.state_dict(), strict=True)
    size = ref.sizes[0]
    x = torch.randn(1, 16, *size)
    with torch.no_grad():
        torch.testing.assert_close(ref(x), pub(x), atol=0, rtol=0)


@pytest.mark.parametrize("hw", exhaustive([(9, 13), (16, 16), (1, 5), (20, 7)]), ids=str)
@pytest.mark.parametrize("batch", exhaustive([3, 1]))
@pytest.mark.parametrize("stage", [1, 2, 3])
def test_deploy_equals_reference_built_for_the_size(stage, hw, batch):
    ref = randomize(ResidualAttentionReference(8, stage=stage, **reference_geometry(hw, stage)),
                    std=0.3, bn=TRAINED_BN)
    dep = ResidualAttention(8, stage=stage).eval()
    dep.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(batch, 8, *hw)
    with torch.no_grad():
        torch.testing.assert_close(dep(x), ref(x), atol=1e-5, rtol=1e-5)


def test_reference_at_another_size_says_what_to_pass():
    ref = ResidualAttentionReference(8).eval()
    with pytest.raises(ShapeModeError, match=r"size1=\(56, 56\).*'size1': \(9, 13\)"):
        ref(torch.randn(1, 8, 9, 13))


@pytest.mark.parametrize("kwargs,match", [({"stage": 4}, "stage must be 1, 2 or 3"),
                                          ({"stage": 3, "size2": (7, 7)}, "drop the others"),
                                          ({"out_channels": 32}, "must equal channels"),
                                          ({"size1": (0, 3)}, r"\(H, W\) pairs")])
def test_bad_args(kwargs, match):
    with pytest.raises(BlockConfigError, match=match):
        create_block("residual_attention", 16, "reference", **kwargs)


@pytest.mark.parametrize("opset", [13, 17])
def test_exports_with_dynamic_hw(tmp_path, opset):
    dep = randomize(ResidualAttention(8), std=0.3, bn=TRAINED_BN)
    export_and_compare(dep, tmp_path, (1, 8, 12, 10), [(1, 8, 12, 10), (3, 8, 7, 15)],
                       opset=opset, dynamic="all")
