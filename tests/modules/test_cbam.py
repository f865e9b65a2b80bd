"""CBAM: deploy == reference (with and without biases), the seed loads strictly, and the official
(Jongchan/attention-module) and timm checkpoints convert exactly: Linear -> 1x1 conv, eval-mode
BatchNorm folded into the spatial conv, [max, mean] swapped to [mean, max]."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attn_export.errors import BlockConfigError, CheckpointError
from attn_export.modules.cbam import CBAM, CBAMReference
from attn_export.modules.checkpoints import (
    convert_state_dict,
    guess_source,
    infer_hyperparams,
    load_pretrained,
)
from attn_export.modules.factory import create_block
from attn_export.modules.swap import to_deploy
from tests.onnx_checks import export_and_compare
from tests.seed_listings import cbam_block as SeedCBAM
from tests.weights import randomize

SHAPES = [(1, 7, 9), (3, 13, 5), (3, 16, 16), (1, 1, 1)]

# --- official Jongchan/attention-module MODELS/cbam.py ----------------------------------------


class BasicConv(nn.Module):
    def __init__(self, in_planes, out_planes, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, relu=True, bn=True, bias=False):
        super().__init__()
        self.out_channels = out_planes
        self.conv = nn.Conv2d(in_planes, out_planes, kernel_size=kernel_size, stride=stride,
                              padding=padding, dilation=dilation, groups=groups, bias=bias)
        self.bn = nn.BatchNorm2d(out_planes, eps=1e-5, momentum=0.01, affine=True) if bn else None
        self.relu = nn.ReLU() if relu else None

    def forward(self, x):
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        if self.relu is not None:
            x = self.relu(x)
        return x


class Flatten(nn.Module):
    def forward(self, x):
        return x.view(x.size(0), -1)


class ChannelGate(nn.Module):
    def __init__(self, gate_channels, reduction_ratio=16, pool_types=("avg", "max")):
        super().__init__()
        self.gate_channels = gate_channels
        self.mlp = nn.Sequential(
            Flatten(),
            nn.Linear(gate_channels, gate_channels // reduction_ratio),
            nn.ReLU(),
            nn.Linear(gate_channels // reduction_ratio, gate_channels),
        )
        self.pool_types = pool_types

    def forward(self, x):
        channel_att_sum = None
        for pool_type in self.pool_types:
            if pool_type == "avg":
                pool = F.avg_pool2d(x, (x.size(2), x.size(3)), stride=(x.size(2), x.size(3)))
            else:
                pool = F.max_pool2d(x, (x.size(2), x.size(3)), stride=(x.size(2), x.size(3)))
            channel_att_raw = self.mlp(pool)
            channel_att_sum = channel_att_raw if channel_att_sum is None else (
                channel_att_sum + channel_att_raw)
        scale = torch.sigmoid(channel_att_sum).unsqueeze(2).unsqueeze(3).expand_as(x)
        return x * scale


class ChannelPool(nn.Module):
    def forward(self, x):
        return torch.cat((torch.max(x, 1)[0].unsqueeze(1), torch.mean(x, 1).unsqueeze(1)), dim=1)


class SpatialGate(nn.Module):
    def __init__(self):
        super().__init__()
        kernel_size = 7
        self.compress = ChannelPool()
        self.spatial = BasicConv(2, 1, kernel_size, stride=1, padding=(kernel_size - 1) // 2,
                                 relu=False)

    def forward(self, x):
        return x * torch.sigmoid(self.spatial(self.compress(x)))


class OfficialCBAM(nn.Module):
    def __init__(self, gate_channels, reduction_ratio=16, pool_types=("avg", "max"),
                 no_spatial=False):
        super().__init__()
        self.ChannelGate = ChannelGate(gate_channels, reduction_ratio, pool_types)
        self.no_spatial = no_spatial
        if not no_spatial:
            self.SpatialGate = SpatialGate()

    def forward(self, x):
        x_out = self.ChannelGate(x)
        if not self.no_spatial:
            x_out = self.SpatialGate(x_out)
        return x_out


# --- timm layers/cbam.py CbamModule -------------------------------------------------------------


class TimmConvNormAct(nn.Module):
    """timm ConvNormAct(2, 1, k, apply_act=False): conv (no bias) + BatchNorm, keys conv/bn."""

    def __init__(self, in_channels, out_channels, kernel_size):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size,
                              padding=(kernel_size - 1) // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x):
        return self.bn(self.conv(x))


class TimmChannelAttn(nn.Module):
    def __init__(self, channels, rd_ratio=1.0 / 16, mlp_bias=False):
        super().__init__()
        rd_channels = max(1, int(channels * rd_ratio + 0.5))  # make_divisible(v, 1, 0.)
        self.fc1 = nn.Conv2d(channels, rd_channels, 1, bias=mlp_bias)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(rd_channels, channels, 1, bias=mlp_bias)

    def forward(self, x):
        x_avg = self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True))))
        x_max = self.fc2(self.act(self.fc1(x.amax((2, 3), keepdim=True))))
        return x * torch.sigmoid(x_avg + x_max)


class TimmSpatialAttn(nn.Module):
    def __init__(self, kernel_size=7):
        super().__init__()
        self.conv = TimmConvNormAct(2, 1, kernel_size)

    def forward(self, x):
        x_attn = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(x_attn))


class TimmCbamModule(nn.Module):
    def __init__(self, channels, rd_ratio=1.0 / 16, spatial_kernel_size=7, mlp_bias=False):
        super().__init__()
        self.channel = TimmChannelAttn(channels, rd_ratio=rd_ratio, mlp_bias=mlp_bias)
        self.spatial = TimmSpatialAttn(spatial_kernel_size)

    def forward(self, x):
        return self.spatial(self.channel(x))


@pytest.mark.parametrize("mlp_bias,spatial_bias", [(False, False), (True, True), (False, True)])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_deploy_equals_reference(mlp_bias, spatial_bias, shape):
    ref = randomize(CBAMReference(32, ratio=4, mlp_bias=mlp_bias, spatial_bias=spatial_bias), seed=5)
    dep = to_deploy(ref).eval()
    assert isinstance(dep, CBAM)
    x = torch.randn(shape[0], 32, *shape[1:])
    with torch.no_grad():
        torch.testing.assert_close(dep(x), ref(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kernel_size", [7, 3])
def test_seed_state_dict_loads_strictly_and_matches(kernel_size):
    seed = randomize(SeedCBAM(64, kernel_size=kernel_size), seed=5)
    ref = CBAMReference(64, kernel_size=kernel_size).eval()
    ref.load_state_dict(seed.state_dict(), strict=True)
    x = torch.randn(2, 64, 7, 9)
    with torch.no_grad():
        torch.testing.assert_close(ref(x), seed(x), atol=0, rtol=0)
    assert infer_hyperparams("cbam", seed.state_dict()) == {
        "channels": 64, "ratio": 8, "kernel_size": kernel_size, "mlp_bias": False,
        "spatial_bias": False}


@pytest.mark.parametrize("variant", ["deploy", "reference"])
def test_official_checkpoint_converts_exactly(variant):
    official = randomize(OfficialCBAM(64, reduction_ratio=16), seed=5)
    block = load_pretrained("cbam", official.state_dict(), source="official", variant=variant)
    assert block.init_args == {"channels": 64, "ratio": 16, "kernel_size": 7, "mlp_bias": True,
                               "spatial_bias": True}
    x = torch.randn(2, 64, 9, 13)
    with torch.no_grad():
        torch.testing.assert_close(block(x), official(x), atol=1e-5, rtol=1e-5)


def test_official_channel_order_is_swapped():
    official = randomize(OfficialCBAM(32), seed=5)
    with torch.no_grad():  # BN as the identity: the converted conv is the official one, swapped
        bn = official.SpatialGate.spatial.bn
        bn.weight.fill_(1), bn.bias.zero_(), bn.running_mean.zero_(), bn.running_var.fill_(1 - 1e-5)
    sd = convert_state_dict("cbam", official.state_dict(), "official")
    w = official.SpatialGate.spatial.conv.weight
    torch.testing.assert_close(sd["spatialattention.conv1.weight"], w[:, [1, 0]])
    torch.testing.assert_close(sd["spatialattention.conv1.bias"], torch.zeros(1))


def test_official_without_spatial_gate_is_refused():
    official = OfficialCBAM(32, no_spatial=True)
    with pytest.raises(CheckpointError, match="no_spatial=True"):
        load_pretrained("cbam", official.state_dict(), source="official")


@pytest.mark.parametrize("channels,mlp_bias", [(64, False), (64, True), (40, False)])
def test_timm_cbam_converts_exactly(channels, mlp_bias):
    timm = randomize(TimmCbamModule(channels, mlp_bias=mlp_bias), seed=5)
    block = load_pretrained("cbam", timm.state_dict(), source="timm")
    assert block.channelattention.fc1.out_channels == timm.channel.fc1.out_channels
    assert block.init_args["mlp_bias"] is mlp_bias and block.init_args["spatial_bias"]
    x = torch.randn(3, channels, 8, 5)
    with torch.no_grad():
        torch.testing.assert_close(block(x), timm(x), atol=1e-5, rtol=1e-5)


def test_source_guess_tells_the_layouts_apart():
    assert guess_source("cbam", OfficialCBAM(32).state_dict()) == "official"
    assert guess_source("cbam", TimmCbamModule(32).state_dict()) == "timm"
    assert guess_source("cbam", SeedCBAM(32).state_dict()) == "reference"
    with pytest.raises(CheckpointError, match="looks like the 'official' layout"):
        load_pretrained("cbam", OfficialCBAM(32).state_dict())


@pytest.mark.parametrize("kwargs,match", [({"kernel_size": 5}, "kernel_size"),
                                          ({"ratio": 64}, "bottleneck")])
def test_bad_args_raise(kwargs, match):
    with pytest.raises(BlockConfigError, match=match):
        create_block("cbam", 32, **kwargs)


@pytest.mark.parametrize("fill", [0.0, 3.0])
def test_finite_on_zero_and_constant_maps(fill):
    ref = randomize(CBAMReference(32, ratio=4, mlp_bias=True, spatial_bias=True), seed=5)
    dep = to_deploy(ref).eval()
    x = torch.full((2, 32, 7, 9), fill)
    with torch.no_grad():
        assert torch.isfinite(dep(x)).all()
        torch.testing.assert_close(dep(x), ref(x), atol=1e-6, rtol=1e-6)


def test_biased_deploy_form_exports_without_fixed_pools(tmp_path):
    block = load_pretrained("cbam", randomize(OfficialCBAM(32), seed=5).state_dict(), source="official")
    export_and_compare(block, tmp_path, (2, 32, 16, 16), [], opset=13, filename="cbam.onnx",
                       forbidden={"MaxPool", "AveragePool", "GlobalMaxPool", "BatchNormalization"})
