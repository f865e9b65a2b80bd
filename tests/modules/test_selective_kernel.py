"""Selective kernel: parity, timm and External-Attention-pytorch layouts, kwargs inference, export."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from attn_export.errors import BlockConfigError, CheckpointError
from attn_export.modules.checkpoints import convert_state_dict, load_pretrained
from attn_export.modules.registry import block_info
from attn_export.modules.selective_kernel import (
    SelectiveKernel,
    SelectiveKernelReference,
    make_divisible,
)
from tests.conftest import exhaustive
from tests.onnx_checks import export_and_compare
from tests.weights import assert_matches_float64, randomize_norms_and_biases

SHAPES = [(1, 7, 9), (3, 13, 5), (3, 8, 8)]


# --- timm layers/selective_kernel.py (+ ConvNormAct, BatchNormAct2d), written from its published
# definition for a stride-1, in == out block. timm keeps the activation inside `bn`.
class _BatchNormAct2d(nn.BatchNorm2d):
    def __init__(self, num_features):
        super().__init__(num_features)
        self.drop = nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.act(self.drop(super().forward(x)))


class _ConvNormAct(nn.Module):
    def __init__(self, cin, cout, k, dilation, groups):
        super().__init__()
        pad = ((1 - 1) + dilation * (k - 1)) // 2
        self.conv = nn.Conv2d(cin, cout, k, padding=pad, dilation=dilation, groups=groups,
                              bias=False)
        self.bn = _BatchNormAct2d(cout)

    def forward(self, x):
        return self.bn(self.conv(x))


class _TimmSKAttn(nn.Module):
    def __init__(self, channels, num_paths, attn_channels):
        super().__init__()
        self.num_paths = num_paths
        self.fc_reduce = nn.Conv2d(channels, attn_channels, kernel_size=1, bias=False)
        self.bn = nn.BatchNorm2d(attn_channels)
        self.act = nn.ReLU(inplace=True)
        self.fc_select = nn.Conv2d(attn_channels, channels * num_paths, kernel_size=1, bias=False)

    def forward(self, x):
        x = self.act(self.bn(self.fc_reduce(x.sum(1).mean((2, 3), keepdim=True))))
        x = self.fc_select(x)
        b, c, h, w = x.shape
        return torch.softmax(x.view(b, self.num_paths, c // self.num_paths, h, w), dim=1)


class TimmSelectiveKernel(nn.Module):
    def __init__(self, in_channels, kernel_size=None, groups=1, rd_ratio=1.0 / 16,
                 rd_channels=None, rd_divisor=8, keep_3x3=True, split_input=True):
        super().__init__()
        out_channels = in_channels
        kernel_size = kernel_size or [3, 5]
        if keep_3x3:
            dilation = [(k - 1) // 2 for k in kernel_size]
            kernel_size = [3] * len(kernel_size)
        else:
            dilation = [1] * len(kernel_size)
        self.num_paths = len(kernel_size)
        self.in_channels = in_channels
        self.split_input = split_input
        if split_input:
            in_channels = in_channels // self.num_paths
        groups = min(out_channels, groups)
        self.paths = nn.ModuleList([_ConvNormAct(in_channels, out_channels, k, d, groups)
                                    for k, d in zip(kernel_size, dilation)])
        attn_channels = rd_channels or make_divisible(out_channels * rd_ratio, divisor=rd_divisor)
        self.attn = _TimmSKAttn(out_channels, self.num_paths, attn_channels)

    def forward(self, x):
        if self.split_input:
            x_split = torch.split(x, self.in_channels // self.num_paths, 1)
            x_paths = [op(x_split[i]) for i, op in enumerate(self.paths)]
        else:
            x_paths = [op(x) for op in self.paths]
        x = torch.stack(x_paths, dim=1)
        return torch.sum(x * self.attn(x), dim=1)


# --- External-Attention-pytorch model/attention/SKAttention.py, written from its published
# definition as fixed by its issue #18 (softmax over the stacked paths, dim 0).
class SKAttention(nn.Module):
    def __init__(self, channel=512, kernels=(1, 3, 5, 7), reduction=16, group=1, L=32):
        super().__init__()
        self.d = max(L, channel // reduction)
        self.convs = nn.ModuleList([nn.Sequential(OrderedDict([
            ("conv", nn.Conv2d(channel, channel, kernel_size=k, padding=k // 2, groups=group)),
            ("bn", nn.BatchNorm2d(channel)),
            ("relu", nn.ReLU()),
        ])) for k in kernels])
        self.fc = nn.Linear(channel, self.d)
        self.fcs = nn.ModuleList([nn.Linear(self.d, channel) for _ in kernels])
        self.softmax = nn.Softmax(dim=0)

    def forward(self, x):
        bs, c, _, _ = x.size()
        conv_outs = [conv(x) for conv in self.convs]
        feats = torch.stack(conv_outs, 0)
        u = sum(conv_outs)
        z = self.fc(u.mean(-1).mean(-1))
        weights = torch.stack([fc(z).view(bs, c, 1, 1) for fc in self.fcs], 0)
        return (self.softmax(weights) * feats).sum(0)


CONFIGS = {
    "default": {},
    "three_paths": {"kernel_size": [3, 5, 7]},
    "no_split_k1": {"kernel_size": (1, 3, 5), "keep_3x3": False, "split_input": False},
    "grouped": {"groups": 4, "rd_channels": 12},
}


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("channels", [24, 48])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_deploy_equals_reference(channels, shape, config):
    ref = randomize_norms_and_biases(SelectiveKernelReference(channels, **CONFIGS[config])).eval()
    dep = SelectiveKernel(channels, **CONFIGS[config]).eval()
    dep.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(shape[0], channels, *shape[1:])
    torch.testing.assert_close(dep(x), ref(x), atol=1e-5, rtol=1e-5)


def test_deploy_equals_reference_in_training_mode():
    ref = randomize_norms_and_biases(SelectiveKernelReference(32)).train()
    dep = SelectiveKernel(32).train()
    dep.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(3, 32, 9, 11)
    torch.testing.assert_close(dep(x), ref(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(dep.state_dict(), ref.state_dict(), atol=1e-6, rtol=1e-5)


def test_init_args_keep_lists_as_given():
    block = SelectiveKernel(48, kernel_size=[3, 5, 7])
    assert block.init_args["kernel_size"] == [3, 5, 7]
    assert len(block.paths) == 3


@pytest.mark.parametrize("timm_kwargs,ours", [
    ({}, {}),
    ({"kernel_size": [3, 5, 7], "rd_ratio": 0.25}, {"kernel_size": (3, 5, 7), "rd_ratio": 0.25}),
    ({"keep_3x3": False, "split_input": False, "groups": 3},  # groups != paths: unambiguous
     {"keep_3x3": False, "split_input": False, "groups": 3}),
], ids=["default", "three_paths", "unsplit_grouped"])
def test_timm_state_dict_loads_strictly_and_matches(timm_kwargs, ours):
    timm_block = randomize_norms_and_biases(TimmSelectiveKernel(48, **timm_kwargs), seed=4).eval()
    x = torch.randn(2, 48, 10, 7)
    expected = timm_block(x)
    for cls in (SelectiveKernelReference, SelectiveKernel):
        block = cls(48, **ours).eval()
        block.load_state_dict(timm_block.state_dict(), strict=True)
        torch.testing.assert_close(block(x), expected, atol=1e-5, rtol=1e-5)
    inferred = load_pretrained("sk", timm_block.state_dict())
    torch.testing.assert_close(inferred(x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("ska_kwargs", [
    {"channel": 32},
    {"channel": 32, "kernels": (3, 5, 7), "reduction": 4, "L": 4, "group": 2},
], ids=["default", "grouped"])
def test_external_attention_layout_converts(ska_kwargs):
    foreign = randomize_norms_and_biases(SKAttention(**ska_kwargs), seed=5).eval()
    for p in foreign.fc.parameters():  # bigger logits, so the softmax weights are far from uniform
        p.data.mul_(4)
    block = load_pretrained("sk", foreign.state_dict(), source="external_attention")
    assert block.init_args["keep_3x3"] is False and block.init_args["split_input"] is False
    assert block.init_args["rd_channels"] == 2 * foreign.d + 1
    x = torch.randn(3, 32, 9, 6)
    torch.testing.assert_close(block(x), foreign(x), atol=1e-5, rtol=1e-5)


def test_external_attention_ambiguous_groups_can_be_overridden():
    # group == number of paths: a path's input width C / P reads as timm's split input.
    foreign = randomize_norms_and_biases(SKAttention(32, kernels=(1, 3), group=2, L=8), seed=6).eval()
    sd = convert_state_dict("sk", foreign.state_dict(), source="external_attention")
    guessed = load_pretrained("sk", sd)
    assert guessed.init_args["split_input"] is True
    block = load_pretrained("sk", sd, split_input=False, groups=2)
    x = torch.randn(2, 32, 7, 7)
    torch.testing.assert_close(block(x), foreign(x), atol=1e-5, rtol=1e-5)


def test_external_attention_converter_rejects_other_layouts():
    with pytest.raises(CheckpointError):
        convert_state_dict("sk", SelectiveKernelReference(32).state_dict(),
                           source="external_attention")


def test_make_divisible_matches_timm_rule():
    assert make_divisible(64 / 16, 8) == 8
    assert make_divisible(256 / 16, 8) == 16
    assert make_divisible(100 * 0.25, 8) == 24
    assert make_divisible(9.0, 8) == 16  # 8 would drop below 90% of 9


@pytest.mark.parametrize("kwargs", [
    {"channels": 33},  # odd width cannot be split over 2 paths
    {"channels": 32, "kernel_size": [3, 4]},
    {"channels": 32, "kernel_size": [1, 3]},  # 1x1 cannot become a dilated 3x3
    {"channels": 32, "kernel_size": [3]},
    {"channels": 32, "groups": 3},
    {"channels": 32, "groups": 0},
    {"channels": 32, "rd_ratio": 0},
    {"channels": 32, "rd_channels": 0},
    {"channels": 32, "rd_divisor": 0},
], ids=["odd_split", "even_k", "k1_keep3x3", "one_path", "groups3", "groups0", "rd_ratio0",
        "rd_channels0", "rd_divisor0"])
@pytest.mark.parametrize("cls", [SelectiveKernelReference, SelectiveKernel],
                         ids=["reference", "deploy"])
def test_bad_args_raise(cls, kwargs):
    with pytest.raises(BlockConfigError):
        cls(**kwargs)


@pytest.mark.parametrize("fill", [0.0, 3.0, -2.0], ids=["zero", "const3", "const-2"])
def test_nan_free_on_flat_maps(fill):
    block = randomize_norms_and_biases(SelectiveKernel(32)).eval()
    assert_matches_float64(block, torch.full((2, 32, 7, 9), fill))


@pytest.mark.parametrize("exporter,opset",
                         exhaustive([("torchscript", 17), ("dynamo", 18)], unpack=True))
def test_onnx_dynamic_hw_matches_torch_at_other_sizes(tmp_path, exporter, opset):
    block = randomize_norms_and_biases(SelectiveKernel(48, kernel_size=[3, 5, 7])).eval()
    export_and_compare(block, tmp_path, (2, 48, 16, 16), [(3, 48, 9, 13), (1, 48, 24, 20)],
                       exporter=exporter, opset=opset, filename="sk.onnx",
                       forbidden=block_info("sk").forbidden_ops)
