"""StripPooling: reference == seed, deploy == reference at its declared geometry (H1, H2)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attn_export.errors import BlockConfigError, CheckpointError, ShapeModeError
from attn_export.modules.checkpoints import load_pretrained
from attn_export.modules.factory import create_block
from attn_export.modules.registry import block_info
from attn_export.modules.strip_pooling import (
    BinPool,
    SPBlock,
    SPBlockReference,
    StripPooling,
    StripPoolingReference,
    bin_matrix,
)
from attn_export.modules.swap import to_deploy
from tests.conftest import exhaustive
from tests.onnx_checks import export_and_compare
from tests.weights import assert_matches_float64, randomize

UP = {"mode": "bilinear", "align_corners": True}


class SeedStripPooling(nn.Module):
    """Seed ``channel-spatial-attention.md`` StripPooling (SPNet's mixed pooling module)."""

    def __init__(self, in_channels, pool_size, norm_layer, up_kwargs):
        super().__init__()
        self.pool1 = nn.AdaptiveAvgPool2d(pool_size[0])
        self.pool2 = nn.AdaptiveAvgPool2d(pool_size[1])
        self.pool3 = nn.AdaptiveAvgPool2d((1, None))
        self.pool4 = nn.AdaptiveAvgPool2d((None, 1))
        inter_channels = int(in_channels / 4)

        def seq(cin, cout, k, p, relu):
            layers = [nn.Conv2d(cin, cout, k, 1, p, bias=False), norm_layer(cout)]
            return nn.Sequential(*layers, nn.ReLU(True)) if relu else nn.Sequential(*layers)

        self.conv1_1 = seq(in_channels, inter_channels, 1, 0, True)
        self.conv1_2 = seq(in_channels, inter_channels, 1, 0, True)
        self.conv2_0 = seq(inter_channels, inter_channels, 3, 1, False)
        self.conv2_1 = seq(inter_channels, inter_channels, 3, 1, False)
        self.conv2_2 = seq(inter_channels, inter_channels, 3, 1, False)
        self.conv2_3 = seq(inter_channels, inter_channels, (1, 3), (0, 1), False)
        self.conv2_4 = seq(inter_channels, inter_channels, (3, 1), (1, 0), False)
        self.conv2_5 = seq(inter_channels, inter_channels, 3, 1, True)
        self.conv2_6 = seq(inter_channels, inter_channels, 3, 1, True)
        self.conv3 = seq(inter_channels * 2, in_channels, 1, 0, False)
        self._up_kwargs = up_kwargs

    def forward(self, x):
        _, _, h, w = x.size()
        x1 = self.conv1_1(x)
        x2 = self.conv1_2(x)
        x2_1 = self.conv2_0(x1)
        x2_2 = F.interpolate(self.conv2_1(self.pool1(x1)), (h, w), **self._up_kwargs)
        x2_3 = F.interpolate(self.conv2_2(self.pool2(x1)), (h, w), **self._up_kwargs)
        x2_4 = F.interpolate(self.conv2_3(self.pool3(x2)), (h, w), **self._up_kwargs)
        x2_5 = F.interpolate(self.conv2_4(self.pool4(x2)), (h, w), **self._up_kwargs)
        x1 = self.conv2_5(F.relu_(x2_1 + x2_2 + x2_3))
        x2 = self.conv2_6(F.relu_(x2_5 + x2_4))
        out = self.conv3(torch.cat([x1, x2], dim=1))
        return F.relu_(x + out)


# randomize()'s BatchNorm fill: trained-looking, as an identity BN would hide a branch mistake.
TRAINED_BN = {"weight": (0.7, 1.3), "running_mean": 0.2}


def _pair(hw, channels=16, **kwargs):
    ref = randomize(StripPoolingReference(channels, **kwargs), std=0.3, bn=TRAINED_BN)
    dep = StripPooling(**ref.init_args, input_size=hw).eval()
    dep.load_state_dict(ref.state_dict(), strict=True)
    return ref, dep


def test_to_deploy_passes_the_geometry_through():
    ref = randomize(StripPoolingReference(16), std=0.3, bn=TRAINED_BN)
    net = nn.Sequential(nn.Conv2d(3, 16, 1), ref).eval()
    x = torch.randn(2, 3, 11, 14)
    with torch.no_grad():
        expected = net(x)
        to_deploy(net, input_size=(11, 14))
        assert isinstance(net[1], StripPooling) and net[1].input_size == (11, 14)
        torch.testing.assert_close(net(x), expected, atol=1e-5, rtol=1e-5)


# 20 and 12 divide neither (matrices), 60x60 both (avg_pool2d), 24x36 only 12 (mixed); 7x7 and
# 9x13 are smaller than the 20x20 bins (repeated rows), 32x32 has bins of unequal length.
GEOMETRIES = [(9, 13), (7, 7), (20, 12), (24, 36), (32, 32), (60, 60)]


@pytest.mark.parametrize("hw", GEOMETRIES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("batch", exhaustive([3, 1]))
def test_deploy_equals_reference(hw, batch):
    ref, dep = _pair(hw)
    x = torch.randn(batch, 16, *hw)
    with torch.no_grad():
        torch.testing.assert_close(dep(x), ref(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("up_kwargs", [{"mode": "bilinear", "align_corners": False},
                                       {"mode": "nearest"}], ids=["bilinear", "nearest"])
def test_other_upsampling_modes(up_kwargs):
    # Upsampling a length-1 strip repeats it in every mode, so the deploy broadcast stays exact.
    ref, dep = _pair((13, 10), channels=32, pool_size=(6, 4), up_kwargs=up_kwargs)
    x = torch.randn(2, 32, 13, 10)
    with torch.no_grad():
        torch.testing.assert_close(dep(x), ref(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("size,bins", [(13, 20), (32, 20), (40, 20), (9, 12), (5, 1)])
def test_bin_matrix_is_adaptive_avg_pool(size, bins):
    x = torch.randn(2, 3, size, 1)
    pooled = F.adaptive_avg_pool2d(x, (bins, 1))
    torch.testing.assert_close(bin_matrix(size, bins) @ x, pooled)


def test_bin_pool_kernel_path_and_buffers_stay_out_of_state_dict():
    assert BinPool(20, (60, 40)).kernel == (3, 2)
    pool = BinPool(20, (30, 40))
    assert pool.kernel is None and pool.state_dict() == {}
    assert pool.half().rows.dtype == torch.float16  # buffers follow .half() / .to()


def test_seed_state_dict_loads_strictly_and_matches():
    seed = randomize(SeedStripPooling(32, (20, 12), nn.BatchNorm2d, UP), std=0.3, bn=TRAINED_BN)
    ref = StripPoolingReference(32).eval()
    ref.load_state_dict(seed.state_dict(), strict=True)
    x = torch.randn(2, 32, 17, 23)
    with torch.no_grad():
        torch.testing.assert_close(ref(x), seed(x), atol=0, rtol=0)


def test_checkpoint_loads_into_the_deploy_form_for_a_geometry():
    seed = randomize(SeedStripPooling(32, (20, 12), nn.BatchNorm2d, UP), std=0.3, bn=TRAINED_BN)
    block = load_pretrained("strip_pooling", seed.state_dict(), input_size=(30, 18))
    assert block.init_args["channels"] == 32 and block.input_size == (30, 18)
    x = torch.randn(2, 32, 30, 18)
    with torch.no_grad():
        torch.testing.assert_close(block(x), seed(x), atol=1e-5, rtol=1e-5)


def test_checkpoint_with_other_inner_width_is_refused():
    sd = randomize(StripPoolingReference(32), std=0.3, bn=TRAINED_BN).state_dict()
    sd["conv1_1.0.weight"] = torch.randn(6, 32, 1, 1)
    with pytest.raises(CheckpointError, match="int\\(channels / 4\\)"):
        load_pretrained("strip_pooling", sd, input_size=(8, 8))


def test_deploy_without_geometry_explains_what_to_pass():
    with pytest.raises(BlockConfigError, match=r"input_size=\(H, W\)"):
        create_block("strip_pooling", 16)


def test_deploy_refuses_another_size_in_eager_mode():
    _, dep = _pair((12, 10))
    with pytest.raises(ShapeModeError, match=r"built for H, W = \(12, 10\).*input_size=\(9, 10\)"):
        dep(torch.randn(1, 16, 9, 10))


@pytest.mark.parametrize(
    "kwargs,match",
    [({"pool_size": (20,)}, "pool_size must be"), ({"pool_size": (0, 12)}, "pool_size must be"),
     ({"channels": 3}, "bottleneck of 0"), ({"input_size": (0, 8)}, "input_size must be"),
     ({"input_size": 32}, "input_size must be")],
    ids=["pool-len", "pool-zero", "channels", "input-zero", "input-int"],
)
def test_bad_args_raise(kwargs, match):
    args = {"channels": 16, "input_size": (8, 8), **kwargs}
    with pytest.raises(BlockConfigError, match=match):
        StripPooling(**args)


@pytest.mark.parametrize("fill", [0.0, 2.0])
def test_finite_on_zero_and_constant_maps(fill):
    _, dep = _pair((9, 13))
    assert_matches_float64(dep, torch.full((2, 16, 9, 13), fill))


@pytest.mark.parametrize(
    "exporter,opset,hw",
    [("torchscript", 11, (16, 16)), ("torchscript", 11, (60, 60)), ("dynamo", 18, (60, 60))],
    ids=["torchscript-matrices", "torchscript-avg_pool", "dynamo-avg_pool"],
)
def test_export_with_dynamic_batch(tmp_path, exporter, opset, hw):
    # The registry matrix in tests/export exports the 16x16 (matrices) geometry with dynamo.
    _, dep = _pair(hw)
    ops = export_and_compare(dep, tmp_path, (2, 16, *hw), [(batch, 16, *hw) for batch in (1, 3)],
                             exporter=exporter, opset=opset, dynamic="batch", filename="sp.onnx",
                             forbidden=block_info("strip_pooling").forbidden_ops)
    assert ("AveragePool" in ops) == (hw == (60, 60))


# ----------------------------------------------------------------------------------------------
# sp_block: SPNet's strip pooling module (SPBlock), applied as x * gate.


class SPNetSPBlock(nn.Module):
    """Test-only transcription of Andrew-Qibin/SPNet ``models/resnet.py`` ``SPBlock`` (returns the
    gate; SPNet's Bottleneck multiplies it in)."""

    def __init__(self, inplanes, outplanes, norm_layer=None):
        super().__init__()
        midplanes = outplanes
        self.conv1 = nn.Conv2d(inplanes, midplanes, kernel_size=(3, 1), padding=(1, 0), bias=False)
        self.bn1 = norm_layer(midplanes)
        self.conv2 = nn.Conv2d(inplanes, midplanes, kernel_size=(1, 3), padding=(0, 1), bias=False)
        self.bn2 = norm_layer(midplanes)
        self.conv3 = nn.Conv2d(midplanes, outplanes, kernel_size=1, bias=True)
        self.pool1 = nn.AdaptiveAvgPool2d((None, 1))
        self.pool2 = nn.AdaptiveAvgPool2d((1, None))
        self.relu = nn.ReLU(inplace=False)

    def forward(self, x):
        _, _, h, w = x.size()
        x1 = self.pool1(x)
        x1 = self.conv1(x1)
        x1 = self.bn1(x1)
        x1 = x1.expand(-1, -1, h, w)
        x2 = self.pool2(x)
        x2 = self.conv2(x2)
        x2 = self.bn2(x2)
        x2 = x2.expand(-1, -1, h, w)
        x = self.relu(x1 + x2)
        return self.conv3(x).sigmoid()


def test_sp_block_published_state_dict_loads_strictly_and_matches():
    theirs = randomize(SPNetSPBlock(24, 24, nn.BatchNorm2d), std=0.3, bn=TRAINED_BN)
    ref = SPBlockReference(24).eval()
    ref.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 24, 11, 7)
    with torch.no_grad():
        torch.testing.assert_close(ref(x), x * theirs(x), atol=0, rtol=0)


@pytest.mark.parametrize("shape", [(1, 7, 9), (3, 13, 5), (3, 16, 16), (1, 1, 1)],
                         ids=lambda s: "x".join(map(str, s)))
def test_sp_block_deploy_equals_reference(shape):
    ref = randomize(SPBlockReference(16), std=0.3, bn=TRAINED_BN)
    dep = SPBlock(16).eval()
    dep.load_state_dict(ref.state_dict(), strict=True)
    n, h, w = shape
    x = torch.randn(n, 16, h, w)
    with torch.no_grad():
        torch.testing.assert_close(dep(x), ref(x), atol=1e-5, rtol=1e-5)


def test_sp_block_checkpoint_infers_channels_and_refuses_other_widths():
    theirs = randomize(SPNetSPBlock(40, 40, nn.BatchNorm2d), std=0.3, bn=TRAINED_BN)
    assert load_pretrained("sp_block", theirs.state_dict()).init_args["channels"] == 40
    narrow = SPNetSPBlock(40, 20, nn.BatchNorm2d).state_dict()
    with pytest.raises(CheckpointError, match="inplanes == outplanes"):
        load_pretrained("sp_block", narrow)


def test_sp_block_exports_opset13_dynamic_hw_without_pools_or_expand(tmp_path):
    dep = randomize(SPBlock(16), std=0.3, bn=TRAINED_BN)
    export_and_compare(dep, tmp_path, (1, 16, 8, 8), [(3, 16, 9, 13), (1, 16, 17, 5)], opset=13,
                       forbidden=block_info("sp_block").forbidden_ops)
