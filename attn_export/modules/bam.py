"""BAM: Bottleneck Attention Module (Park, Woo, Lee, Kweon; BMVC 2018, arXiv:1807.06514).

Reference follows the official Jongchan/attention-module ``MODELS/bam.py``: a channel gate (global
average pool, Linear -> BatchNorm1d -> ReLU -> Linear) and a spatial gate (1x1 reduce, ``num_dilated``
dilated 3x3 convs, 1x1 to one map), combined as ``x * (1 + sigmoid(channel * spatial))``. The paper
adds the two branches; the code multiplies them, and the released weights were trained with the
code, so both forms keep the product. Parameter names are the official ones
(``channel_att.gate_c.gate_c_fc_0.weight``, ``spatial_att.gate_s.gate_s_conv_di_0.weight``, ...), so an
official state_dict loads with ``strict=True``.

Where ours differs from the official code, and why:

* The official ``ChannelGate.__init__`` reads an undefined ``gate_activation`` and raises
  ``NameError``: no instance can be built from it as published. Ours drops that line.
* The official channel gate pools with ``F.avg_pool2d(x, x.size(2), stride=x.size(2))``: a square
  H x H window. For H != W it averages only part of the map (H <= W < 2H) or fails in the Linear
  (any other W). Ours averages over the whole H x W map, which equals the official result when
  H == W.
* Kwargs are renamed to the catalog's: ``reduction`` (official ``reduction_ratio``), ``dilation``
  (``dilation_val``), ``num_dilated`` (``dilation_conv_num``).

The channel gate's BatchNorm1d needs more than one sample per batch in training mode (as in the
official code); eval mode has no such limit.
"""

from __future__ import annotations

import re
from collections import OrderedDict

import torch
from torch import nn

from attn_export.errors import BlockConfigError, CheckpointError
from attn_export.modules.base import AttentionBlock, reduced_channels

StateDict = dict[str, torch.Tensor]


def _check_int(name: str, value: object, minimum: int, paper: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise BlockConfigError(
            f"bam: {name} must be an integer >= {minimum} (paper: {paper}), got {value!r}"
        )


def _channel_mlp(channels: int, hidden: int) -> nn.Sequential:
    """``gate_c`` of the official code with its one hidden layer (``num_layers=1``)."""
    return nn.Sequential(OrderedDict([
        ("flatten", nn.Flatten()),
        ("gate_c_fc_0", nn.Linear(channels, hidden)),
        ("gate_c_bn_1", nn.BatchNorm1d(hidden)),
        ("gate_c_relu_1", nn.ReLU()),
        ("gate_c_fc_final", nn.Linear(hidden, channels)),
    ]))


def _spatial_convs(channels: int, hidden: int, dilation: int, num_dilated: int) -> nn.Sequential:
    """``gate_s`` of the official code: 1x1 reduce, dilated 3x3 convs, 1x1 to a single map."""
    layers: list[tuple[str, nn.Module]] = [
        ("gate_s_conv_reduce0", nn.Conv2d(channels, hidden, kernel_size=1)),
        ("gate_s_bn_reduce0", nn.BatchNorm2d(hidden)),
        ("gate_s_relu_reduce0", nn.ReLU()),
    ]
    for i in range(num_dilated):
        conv = nn.Conv2d(hidden, hidden, kernel_size=3, padding=dilation, dilation=dilation)
        layers += [
            (f"gate_s_conv_di_{i}", conv),
            (f"gate_s_bn_di_{i}", nn.BatchNorm2d(hidden)),
            (f"gate_s_relu_di_{i}", nn.ReLU()),
        ]
    layers.append(("gate_s_conv_final", nn.Conv2d(hidden, 1, kernel_size=1)))
    return nn.Sequential(OrderedDict(layers))


def _hidden(channels: int, reduction: int, dilation: int, num_dilated: int) -> int:
    _check_int("dilation", dilation, 1, 4)
    _check_int("num_dilated", num_dilated, 0, 2)
    return reduced_channels(channels, reduction, "bam")


class ChannelGate(nn.Module):
    """Official channel gate (key prefix ``gate_c``), pooling over the whole map."""

    def __init__(self, gate_channel: int, hidden: int) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)  # official: avg_pool2d(x, x.size(2)), H == W only
        self.gate_c = _channel_mlp(gate_channel, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate_c(self.avg_pool(x)).unsqueeze(2).unsqueeze(3).expand_as(x)


class SpatialGate(nn.Module):
    """Official spatial gate (key prefix ``gate_s``)."""

    def __init__(self, gate_channel: int, hidden: int, dilation: int, num_dilated: int) -> None:
        super().__init__()
        self.gate_s = _spatial_convs(gate_channel, hidden, dilation, num_dilated)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate_s(x).expand_as(x)


class _BAMBase(AttentionBlock):
    """Both forms: ``(1 + sigmoid(channel * spatial)) * x``; they differ only in the gate classes."""

    channel_gate: type[nn.Module]
    spatial_gate: type[nn.Module]

    def __init__(
        self, channels: int, reduction: int = 16, dilation: int = 4, num_dilated: int = 2
    ) -> None:
        super().__init__(
            channels=channels, reduction=reduction, dilation=dilation, num_dilated=num_dilated
        )
        hidden = _hidden(channels, reduction, dilation, num_dilated)
        self.channel_att = self.channel_gate(channels, hidden)
        self.spatial_att = self.spatial_gate(channels, hidden, dilation, num_dilated)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Deploy gates are (N, C, 1, 1) and (N, 1, H, W): they broadcast, no Expand from x's shape.
        att = 1 + torch.sigmoid(self.channel_att(x) * self.spatial_att(x))
        return att * x


class BAMReference(_BAMBase):
    """BAM as the official code computes it (product of the branches), for any H and W."""

    channel_gate = ChannelGate
    spatial_gate = SpatialGate


class _ChannelGate(nn.Module):
    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.gate_c = _channel_mlp(channels, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # H4: a mean over H and W, not avg_pool2d with a kernel read from x.size(2).
        return self.gate_c(x.mean((2, 3))).unsqueeze(-1).unsqueeze(-1)


class _SpatialGate(nn.Module):
    def __init__(self, channels: int, hidden: int, dilation: int, num_dilated: int) -> None:
        super().__init__()
        self.gate_s = _spatial_convs(channels, hidden, dilation, num_dilated)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate_s(x)


class BAM(_BAMBase):
    """Export-safe BAM: mean reduction, gates broadcast (no ``expand_as``), same keys."""

    channel_gate = _ChannelGate
    spatial_gate = _SpatialGate


def _infer_bam(sd: StateDict) -> dict[str, int]:
    """channels, reduction and num_dilated from an official-layout state_dict.

    ``dilation`` is not in the tensors (every dilated conv is 3x3); it stays at the default 4 unless
    passed.
    """
    hidden, channels = sd["channel_att.gate_c.gate_c_fc_0.weight"].shape
    # Several reductions give the same bottleneck (64 // 13 == 64 // 16); prefer the paper's 16,
    # then channels // hidden.
    preferred = [16, channels // max(hidden, 1), *range(1, channels + 1)]
    fitting = [r for r in preferred if r >= 1 and channels // r == hidden]
    if not fitting:
        raise CheckpointError(
            f"bam: no integer reduction maps {channels} channels to the {hidden}-channel "
            "bottleneck found in gate_c_fc_0; expected channels // reduction == hidden"
        )
    pattern = re.compile(r"spatial_att\.gate_s\.gate_s_conv_di_(\d+)\.weight")
    num_dilated = sum(1 for k in sd if pattern.fullmatch(k))
    return {"channels": int(channels), "reduction": fitting[0], "num_dilated": num_dilated}


HYPERPARAMS = {"bam": _infer_bam}
