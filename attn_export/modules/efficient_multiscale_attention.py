"""Efficient Multi-Scale Attention (Ouyang et al., "Efficient Multi-Scale Attention Module with
Cross-Spatial Learning", ICASSP 2023, arXiv:2305.13563).

Reference follows YOLOonMe/EMA-attention-module ``EMA_attention_module`` ``EMA(channels, c2=None,
factor=32)``: the map is folded into ``factor`` groups along the batch axis (``b * groups``); a
coordinate branch (1x1 conv on the row and column means, two sigmoid gates, a GroupNorm) and a 3x3
branch cross-attend through softmaxed channel descriptors into one spatial gate per group.

Deploy form, the same ``state_dict`` (``gn.*``, ``conv1x1.*``, ``conv3x3.*``):

- H11: the published code reshapes to ``(b * groups, -1, h, w)`` with sizes read from ``x.size()``
  (batch folded into the group axis, NVIDIA/TensorRT#3273). Here the map keeps its shape: the
  shared per-group convs become grouped convs whose weights are the published ones tiled
  ``groups`` times (constants, folded at export), the per-group channel sums and the broadcast of
  the group gate back to its channels are grouped 1x1 convs with constant weights of ones, and
  the only reshapes are of ``(N, C)`` descriptors, with module constants and -1.
- H2: ``AdaptiveAvgPool2d((None, 1))`` / ``((1, None))`` become ``mean(3)`` / ``mean(2)``
  (YOLOonMe/EMA-attention-module#8 reports the baked kernel); the 1x1 conv is applied to each
  strip instead of to their concatenation, which is the same for a pointwise conv, so no
  Concat/Split/Transpose remains.
- ``GroupNorm(c/g, c/g)`` normalises each channel on its own (as many groups as channels): it is
  written as a per-channel mean and (biased) variance over H, W with the affine terms tiled.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attn_export.errors import BlockConfigError
from attn_export.modules.base import AttentionBlock


def _check(channels: int, factor: int) -> int:
    if not isinstance(factor, int) or isinstance(factor, bool) or factor < 1:
        raise BlockConfigError(f"ema: factor must be a positive integer, got {factor!r}")
    if channels % factor or channels // factor < 1:
        raise BlockConfigError(
            f"ema: channels={channels} must be a positive multiple of factor={factor} (EMA "
            f"splits the channels into `factor` groups); use such a width or pass factor=..."
        )
    return channels // factor


class _EMALayers(AttentionBlock):
    """The layers both forms share, named as in the published EMA."""

    def __init__(self, channels: int, c2: int | None, factor: int) -> None:
        super().__init__(channels=channels, c2=c2, factor=factor)
        cg = _check(channels, factor)
        self.groups = factor
        self.softmax = nn.Softmax(-1)
        self.gn = nn.GroupNorm(cg, cg)
        self.conv1x1 = nn.Conv2d(cg, cg, kernel_size=1, stride=1, padding=0)
        self.conv3x3 = nn.Conv2d(cg, cg, kernel_size=3, stride=1, padding=1)


class EMAReference(_EMALayers):
    """EMA as published (``c2`` is accepted and unused, as upstream)."""

    def __init__(self, channels: int, c2: int | None = None, factor: int = 32) -> None:
        super().__init__(channels, c2, factor)
        self.agp = nn.AdaptiveAvgPool2d((1, 1))
        self.pool_h = nn.AdaptiveAvgPool2d((None, 1))
        self.pool_w = nn.AdaptiveAvgPool2d((1, None))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.size()
        g = self.groups
        group_x = x.reshape(b * g, -1, h, w)
        x_h = self.pool_h(group_x)
        x_w = self.pool_w(group_x).permute(0, 1, 3, 2)
        hw = self.conv1x1(torch.cat([x_h, x_w], dim=2))
        x_h, x_w = torch.split(hw, [h, w], dim=2)
        x1 = self.gn(group_x * x_h.sigmoid() * x_w.permute(0, 1, 3, 2).sigmoid())
        x2 = self.conv3x3(group_x)
        x11 = self.softmax(self.agp(x1).reshape(b * g, -1, 1).permute(0, 2, 1))
        x12 = x2.reshape(b * g, c // g, -1)
        x21 = self.softmax(self.agp(x2).reshape(b * g, -1, 1).permute(0, 2, 1))
        x22 = x1.reshape(b * g, c // g, -1)
        weights = (torch.matmul(x11, x12) + torch.matmul(x21, x22)).reshape(b * g, 1, h, w)
        return (group_x * weights.sigmoid()).reshape(b, c, h, w)


class EMA(_EMALayers):
    """Export-safe EMA: no batch folding, no shape arithmetic, every shape mode (see module doc)."""

    def __init__(self, channels: int, c2: int | None = None, factor: int = 32) -> None:
        super().__init__(channels, c2, factor)
        cg = channels // factor
        self.channels = channels
        # Constant grouped 1x1 convs: sum the cg channels of each group / spread a group's gate.
        self.register_buffer("group_sum", torch.ones(factor, cg, 1, 1), persistent=False)
        self.register_buffer("group_spread", torch.ones(channels, 1, 1, 1), persistent=False)

    def _tiled(self, conv: nn.Conv2d) -> tuple[torch.Tensor, torch.Tensor]:
        return conv.weight.repeat(self.groups, 1, 1, 1), conv.bias.repeat(self.groups)

    def _channel_norm(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean((2, 3), keepdim=True)
        centred = x - mean
        var = (centred * centred).mean((2, 3), keepdim=True)
        scale = self.gn.weight.repeat(self.groups).reshape(1, -1, 1, 1)
        shift = self.gn.bias.repeat(self.groups).reshape(1, -1, 1, 1)
        return centred * torch.rsqrt(var + self.gn.eps) * scale + shift

    def _group_softmax(self, x: torch.Tensor) -> torch.Tensor:
        desc = x.mean((2, 3)).reshape(-1, self.groups, self.channels // self.groups)
        return self.softmax(desc).reshape(-1, self.channels, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.groups
        w1, b1 = self._tiled(self.conv1x1)
        gate_h = F.conv2d(x.mean(3, keepdim=True), w1, b1, groups=g).sigmoid()  # H2: (N, C, H, 1)
        gate_w = F.conv2d(x.mean(2, keepdim=True), w1, b1, groups=g).sigmoid()  # H2: (N, C, 1, W)
        x1 = self._channel_norm(x * gate_h * gate_w)
        w3, b3 = self._tiled(self.conv3x3)
        x2 = F.conv2d(x, w3, b3, padding=1, groups=g)
        mixed = x2 * self._group_softmax(x1) + x1 * self._group_softmax(x2)
        weights = F.conv2d(mixed, self.group_sum, groups=g)  # (N, groups, H, W)
        return x * F.conv2d(weights.sigmoid(), self.group_spread, groups=g)
