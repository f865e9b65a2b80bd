"""LKA and the VAN attention unit: reference == seed/official, deploy == reference, and the
mmpretrain and Hugging Face layouts load."""

from collections import OrderedDict

import pytest
import torch
from torch import nn

from attn_export.errors import BlockConfigError
from attn_export.modules.checkpoints import guess_source, load_pretrained
from attn_export.modules.swap import to_deploy
from attn_export.modules.van import LKA, LKAReference, VANAttention, VANAttentionReference
from tests.onnx_checks import export_and_compare
from tests.seed_listings import LKA as SeedLKA
from tests.weights import assert_matches_float64, randomize

SHAPES = [(1, 7, 9), (3, 13, 5), (3, 16, 16), (1, 1, 1)]
PAIRS = {"lka": (LKAReference, LKA), "van": (VANAttentionReference, VANAttention)}


class SeedAttention(nn.Module):
    """The seed's ``Attention`` with the official ``return x`` (the seed returns nothing)."""

    def __init__(self, d_model):
        super().__init__()
        self.proj_1 = nn.Conv2d(d_model, d_model, 1)
        self.activation = nn.GELU()
        self.spatial_gating_unit = SeedLKA(d_model)
        self.proj_2 = nn.Conv2d(d_model, d_model, 1)

    def forward(self, x):
        shorcut = x.clone()
        x = self.proj_1(x)
        x = self.activation(x)
        x = self.spatial_gating_unit(x)
        x = self.proj_2(x)
        x = x + shorcut
        return x


class MMPretrainLKA(nn.Module):
    """mmpretrain ``models/backbones/van.py`` LKA: the same convs as ``DW_conv``/``DW_D_conv``."""

    def __init__(self, embed_dims):
        super().__init__()
        self.DW_conv = nn.Conv2d(embed_dims, embed_dims, 5, padding=2, groups=embed_dims)
        self.DW_D_conv = nn.Conv2d(embed_dims, embed_dims, 7, stride=1, padding=9,
                                   groups=embed_dims, dilation=3)
        self.conv1 = nn.Conv2d(embed_dims, embed_dims, 1)

    def forward(self, x):
        return x * self.conv1(self.DW_D_conv(self.DW_conv(x)))


class MMPretrainSpatialAttention(nn.Module):
    """mmpretrain ``SpatialAttention`` (GELU from ``act_cfg=dict(type='GELU')``)."""

    def __init__(self, embed_dims):
        super().__init__()
        self.proj_1 = nn.Conv2d(embed_dims, embed_dims, 1)
        self.activation = nn.GELU()
        self.spatial_gating_unit = MMPretrainLKA(embed_dims)
        self.proj_2 = nn.Conv2d(embed_dims, embed_dims, 1)

    def forward(self, x):
        return self.proj_2(self.spatial_gating_unit(self.activation(self.proj_1(x)))) + x


class HFLargeKernelAttention(nn.Sequential):
    """transformers ``VanLargeKernelAttention``: the three convs in a named Sequential."""

    def __init__(self, hidden_size):
        super().__init__()
        self.depth_wise = nn.Conv2d(hidden_size, hidden_size, kernel_size=5, padding=2,
                                    groups=hidden_size)
        self.depth_wise_dilated = nn.Conv2d(hidden_size, hidden_size, kernel_size=7, dilation=3,
                                            padding=9, groups=hidden_size)
        self.point_wise = nn.Conv2d(hidden_size, hidden_size, kernel_size=1)


class HFLargeKernelAttentionLayer(nn.Module):
    """transformers ``VanLargeKernelAttentionLayer``: the block ``lka`` maps onto."""

    def __init__(self, hidden_size):
        super().__init__()
        self.attention = HFLargeKernelAttention(hidden_size)

    def forward(self, x):
        return x * self.attention(x)


class HFSpatialAttentionLayer(nn.Module):
    """transformers ``VanSpatialAttentionLayer`` with ``hidden_act="gelu"`` (exact GELU)."""

    def __init__(self, hidden_size):
        super().__init__()
        self.pre_projection = nn.Sequential(OrderedDict([
            ("conv", nn.Conv2d(hidden_size, hidden_size, kernel_size=1)), ("act", nn.GELU())]))
        self.attention_layer = HFLargeKernelAttentionLayer(hidden_size)
        self.post_projection = nn.Conv2d(hidden_size, hidden_size, kernel_size=1)

    def forward(self, x):
        return self.post_projection(self.attention_layer(self.pre_projection(x))) + x


FOREIGN = {
    ("lka", "mmpretrain"): MMPretrainLKA,
    ("lka", "hf"): HFLargeKernelAttentionLayer,
    ("van", "mmpretrain"): MMPretrainSpatialAttention,
    ("van", "hf"): HFSpatialAttentionLayer,
}
SEEDS = {"lka": SeedLKA, "van": SeedAttention}


@pytest.mark.parametrize("name", ["lka", "van"])
@pytest.mark.parametrize("channels", [8, 32])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_deploy_equals_reference(name, channels, shape):
    ref_cls, dep_cls = PAIRS[name]
    ref = randomize(ref_cls(channels), std=0.2)
    dep = dep_cls(channels).eval()
    dep.load_state_dict(ref.state_dict(), strict=True)
    n, h, w = shape
    x = torch.randn(n, channels, h, w)
    with torch.no_grad():
        torch.testing.assert_close(dep(x), ref(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["lka", "van"])
def test_seed_state_dict_loads_strictly_and_matches(name):
    seed = randomize(SEEDS[name](16), std=0.2)
    ref = PAIRS[name][0](16).eval()
    ref.load_state_dict(seed.state_dict(), strict=True)
    x = torch.randn(2, 16, 11, 7)
    with torch.no_grad():
        torch.testing.assert_close(ref(x), seed(x), atol=0, rtol=0)


def test_van_returns_projection_plus_shortcut():
    # The seed's bare `return` would give None; the official code returns proj_2(...) + x.
    ref = randomize(VANAttentionReference(8), std=0.2)
    x = torch.randn(1, 8, 6, 6)
    with torch.no_grad():
        y = ref(x)
        lka = ref.spatial_gating_unit
        expected = ref.proj_2(lka(nn.functional.gelu(ref.proj_1(x)))) + x
    assert isinstance(y, torch.Tensor)
    torch.testing.assert_close(y, expected)


@pytest.mark.parametrize("name,source", sorted(FOREIGN), ids=lambda v: str(v))
def test_foreign_layouts_convert_and_match(name, source):
    theirs = randomize(FOREIGN[(name, source)](24), seed=1, std=0.2)
    assert guess_source(name, theirs.state_dict()) == source
    block = load_pretrained(name, theirs.state_dict(), source=source)
    assert isinstance(block, PAIRS[name][1]) and block.init_args == {"channels": 24}
    x = torch.randn(3, 24, 9, 13)
    with torch.no_grad():
        torch.testing.assert_close(block(x), theirs(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["lka", "van"])
def test_hyperparams_inferred_from_weights(name):
    seed = randomize(SEEDS[name](40), std=0.2)
    block = load_pretrained(name, seed.state_dict(), variant="reference")
    assert type(block) is PAIRS[name][0] and block.init_args == {"channels": 40}


def test_to_deploy_swaps_the_whole_unit():
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), VANAttentionReference(16)).eval()
    x = torch.randn(2, 3, 10, 12)
    with torch.no_grad():
        expected = net(x)
        to_deploy(net)
        assert type(net[1]) is VANAttention and type(net[1].spatial_gating_unit) is LKA
        torch.testing.assert_close(net(x), expected, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("cls", [LKAReference, LKA, VANAttentionReference, VANAttention])
def test_bad_channels_raise(cls):
    with pytest.raises(BlockConfigError, match="channels must be >= 1"):
        cls(0)


@pytest.mark.parametrize("name", ["lka", "van"])
@pytest.mark.parametrize("fill", [0.0, 3.0], ids=["zero", "const"])
def test_finite_on_zero_and_constant_maps(name, fill):
    dep = randomize(PAIRS[name][1](16), std=0.2)
    x = torch.full((2, 16, 5, 7), fill)
    y = assert_matches_float64(dep, x)
    if name == "lka" and fill == 0.0:
        assert not y.any()


@pytest.mark.parametrize("name", ["lka", "van"])
def test_dilated_conv_exports_for_maps_smaller_than_its_reach(tmp_path, name):
    # conv_spatial reaches 19 pixels (7 taps, dilation 3, padding 9): maps narrower than that
    # are mostly padding; the exported graph must still give PyTorch's output there.
    dep = randomize(PAIRS[name][1](8), std=0.2)
    export_and_compare(dep, tmp_path, (2, 8, 16, 16), [(3, 8, 1, 1), (1, 8, 2, 5), (2, 8, 23, 41)],
                       exporter="torchscript", opset=11, filename=f"{name}.onnx", forbidden={"Shape"})
