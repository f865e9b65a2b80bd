"""scSE: reference == seed (smp), deploy == reference for both fusions, ai-med layout, inference."""

import pytest
import torch
from torch import nn

from attn_export.errors import BlockConfigError
from attn_export.modules.checkpoints import guess_source, load_pretrained
from attn_export.modules.registry import block_info
from attn_export.modules.scse import SCSE, SCSEReference
from tests.onnx_checks import export_and_compare
from tests.seed_listings import SCSEModule
from tests.weights import assert_matches_float64, randomize

SHAPES = [(1, 7, 9), (3, 13, 5), (3, 16, 16), (1, 1, 1)]
FUSIONS = ["add", "max"]


class AiMedChannelSE(nn.Module):
    """ai-med/squeeze_and_excitation ``ChannelSELayer``: Linear layers over the spatial mean."""

    def __init__(self, num_channels, reduction_ratio=2):
        super().__init__()
        self.fc1 = nn.Linear(num_channels, num_channels // reduction_ratio, bias=True)
        self.fc2 = nn.Linear(num_channels // reduction_ratio, num_channels, bias=True)

    def forward(self, x):
        b, c = x.shape[:2]
        squeeze = x.view(b, c, -1).mean(dim=2)
        excite = torch.sigmoid(self.fc2(torch.relu(self.fc1(squeeze))))
        return x * excite.view(b, c, 1, 1)


class AiMedSpatialSE(nn.Module):
    """ai-med ``SpatialSELayer`` (without its optional external ``weights``)."""

    def __init__(self, num_channels):
        super().__init__()
        self.conv = nn.Conv2d(num_channels, 1, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.conv(x))


class AiMedChannelSpatialSE(nn.Module):
    """ai-med ``ChannelSpatialSELayer``: the authors fuse the two branches with a maximum."""

    def __init__(self, num_channels, reduction_ratio=2):
        super().__init__()
        self.cSE = AiMedChannelSE(num_channels, reduction_ratio)
        self.sSE = AiMedSpatialSE(num_channels)

    def forward(self, x):
        return torch.max(self.cSE(x), self.sSE(x))


@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("channels,reduction", [(16, 4), (64, 16)], ids=["c16r4", "c64r16"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_deploy_equals_reference(fusion, channels, reduction, shape):
    ref = randomize(SCSEReference(channels, reduction, fusion))
    dep = SCSE(channels, reduction, fusion).eval()
    dep.load_state_dict(ref.state_dict(), strict=True)
    n, h, w = shape
    x = torch.randn(n, channels, h, w)
    with torch.no_grad():
        torch.testing.assert_close(dep(x), ref(x), atol=1e-5, rtol=1e-5)


def test_seed_state_dict_loads_strictly_and_matches():
    seed = randomize(SCSEModule(32, 8))
    ref = SCSEReference(32, 8).eval()
    ref.load_state_dict(seed.state_dict(), strict=True)
    assert {k.rsplit(".", 1)[0] for k in ref.state_dict()} == {"cSE.1", "cSE.3", "sSE.0"}
    x = torch.randn(2, 32, 11, 7)
    with torch.no_grad():
        torch.testing.assert_close(ref(x), seed(x), atol=0, rtol=0)


def test_ai_med_layout_converts_and_matches_with_max_fusion():
    theirs = randomize(AiMedChannelSpatialSE(24), seed=1)  # the authors' reduction_ratio=2
    assert guess_source("scse", theirs.state_dict()) == "ai_med"
    block = load_pretrained("scse", theirs.state_dict(), source="ai_med", fusion="max")
    assert block.init_args == {"channels": 24, "reduction": 2, "fusion": "max"}
    x = torch.randn(3, 24, 9, 13)
    with torch.no_grad():
        torch.testing.assert_close(block(x), theirs(x), atol=1e-5, rtol=1e-5)


def test_max_fusion_differs_from_add():
    ref = randomize(SCSEReference(16, 4, "add"))
    other = SCSEReference(16, 4, "max").eval()
    other.load_state_dict(ref.state_dict())
    x = torch.randn(2, 16, 5, 5)
    with torch.no_grad():
        assert not torch.allclose(ref(x), other(x))
        cse, sse = x * ref.cSE(x), x * ref.sSE(x)
        torch.testing.assert_close(other(x), torch.maximum(cse, sse))


@pytest.mark.parametrize("channels,reduction", [(64, 16), (48, 5), (16, 2)])
def test_hyperparams_inferred_from_weights(channels, reduction):
    sd = SCSEModule(channels, reduction).state_dict()
    block = load_pretrained("scse", sd, variant="reference")
    assert block.init_args["channels"] == channels
    assert block.cSE[1].out_channels == channels // reduction


def test_max_fusion_exports_with_dynamic_hw(tmp_path):
    # The registry matrix exports the default (add) fusion with both exporters; the max branch
    # adds one elementwise Max and is checked here with the default exporter.
    dep = randomize(SCSE(16, 4, "max"))
    ops = export_and_compare(dep, tmp_path, (2, 16, 16, 16), [(3, 16, 9, 13), (1, 16, 24, 20)],
                             exporter="torchscript", opset=17, filename="scse.onnx",
                             forbidden=block_info("scse").forbidden_ops)
    assert "Max" in ops


@pytest.mark.parametrize("cls", [SCSEReference, SCSE])
def test_bad_args_raise(cls):
    with pytest.raises(BlockConfigError, match="fusion must be one of add, max"):
        cls(16, fusion="mul")
    with pytest.raises(BlockConfigError, match="bottleneck of 0 channels"):
        cls(8, reduction=16)


@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("fill", [0.0, 3.0, -2.5], ids=["zero", "const+", "const-"])
def test_finite_on_zero_and_constant_maps(fusion, fill):
    dep = randomize(SCSE(16, 4, fusion))
    x = torch.full((2, 16, 5, 7), fill)
    y = assert_matches_float64(dep, x)
    if fill == 0.0:
        assert not y.any()
