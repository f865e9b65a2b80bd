"""mmcv / mmdet attention classes, written here under their real module paths.

mmcv needs a compiled build (its ``mmcv._ext``) that has no CPU wheel for this torch, so the
recognisers in ``attn_export/modules/recognise/mmcv.py`` are tested on these: the same class
names, attribute names, parameter shapes and forward semantics as ``mmcv.cnn.bricks.
context_block.ContextBlock`` and ``mmdet.models.layers.se_layer.SELayer`` / ``ChannelAttention``
(mmdet 3.x), written from their documented behaviour, with ``__module__`` set to the real path so
recognition sees what it sees on a real install.
"""

from __future__ import annotations

import torch
from torch import nn


class ContextBlock(nn.Module):
    """GCNet's context block (mmcv): attention or average pooling, add and/or scale fusion."""

    def __init__(self, in_channels: int, ratio: float, pooling_type: str = "att",
                 fusion_types: tuple = ("channel_add",)) -> None:
        super().__init__()
        self.in_channels, self.ratio = in_channels, ratio
        self.planes = int(in_channels * ratio)
        self.pooling_type, self.fusion_types = pooling_type, fusion_types
        if pooling_type == "att":
            self.conv_mask = nn.Conv2d(in_channels, 1, kernel_size=1)
            self.softmax = nn.Softmax(dim=2)
        else:
            self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.channel_add_conv = self._transform() if "channel_add" in fusion_types else None
        self.channel_mul_conv = self._transform() if "channel_mul" in fusion_types else None

    def _transform(self) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(self.in_channels, self.planes, 1),
                             nn.LayerNorm([self.planes, 1, 1]), nn.ReLU(inplace=True),
                             nn.Conv2d(self.planes, self.in_channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        if self.pooling_type == "att":
            weights = self.softmax(self.conv_mask(x).view(n, 1, h * w)).unsqueeze(-1)
            context = torch.matmul(x.view(n, c, h * w).unsqueeze(1), weights).view(n, c, 1, 1)
        else:
            context = self.avg_pool(x)
        out = x
        if self.channel_mul_conv is not None:
            out = out * torch.sigmoid(self.channel_mul_conv(context))
        if self.channel_add_conv is not None:
            out = out + self.channel_add_conv(context)
        return out


class ConvModule(nn.Module):
    """mmcv's conv + activation wrapper (no norm: the conv keeps its bias), ``activate`` named
    as mmcv names it."""

    def __init__(self, in_channels: int, out_channels: int, act: nn.Module) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=True)
        self.activate = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activate(self.conv(x))


class SELayer(nn.Module):
    """mmdet's SE: global average, ConvModule(ReLU), ConvModule(Sigmoid), ``x * out``."""

    def __init__(self, channels: int, ratio: int = 16) -> None:
        super().__init__()
        self.global_avgpool = nn.AdaptiveAvgPool2d(1)
        self.conv1 = ConvModule(channels, int(channels / ratio), nn.ReLU())
        self.conv2 = ConvModule(int(channels / ratio), channels, nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.conv2(self.conv1(self.global_avgpool(x)))


class ChannelAttention(nn.Module):
    """mmdet's RTMDet channel attention: ``x * hardsigmoid(fc(avgpool(x)))``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.global_avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Conv2d(channels, channels, 1, 1, 0, bias=True)
        self.act = nn.Hardsigmoid(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.act(self.fc(self.global_avgpool(x)))


ContextBlock.__module__ = "mmcv.cnn.bricks.context_block"
ConvModule.__module__ = "mmcv.cnn.bricks.conv_module"
SELayer.__module__ = "mmdet.models.layers.se_layer"
ChannelAttention.__module__ = "mmdet.models.layers.se_layer"
