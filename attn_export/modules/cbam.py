"""CBAM: Convolutional Block Attention Module (Woo et al., ECCV 2018, arXiv:1807.06521).

Reference follows the seed ``attention-in-small-object-detection.md`` cbam_block: a channel gate
(shared 1x1-conv MLP over average- and max-pooled maps, no biases) then a spatial gate (7x7 conv over
the channel-wise [mean, max] maps). The official Jongchan/attention-module layout (Linear MLP with
biases, BatchNorm in the spatial gate, [max, mean] order) and timm's load through
``convert_state_dict``.
"""

from __future__ import annotations

import torch
from torch import nn

from attn_export.errors import BlockConfigError
from attn_export.modules.base import AttentionBlock, reduced_channels


def _spatial_padding(kernel_size: int) -> int:
    if kernel_size not in (3, 7):
        raise BlockConfigError(f"cbam: kernel_size must be 3 or 7 (as published), got {kernel_size}")
    return 3 if kernel_size == 7 else 1


class ChannelAttention(nn.Module):
    """Channel gate of the seed code (keys ``fc1``, ``fc2``)."""

    def __init__(self, in_planes: int, ratio: int = 8) -> None:
        super().__init__()
        hidden = reduced_channels(in_planes, ratio, "cbam")
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.max_pool = nn.AdaptiveMaxPool2d(1)
        self.fc1 = nn.Conv2d(in_planes, hidden, 1, bias=False)
        self.relu1 = nn.ReLU()
        self.fc2 = nn.Conv2d(hidden, in_planes, 1, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg_out = self.fc2(self.relu1(self.fc1(self.avg_pool(x))))
        max_out = self.fc2(self.relu1(self.fc1(self.max_pool(x))))
        return self.sigmoid(avg_out + max_out)


class SpatialAttention(nn.Module):
    """Spatial gate of the seed code (key ``conv1``), input order [mean, max]."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 1, kernel_size, padding=_spatial_padding(kernel_size), bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg_out = torch.mean(x, dim=1, keepdim=True)
        max_out, _ = torch.max(x, dim=1, keepdim=True)
        return self.sigmoid(self.conv1(torch.cat([avg_out, max_out], dim=1)))


class CBAMReference(AttentionBlock):
    """CBAM as published in the seed code."""

    def __init__(self, channels: int, ratio: int = 8, kernel_size: int = 7) -> None:
        super().__init__(channels=channels, ratio=ratio, kernel_size=kernel_size)
        self.channelattention = ChannelAttention(channels, ratio=ratio)
        self.spatialattention = SpatialAttention(kernel_size=kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.channelattention(x)
        return x * self.spatialattention(x)


class _ChannelGate(nn.Module):
    def __init__(self, channels: int, ratio: int) -> None:
        super().__init__()
        hidden = reduced_channels(channels, ratio, "cbam")
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=False)
        self.relu1 = nn.ReLU()
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = x.mean((2, 3), keepdim=True)  # H4
        mx = x.amax((2, 3), keepdim=True)  # H3: GlobalMax-like reduction, not a fixed MaxPool
        return torch.sigmoid(self.fc2(self.relu1(self.fc1(avg))) + self.fc2(self.relu1(self.fc1(mx))))


class _SpatialGate(nn.Module):
    def __init__(self, kernel_size: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 1, kernel_size, padding=_spatial_padding(kernel_size), bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # H5: amax keeps the channel dim; torch.max(x, 1)[0].unsqueeze(1) breaks shape inference.
        pooled = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv1(pooled))


class CBAM(AttentionBlock):
    """Export-safe CBAM: reductions instead of adaptive pools, same keys as the reference."""

    def __init__(self, channels: int, ratio: int = 8, kernel_size: int = 7) -> None:
        super().__init__(channels=channels, ratio=ratio, kernel_size=kernel_size)
        self.channelattention = _ChannelGate(channels, ratio)
        self.spatialattention = _SpatialGate(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.channelattention(x)
        return x * self.spatialattention(x)
