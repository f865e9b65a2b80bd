"""SE: deploy == reference (with and without biases), the seed loads strictly, and timm and Cadene
checkpoints (1x1 convs with biases, timm's rounded widths and optional BatchNorm) load exactly."""

import pytest
import torch
from torch import nn

from attn_export.errors import BlockConfigError, CheckpointError
from attn_export.modules.checkpoints import (
    convert_state_dict,
    guess_source,
    infer_hyperparams,
    load_pretrained,
)
from attn_export.modules.factory import create_block
from attn_export.modules.squeeze_excitation import SE, SEReference
from attn_export.modules.swap import to_deploy
from tests.seed_listings import SEAttention as SeedSEAttention
from tests.weights import randomize

SHAPES = [(1, 7, 9), (3, 13, 5), (3, 16, 16), (1, 1, 1)]


def make_divisible(v, divisor=8, min_value=None, round_limit=0.9):
    """timm ``layers/helpers.py`` make_divisible."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < round_limit * v:
        new_v += divisor
    return new_v


class TimmSEModule(nn.Module):
    """timm ``layers/squeeze_excite.py`` SEModule (add_maxpool off, ReLU, sigmoid gate)."""

    def __init__(self, channels, rd_ratio=1.0 / 16, rd_channels=None, rd_divisor=8, bias=True,
                 norm_layer=None):
        super().__init__()
        if not rd_channels:
            rd_channels = make_divisible(channels * rd_ratio, rd_divisor, round_limit=0.0)
        self.fc1 = nn.Conv2d(channels, rd_channels, kernel_size=1, bias=bias)
        self.bn = norm_layer(rd_channels) if norm_layer else nn.Identity()
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(rd_channels, channels, kernel_size=1, bias=bias)
        self.gate = nn.Sigmoid()

    def forward(self, x):
        x_se = x.mean((2, 3), keepdim=True)
        x_se = self.fc1(x_se)
        x_se = self.act(self.bn(x_se))
        x_se = self.fc2(x_se)
        return x * self.gate(x_se)


class CadeneSEModule(nn.Module):
    """Cadene pretrained-models ``senet.py`` SEModule."""

    def __init__(self, channels, reduction):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels // reduction, kernel_size=1, padding=0)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(channels // reduction, channels, kernel_size=1, padding=0)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        module_input = x
        x = self.avg_pool(x)
        x = self.fc1(x)
        x = self.relu(x)
        x = self.fc2(x)
        x = self.sigmoid(x)
        return module_input * x


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_deploy_equals_reference(bias, shape):
    ref = randomize(SEReference(32, reduction=4, bias=bias), seed=3)
    dep = to_deploy(ref).eval()
    assert isinstance(dep, SE)
    x = torch.randn(shape[0], 32, *shape[1:])
    with torch.no_grad():
        torch.testing.assert_close(dep(x), ref(x), atol=1e-5, rtol=1e-5)


def test_seed_state_dict_loads_strictly_and_matches():
    seed = randomize(SeedSEAttention(64, reduction=16), seed=3)
    ref = SEReference(64).eval()
    ref.load_state_dict(seed.state_dict(), strict=True)
    x = torch.randn(2, 64, 7, 9)
    with torch.no_grad():
        torch.testing.assert_close(ref(x), seed(x), atol=0, rtol=0)


TIMM_CASES = {
    "default": dict(channels=64),  # hidden 8 -> reduction 8
    "rounded": dict(channels=40),  # 40/16 = 2.5 rounds up to the divisor 8 -> reduction 5
    "wider-than-input": dict(channels=4),  # hidden 8 > 4 channels -> reduction 0.47
    "no-bias": dict(channels=32, bias=False),
    "batchnorm": dict(channels=48, bias=False, norm_layer=nn.BatchNorm2d),
}


@pytest.mark.parametrize("case", TIMM_CASES, ids=str)
def test_timm_se_module_converts_exactly(case):
    timm = randomize(TimmSEModule(**TIMM_CASES[case]), seed=3)
    block = load_pretrained("se", timm.state_dict(), source="timm")
    hidden = timm.fc1.out_channels
    assert block.fc[0].out_features == hidden
    assert block.init_args["bias"] is (case != "no-bias")
    x = torch.randn(2, timm.fc1.in_channels, 9, 7)
    with torch.no_grad():
        torch.testing.assert_close(block(x), timm(x), atol=1e-5, rtol=1e-5)


def test_cadene_se_module_converts_exactly():
    cadene = randomize(CadeneSEModule(64, reduction=16), seed=3)
    block = load_pretrained("se", cadene.state_dict(), source="cadene")
    assert block.init_args == {"channels": 64, "reduction": 16, "bias": True}
    x = torch.randn(3, 64, 5, 11)
    with torch.no_grad():
        torch.testing.assert_close(block(x), cadene(x), atol=1e-5, rtol=1e-5)


def test_hyperparams_and_source_guess():
    sd = SEReference(96, reduction=12, bias=True).state_dict()
    assert infer_hyperparams("se", sd) == {"channels": 96, "reduction": 12, "bias": True}
    timm_sd = TimmSEModule(64).state_dict()
    assert guess_source("se", timm_sd) in ("timm", "cadene")
    with pytest.raises(CheckpointError, match="looks like the '(cadene|timm)' layout"):
        load_pretrained("se", timm_sd)


def test_a_reference_layout_is_not_mistaken_for_timm():
    with pytest.raises(CheckpointError, match="does not look like the 'timm' layout"):
        convert_state_dict("se", SEReference(32).state_dict(), "timm")


def test_bad_args_raise():
    with pytest.raises(BlockConfigError, match="bottleneck of 0 channels"):
        create_block("se", 32, reduction=64)


@pytest.mark.parametrize("fill", [0.0, 3.0])
def test_finite_on_zero_and_constant_maps(fill):
    ref = randomize(SEReference(32, reduction=4, bias=True), seed=3)
    dep = to_deploy(ref).eval()
    x = torch.full((2, 32, 7, 9), fill)
    with torch.no_grad():
        assert torch.isfinite(dep(x)).all()
        torch.testing.assert_close(dep(x), ref(x), atol=1e-6, rtol=1e-6)
