"""Shuffle Attention (Zhang and Yang, "SA-Net: Shuffle Attention for Deep Convolutional Neural
Networks", ICASSP 2021, arXiv:2102.00240).

Reference follows wofmanaf/SA-Net ``models/sa_resnet.py`` ``sa_layer(channel, groups=64)``: the map
is folded into ``groups`` sub-features along the batch axis, each split in two halves: a channel
gate (global mean, per-channel affine ``cweight``/``cbias``, sigmoid) on the first and a spatial
gate (GroupNorm with one channel per group, affine ``sweight``/``sbias``, sigmoid) on the second;
the halves are concatenated, unfolded and channel-shuffled with 2 groups.

The published default ``groups=64`` needs ``channels`` divisible by ``2 * groups = 128`` (the
parameters have ``channels // (2 * groups)`` entries; smaller widths build empty tensors and fail
in ``reshape``): both forms refuse such widths at construction, naming the kwarg.

Deploy form, the same ``state_dict`` (``cweight``, ``cbias``, ``sweight``, ``sbias``, ``gn.*``):
H11: the published reshapes read ``b, c, h, w`` from ``x.shape`` and fold the groups into the batch
(NVIDIA/TensorRT#3273), then permute for the shuffle. Every channel's gate is in fact a sigmoid of
``a * mean + s * (x - mean) / std + d`` with per-channel constants: ``a = cweight, s = 0,
d = cbias`` on the channel halves and ``a = 0, s = sweight * gn.weight, d = sweight * gn.bias +
sbias`` on the spatial halves. So the deploy form builds those three vectors from the parameters
(index constants, folded at export), gates the unfolded map channel by channel, and the final
shuffle is one ``Gather`` of channels with constant indices applied first: no reshape, no
transpose, every shape mode.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.parameter import Parameter

from attn_export.errors import BlockConfigError
from attn_export.modules.base import AttentionBlock


def _half_width(channels: int, groups: int) -> int:
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
        raise BlockConfigError(f"shuffle_attention: groups must be a positive integer, got {groups!r}")
    if channels % (2 * groups):
        raise BlockConfigError(
            f"shuffle_attention: channels={channels} must be divisible by 2 * groups = "
            f"{2 * groups} (sa_layer halves each of its `groups` sub-features; the published "
            f"default is groups=64); use a multiple of {2 * groups} channels or pass a smaller "
            "groups=..."
        )
    return channels // (2 * groups)


class _SALayers(AttentionBlock):
    """The parameters both forms share, named as in ``sa_layer``."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__(channels=channels, groups=groups)
        half = _half_width(channels, groups)
        self.groups = groups
        self.cweight = Parameter(torch.zeros(1, half, 1, 1))
        self.cbias = Parameter(torch.ones(1, half, 1, 1))
        self.sweight = Parameter(torch.zeros(1, half, 1, 1))
        self.sbias = Parameter(torch.ones(1, half, 1, 1))
        self.sigmoid = nn.Sigmoid()
        self.gn = nn.GroupNorm(half, half)


class ShuffleAttentionReference(_SALayers):
    """``sa_layer`` as published."""

    def __init__(self, channels: int, groups: int = 64) -> None:
        super().__init__(channels, groups)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)

    @staticmethod
    def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
        b, c, h, w = x.shape
        x = x.reshape(b, groups, -1, h, w)
        x = x.permute(0, 2, 1, 3, 4)
        return x.reshape(b, -1, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        x = x.reshape(b * self.groups, -1, h, w)
        x_0, x_1 = x.chunk(2, dim=1)
        xn = self.avg_pool(x_0)
        xn = self.cweight * xn + self.cbias
        xn = x_0 * self.sigmoid(xn)
        xs = self.gn(x_1)
        xs = self.sweight * xs + self.sbias
        xs = x_1 * self.sigmoid(xs)
        out = torch.cat([xn, xs], dim=1)
        out = out.reshape(b, -1, h, w)
        return self.channel_shuffle(out, 2)


def _layout(channels: int, groups: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Shuffle order, each channel's parameter index, and whether it is a channel-gate channel."""
    shuffle = torch.arange(channels).reshape(2, channels // 2).t().reshape(-1)
    within = torch.arange(channels) % (channels // groups)
    half = channels // (2 * groups)
    is_channel = within < half
    return shuffle, torch.where(is_channel, within, within - half), is_channel


class ShuffleAttention(_SALayers):
    """Export-safe ``sa_layer``: per-channel gates on the unfolded map (see the module doc)."""

    def __init__(self, channels: int, groups: int = 64) -> None:
        super().__init__(channels, groups)
        shuffle, index, is_channel = _layout(channels, groups)
        self.register_buffer("shuffle", shuffle, persistent=False)
        # Both already in shuffled order, so the gate applies to the shuffled map.
        self.register_buffer("param_index", index[shuffle], persistent=False)
        self.register_buffer("channel_mask", is_channel[shuffle].float().reshape(1, -1, 1, 1),
                             persistent=False)

    def _per_channel(self, p: torch.Tensor) -> torch.Tensor:
        return p.reshape(-1)[self.param_index].reshape(1, -1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.index_select(x, 1, self.shuffle)
        m = self.channel_mask
        a = self._per_channel(self.cweight) * m
        s = self._per_channel(self.sweight * self.gn.weight.reshape(1, -1, 1, 1)) * (1 - m)
        d = (self._per_channel(self.cbias) * m
             + self._per_channel(self.sweight * self.gn.bias.reshape(1, -1, 1, 1) + self.sbias)
             * (1 - m))
        mean = x.mean((2, 3), keepdim=True)
        centred = x - mean
        var = (centred * centred).mean((2, 3), keepdim=True)
        normed = centred * torch.rsqrt(var + self.gn.eps)
        return x * torch.sigmoid(a * mean + s * normed + d)
