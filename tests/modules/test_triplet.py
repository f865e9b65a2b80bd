"""Triplet attention: parity, the official root and MODELS layouts, inference of kwargs, export."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attn_export.errors import BlockConfigError, CheckpointError
from attn_export.modules.checkpoints import convert_state_dict, load_pretrained
from attn_export.modules.registry import block_info
from attn_export.modules.triplet import TripletAttention, TripletAttentionReference
from tests.conftest import exhaustive
from tests.onnx_checks import export_and_compare
from tests.weights import assert_matches_float64, randomize_norms_and_biases

SHAPES = [(3, 13, 5), (1, 7, 9), (3, 8, 8)]


# --- landskape-ai/triplet-attention, written from its published definitions: the root
# triplet_attention.py (cw/hc/hw, .conv) and MODELS/triplet_attention.py (ChannelGateH/W,
# SpatialGate, .spatial), which compute the same thing under different names.
class _BasicConv(nn.Module):
    def __init__(self, in_planes, out_planes, kernel_size, padding=0, relu=True, bn=True):
        super().__init__()
        self.conv = nn.Conv2d(in_planes, out_planes, kernel_size, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_planes, eps=1e-5, momentum=0.01, affine=True) if bn else None
        self.relu = nn.ReLU() if relu else None

    def forward(self, x):
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        if self.relu is not None:
            x = self.relu(x)
        return x


def _zpool(x):
    return torch.cat((torch.max(x, 1)[0].unsqueeze(1), torch.mean(x, 1).unsqueeze(1)), dim=1)


class OfficialAttentionGate(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = _BasicConv(2, 1, 7, padding=3, relu=False)

    def forward(self, x):
        return x * torch.sigmoid_(self.conv(_zpool(x)))


class OfficialTripletAttention(nn.Module):
    def __init__(self, no_spatial=False):
        super().__init__()
        self.cw = OfficialAttentionGate()
        self.hc = OfficialAttentionGate()
        self.no_spatial = no_spatial
        if not no_spatial:
            self.hw = OfficialAttentionGate()

    def forward(self, x):
        x_out11 = self.cw(x.permute(0, 2, 1, 3).contiguous()).permute(0, 2, 1, 3).contiguous()
        x_out21 = self.hc(x.permute(0, 3, 2, 1).contiguous()).permute(0, 3, 2, 1).contiguous()
        if not self.no_spatial:
            return 1 / 3 * (self.hw(x) + x_out11 + x_out21)
        return 1 / 2 * (x_out11 + x_out21)


class ModelsSpatialGate(nn.Module):
    def __init__(self):
        super().__init__()
        self.spatial = _BasicConv(2, 1, 7, padding=3, relu=False)

    def forward(self, x):
        return x * torch.sigmoid_(self.spatial(_zpool(x)))


class ModelsTripletAttention(nn.Module):
    def __init__(self, gate_channels, reduction_ratio=16, pool_types=("avg", "max"),
                 no_spatial=False):
        super().__init__()
        self.ChannelGateH = ModelsSpatialGate()
        self.ChannelGateW = ModelsSpatialGate()
        self.no_spatial = no_spatial
        if not no_spatial:
            self.SpatialGate = ModelsSpatialGate()

    def forward(self, x):
        x_out11 = self.ChannelGateH(x.permute(0, 2, 1, 3).contiguous()).permute(0, 2, 1, 3)
        x_out21 = self.ChannelGateW(x.permute(0, 3, 2, 1).contiguous()).permute(0, 3, 2, 1)
        if not self.no_spatial:
            return (1 / 3) * (self.SpatialGate(x) + x_out11 + x_out21)
        return (1 / 2) * (x_out11 + x_out21)


@pytest.mark.parametrize("kwargs", [{}, {"no_spatial": True}, {"kernel_size": 3}],
                         ids=["default", "no_spatial", "k3"])
@pytest.mark.parametrize("channels", exhaustive([16, 48]))
@pytest.mark.parametrize("shape", exhaustive(SHAPES), ids=lambda s: "x".join(map(str, s)))
def test_deploy_equals_reference(channels, shape, kwargs):
    ref = randomize_norms_and_biases(TripletAttentionReference(channels, **kwargs)).eval()
    dep = TripletAttention(channels, **kwargs).eval()
    dep.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(shape[0], channels, *shape[1:])
    torch.testing.assert_close(dep(x), ref(x), atol=1e-5, rtol=1e-5)


def test_deploy_equals_reference_in_training_mode():
    # The transposed hc plane holds the same elements, so BN batch statistics agree too.
    ref = randomize_norms_and_biases(TripletAttentionReference(16)).train()
    dep = TripletAttention(16).train()
    dep.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(3, 16, 9, 11)
    torch.testing.assert_close(dep(x), ref(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(dep.state_dict(), ref.state_dict(), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("no_spatial", [False, True])
def test_official_state_dict_loads_strictly_and_matches(no_spatial):
    official = randomize_norms_and_biases(OfficialTripletAttention(no_spatial), seed=2).eval()
    x = torch.randn(2, 24, 11, 7)
    expected = official(x)
    for cls in (TripletAttentionReference, TripletAttention):
        ours = cls(24, no_spatial=no_spatial).eval()
        ours.load_state_dict(official.state_dict(), strict=True)
        torch.testing.assert_close(ours(x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("no_spatial", [False, True])
def test_models_layout_converts(no_spatial):
    foreign = randomize_norms_and_biases(ModelsTripletAttention(24, 16, no_spatial=no_spatial), seed=3).eval()
    block = load_pretrained("triplet", foreign.state_dict(), source="models", channels=24)
    assert block.init_args == {"channels": 24, "kernel_size": 7, "no_spatial": no_spatial}
    x = torch.randn(3, 24, 6, 10)
    torch.testing.assert_close(block(x), foreign(x), atol=1e-5, rtol=1e-5)


def test_models_converter_rejects_other_layouts():
    with pytest.raises(CheckpointError):
        convert_state_dict("triplet", TripletAttentionReference(8).state_dict(), source="models")


def test_hyperparams_inferred_from_checkpoint():
    ref = TripletAttentionReference(8, kernel_size=5, no_spatial=True)
    block = load_pretrained("triplet", ref.state_dict(), variant="reference", channels=8)
    assert block.init_args == {"channels": 8, "kernel_size": 5, "no_spatial": True}


@pytest.mark.parametrize("kwargs", [
    {"channels": 0},
    {"channels": 16, "kernel_size": 6},
    {"channels": 16, "kernel_size": 0},
    {"channels": 16, "kernel_size": 7.0},
], ids=["channels0", "even", "zero", "float"])
@pytest.mark.parametrize("cls", [TripletAttentionReference, TripletAttention],
                         ids=["reference", "deploy"])
def test_bad_args_raise(cls, kwargs):
    with pytest.raises(BlockConfigError):
        cls(**kwargs)


@pytest.mark.parametrize("fill", [0.0, 3.0, -2.0], ids=["zero", "const3", "const-2"])
def test_nan_free_on_flat_maps(fill):
    block = randomize_norms_and_biases(TripletAttention(16)).eval()
    assert_matches_float64(block, torch.full((2, 16, 7, 9), fill))


@pytest.mark.parametrize("exporter,opset",
                         exhaustive([("torchscript", 17), ("dynamo", 18)], unpack=True))
def test_onnx_dynamic_hw_matches_torch_at_other_sizes(tmp_path, exporter, opset):
    block = randomize_norms_and_biases(TripletAttention(16)).eval()
    # The hc kernel's transpose is a constant the exporter folds: no Transpose node remains.
    export_and_compare(block, tmp_path, (2, 16, 16, 16), [(3, 16, 9, 13), (1, 16, 24, 20)],
                       exporter=exporter, opset=opset, filename="triplet.onnx",
                       forbidden=block_info("triplet").forbidden_ops)
