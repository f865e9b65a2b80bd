"""RCAN channel attention: reference == seed, deploy == reference, BasicSR layout, inference."""

import pytest
import torch
from torch import nn

from attn_export.errors import BlockConfigError, CheckpointError
from attn_export.modules.checkpoints import guess_source, load_pretrained
from attn_export.modules.rcan import RCANChannelAttention, RCANChannelAttentionReference
from tests.weights import assert_matches_float64, randomize

SHAPES = [(1, 7, 9), (3, 13, 5), (3, 16, 16), (1, 1, 1)]


class CALayer(nn.Module):
    """The seed ``channel-attention.md`` CALayer (yulunzhang/RCAN), as published."""

    def __init__(self, channel, reduction=16):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_du = nn.Sequential(
            nn.Conv2d(channel, channel // reduction, 1, padding=0, bias=True),
            nn.ReLU(inplace=True),
            nn.Conv2d(channel // reduction, channel, 1, padding=0, bias=True),
            nn.Sigmoid(),
        )

    def forward(self, x):
        y = self.avg_pool(x)
        y = self.conv_du(y)
        return x * y


class BasicSRChannelAttention(nn.Module):
    """BasicSR ``basicsr/archs/rcan_arch.py`` ChannelAttention: pool and convs in one Sequential."""

    def __init__(self, num_feat, squeeze_factor=16):
        super().__init__()
        self.attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(num_feat, num_feat // squeeze_factor, 1, padding=0),
            nn.ReLU(inplace=True), nn.Conv2d(num_feat // squeeze_factor, num_feat, 1, padding=0),
            nn.Sigmoid())

    def forward(self, x):
        return x * self.attention(x)


@pytest.mark.parametrize("channels,reduction", [(16, 4), (64, 16)], ids=["c16r4", "c64r16"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_deploy_equals_reference(channels, reduction, shape):
    ref = randomize(RCANChannelAttentionReference(channels, reduction))
    dep = RCANChannelAttention(channels, reduction).eval()
    dep.load_state_dict(ref.state_dict(), strict=True)
    n, h, w = shape
    x = torch.randn(n, channels, h, w)
    with torch.no_grad():
        torch.testing.assert_close(dep(x), ref(x), atol=1e-5, rtol=1e-5)


def test_seed_state_dict_loads_strictly_and_matches():
    seed = randomize(CALayer(32, 8))
    ref = RCANChannelAttentionReference(32, 8).eval()
    ref.load_state_dict(seed.state_dict(), strict=True)
    x = torch.randn(2, 32, 11, 7)
    with torch.no_grad():
        torch.testing.assert_close(ref(x), seed(x), atol=0, rtol=0)


def test_basicsr_layout_converts_and_matches():
    theirs = randomize(BasicSRChannelAttention(48, 16), seed=1)
    x = torch.randn(3, 48, 9, 13)
    block = load_pretrained("rcan_ca", theirs.state_dict(), source="basicsr")
    assert isinstance(block, RCANChannelAttention)
    assert block.init_args == {"channels": 48, "reduction": 16}
    with torch.no_grad():
        torch.testing.assert_close(block(x), theirs(x), atol=1e-5, rtol=1e-5)


def test_basicsr_layout_is_recognised():
    theirs = BasicSRChannelAttention(32, 16)
    assert guess_source("rcan_ca", theirs.state_dict()) == "basicsr"
    assert guess_source("rcan_ca", CALayer(32, 16).state_dict()) == "reference"
    block = load_pretrained("rcan_ca", theirs.state_dict(), source="auto")
    assert block.conv_du[2].bias.shape == (32,)
    with pytest.raises(CheckpointError, match="missing 'conv_du.0.weight'"):
        load_pretrained("rcan_ca", theirs.state_dict())


@pytest.mark.parametrize("channels,reduction", [(64, 16), (64, 12), (30, 4), (8, 8)])
def test_hyperparams_inferred_from_weights(channels, reduction):
    sd = CALayer(channels, reduction).state_dict()
    block = load_pretrained("rcan_ca", sd, variant="reference")
    assert block.init_args["channels"] == channels
    assert channels // block.init_args["reduction"] == channels // reduction
    assert block.conv_du[0].weight.shape == sd["conv_du.0.weight"].shape


def test_bottleneck_without_integer_reduction_still_loads():
    # 10 channels -> 4 hidden: no integer r has 10 // r == 4; checkpoints.reduction_for finds a
    # float one, so a checkpoint from code that rounds differently still loads exactly.
    sd = {"conv_du.0.weight": torch.randn(4, 10, 1, 1), "conv_du.0.bias": torch.randn(4),
          "conv_du.2.weight": torch.randn(10, 4, 1, 1), "conv_du.2.bias": torch.randn(10)}
    block = load_pretrained("rcan_ca", sd)
    assert block.conv_du[0].out_channels == 4
    x = torch.randn(2, 10, 5, 6)
    with torch.no_grad():
        expected = x * torch.sigmoid(nn.functional.conv2d(torch.relu(nn.functional.conv2d(
            x.mean((2, 3), keepdim=True), sd["conv_du.0.weight"], sd["conv_du.0.bias"])),
            sd["conv_du.2.weight"], sd["conv_du.2.bias"]))
        torch.testing.assert_close(block(x), expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("cls", [RCANChannelAttentionReference, RCANChannelAttention])
def test_empty_bottleneck_raises(cls):
    with pytest.raises(BlockConfigError, match="bottleneck of 0 channels"):
        cls(8, reduction=16)


@pytest.mark.parametrize("fill", [0.0, 3.0, -2.5], ids=["zero", "const+", "const-"])
def test_finite_on_zero_and_constant_maps(fill):
    dep = randomize(RCANChannelAttention(16, 4))
    x = torch.full((2, 16, 5, 7), fill)
    y = assert_matches_float64(dep, x)
    if fill == 0.0:
        assert not y.any()
