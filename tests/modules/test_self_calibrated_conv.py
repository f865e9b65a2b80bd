"""SCConv: reference == seed SCConv, deploy == reference, shape-changing arguments refused."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attn_export.errors import BlockConfigError, ShapeModeError
from attn_export.modules.checkpoints import load_pretrained
from attn_export.modules.self_calibrated_conv import SCConv, SCConvReference
from tests.onnx_checks import export_and_compare
from tests.weights import randomize

TRAINED_BN = {"weight": (0.7, 1.3), "running_mean": 0.2}


class SeedSCConv(nn.Module):
    """Test-only transcription of the seed ``channel-spatial-attention.md`` SCConv (MCG-NKU/SCNet)."""

    def __init__(self, inplanes, planes, stride, padding, dilation, groups, pooling_r, norm_layer):
        super().__init__()

        def conv(s):
            return nn.Conv2d(inplanes, planes, kernel_size=3, stride=s, padding=padding,
                             dilation=dilation, groups=groups, bias=False)

        self.k2 = nn.Sequential(nn.AvgPool2d(kernel_size=pooling_r, stride=pooling_r), conv(1),
                                norm_layer(planes))
        self.k3 = nn.Sequential(conv(1), norm_layer(planes))
        self.k4 = nn.Sequential(conv(stride), norm_layer(planes))

    def forward(self, x):
        identity = x
        out = torch.sigmoid(torch.add(identity, F.interpolate(self.k2(x), identity.size()[2:])))
        out = torch.mul(self.k3(x), out)
        return self.k4(out)


def test_seed_state_dict_loads_strictly_and_matches():
    seed = randomize(SeedSCConv(16, 16, 1, 2, 2, 4, 4, nn.BatchNorm2d), std=0.3, bn=TRAINED_BN)
    ref = SCConvReference(16, padding=2, dilation=2, groups=4).eval()
    ref.load_state_dict(seed.state_dict(), strict=True)
    x = torch.randn(2, 16, 11, 13)
    with torch.no_grad():
        torch.testing.assert_close(ref(x), seed(x), atol=0, rtol=0)


@pytest.mark.parametrize("shape", [(1, 7, 9), (3, 13, 5), (3, 16, 16), (1, 4, 4)],
                         ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("pooling_r", [4, 3])
def test_deploy_equals_reference(shape, pooling_r):
    ref = randomize(SCConvReference(16, pooling_r=pooling_r), std=0.3, bn=TRAINED_BN)
    dep = SCConv(**ref.init_args).eval()
    dep.load_state_dict(ref.state_dict(), strict=True)
    n, h, w = shape
    x = torch.randn(n, 16, h, w)
    with torch.no_grad():
        torch.testing.assert_close(dep(x), ref(x), atol=1e-5, rtol=1e-5)


def test_checkpoint_infers_channels_and_groups():
    seed = randomize(SeedSCConv(24, 24, 1, 1, 1, 3, 4, nn.BatchNorm2d), std=0.3, bn=TRAINED_BN)
    block = load_pretrained("scconv", seed.state_dict())
    assert block.init_args["channels"] == 24 and block.init_args["groups"] == 3


@pytest.mark.parametrize("kwargs,match", [
    ({"stride": 2}, "stride must be 1"), ({"padding": 2}, "pass padding=1"),
    ({"groups": 5}, "not divisible by groups=5"), ({"pooling_r": 0}, "pooling_r must be"),
], ids=["stride", "padding", "groups", "pooling_r"])
def test_shape_changing_or_bad_args_are_refused(kwargs, match):
    with pytest.raises(BlockConfigError, match=match):
        SCConv(16, **kwargs)


def test_map_smaller_than_the_pool_is_refused_in_one_line():
    with pytest.raises(ShapeModeError, match="smaller than pooling_r=4"):
        SCConv(16).eval()(torch.randn(1, 16, 3, 9))


def test_export_opset13_dynamic_hw(tmp_path):
    dep = randomize(SCConv(16), std=0.3, bn=TRAINED_BN)
    ops = export_and_compare(dep, tmp_path, (1, 16, 16, 16), [(3, 16, 9, 13), (1, 16, 21, 6)],
                             opset=13)
    assert "Resize" in ops and "AveragePool" in ops
