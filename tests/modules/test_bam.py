"""BAM: reference vs deploy parity, the official layout, inference of kwargs, export."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attn_export.errors import BlockConfigError
from attn_export.modules.bam import BAM, BAMReference
from attn_export.modules.checkpoints import load_pretrained
from attn_export.modules.registry import block_info
from tests.conftest import exhaustive
from tests.onnx_checks import export_and_compare
from tests.weights import assert_matches_float64, randomize_norms_and_biases

SHAPES = [(1, 7, 9), (3, 13, 5), (3, 8, 8)]


# --- The official Jongchan/attention-module MODELS/bam.py, written from its published definition.
# Only change: its ChannelGate.__init__ line `self.gate_activation = gate_activation` (an undefined
# name, NameError at construction) is left out.
class _Flatten(nn.Module):
    def forward(self, x):
        return x.view(x.size(0), -1)


class OfficialChannelGate(nn.Module):
    def __init__(self, gate_channel, reduction_ratio=16, num_layers=1):
        super().__init__()
        self.gate_c = nn.Sequential()
        self.gate_c.add_module("flatten", _Flatten())
        widths = [gate_channel] + [gate_channel // reduction_ratio] * num_layers + [gate_channel]
        for i in range(len(widths) - 2):
            self.gate_c.add_module(f"gate_c_fc_{i}", nn.Linear(widths[i], widths[i + 1]))
            self.gate_c.add_module(f"gate_c_bn_{i + 1}", nn.BatchNorm1d(widths[i + 1]))
            self.gate_c.add_module(f"gate_c_relu_{i + 1}", nn.ReLU())
        self.gate_c.add_module("gate_c_fc_final", nn.Linear(widths[-2], widths[-1]))

    def forward(self, in_tensor):
        avg_pool = F.avg_pool2d(in_tensor, in_tensor.size(2), stride=in_tensor.size(2))
        return self.gate_c(avg_pool).unsqueeze(2).unsqueeze(3).expand_as(in_tensor)


class OfficialSpatialGate(nn.Module):
    def __init__(self, gate_channel, reduction_ratio=16, dilation_conv_num=2, dilation_val=4):
        super().__init__()
        hidden = gate_channel // reduction_ratio
        self.gate_s = nn.Sequential()
        self.gate_s.add_module("gate_s_conv_reduce0", nn.Conv2d(gate_channel, hidden, 1))
        self.gate_s.add_module("gate_s_bn_reduce0", nn.BatchNorm2d(hidden))
        self.gate_s.add_module("gate_s_relu_reduce0", nn.ReLU())
        for i in range(dilation_conv_num):
            self.gate_s.add_module(f"gate_s_conv_di_{i}", nn.Conv2d(
                hidden, hidden, kernel_size=3, padding=dilation_val, dilation=dilation_val))
            self.gate_s.add_module(f"gate_s_bn_di_{i}", nn.BatchNorm2d(hidden))
            self.gate_s.add_module(f"gate_s_relu_di_{i}", nn.ReLU())
        self.gate_s.add_module("gate_s_conv_final", nn.Conv2d(hidden, 1, kernel_size=1))

    def forward(self, in_tensor):
        return self.gate_s(in_tensor).expand_as(in_tensor)


class OfficialBAM(nn.Module):
    def __init__(self, gate_channel):
        super().__init__()
        self.channel_att = OfficialChannelGate(gate_channel)
        self.spatial_att = OfficialSpatialGate(gate_channel)

    def forward(self, in_tensor):
        att = 1 + torch.sigmoid(self.channel_att(in_tensor) * self.spatial_att(in_tensor))
        return att * in_tensor


@pytest.mark.parametrize("channels", [32, 64])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_deploy_equals_reference(channels, shape):
    ref = randomize_norms_and_biases(BAMReference(channels)).eval()
    dep = BAM(channels).eval()
    dep.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(shape[0], channels, *shape[1:])
    torch.testing.assert_close(dep(x), ref(x), atol=1e-5, rtol=1e-5)


def test_deploy_equals_reference_in_training_mode():
    ref = randomize_norms_and_biases(BAMReference(32, reduction=8, dilation=2, num_dilated=1)).train()
    dep = BAM(32, reduction=8, dilation=2, num_dilated=1).train()
    dep.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(3, 32, 9, 11)
    torch.testing.assert_close(dep(x), ref(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(dep.state_dict(), ref.state_dict())  # same running stats updates


@pytest.mark.parametrize("hw", [8, 13], ids=["8x8", "13x13"])
def test_official_state_dict_loads_strictly_and_matches(hw):
    official = randomize_norms_and_biases(OfficialBAM(64), seed=1).eval()
    ours = BAMReference(64).eval()
    ours.load_state_dict(official.state_dict(), strict=True)
    x = torch.randn(2, 64, hw, hw)
    torch.testing.assert_close(ours(x), official(x), atol=1e-6, rtol=1e-6)
    deploy = BAM(64).eval()
    deploy.load_state_dict(official.state_dict(), strict=True)
    torch.testing.assert_close(deploy(x), official(x), atol=1e-5, rtol=1e-5)


def test_official_assumes_square_maps_and_ours_does_not():
    official = OfficialBAM(32).eval()
    ours = BAMReference(32).eval()
    ours.load_state_dict(official.state_dict(), strict=True)
    x = torch.randn(2, 32, 5, 13)  # W >= 2H: the H x H window leaves 2 columns for the Linear
    with pytest.raises(RuntimeError):
        official(x)
    y = ours(x)
    assert y.shape == x.shape
    # 8 x 12: the official code averages only the left 8 x 8 window.
    x = torch.randn(1, 32, 8, 12)
    pooled = ours.channel_att.gate_c(x.mean((2, 3), keepdim=True))
    torch.testing.assert_close(ours.channel_att(x)[:, :, 0, 0], pooled)
    assert not torch.allclose(official.channel_att(x)[:, :, 0, 0], pooled)


def test_hyperparams_inferred_from_checkpoint():
    ref = randomize_norms_and_biases(BAMReference(48, reduction=8, num_dilated=3)).eval()
    block = load_pretrained("bam", ref.state_dict(), variant="deploy")
    assert block.init_args == {"channels": 48, "reduction": 8, "dilation": 4, "num_dilated": 3}
    x = torch.randn(2, 48, 9, 7)
    torch.testing.assert_close(block(x), ref(x), atol=1e-5, rtol=1e-5)


def test_hyperparams_prefer_paper_reduction():
    # 64 // 13 == 64 // 16 == 4: the inferred reduction is the paper's 16, not the first fit.
    block = load_pretrained("bam", BAMReference(64).state_dict(), variant="reference")
    assert block.init_args["reduction"] == 16


@pytest.mark.parametrize("kwargs", [
    {"channels": 8},  # 8 // 16 == 0: empty bottleneck
    {"channels": 64, "reduction": 128},
    {"channels": 64, "dilation": 0},
    {"channels": 64, "dilation": 2.5},
    {"channels": 64, "num_dilated": -1},
], ids=["narrow", "reduction", "dilation0", "dilation_float", "num_dilated"])
@pytest.mark.parametrize("cls", [BAMReference, BAM], ids=["reference", "deploy"])
def test_bad_args_raise(cls, kwargs):
    with pytest.raises(BlockConfigError):
        cls(**kwargs)


@pytest.mark.parametrize("fill", [0.0, 3.0, -2.0], ids=["zero", "const3", "const-2"])
def test_nan_free_on_flat_maps(fill):
    block = randomize_norms_and_biases(BAM(32)).eval()
    assert_matches_float64(block, torch.full((2, 32, 7, 9), fill))


@pytest.mark.parametrize("exporter,opset",
                         exhaustive([("torchscript", 17), ("dynamo", 18)], unpack=True))
def test_onnx_dynamic_hw_matches_torch_at_other_sizes(tmp_path, exporter, opset):
    block = randomize_norms_and_biases(BAM(32)).eval()
    export_and_compare(block, tmp_path, (2, 32, 16, 16), [(3, 32, 9, 13), (1, 32, 24, 20)],
                       exporter=exporter, opset=opset, filename="bam.onnx",
                       forbidden=block_info("bam").forbidden_ops)
