"""Squeeze-and-Excitation Networks (Hu et al., CVPR 2018, arXiv:1709.01507).

Reference follows the seed ``channel-attention.md`` SEAttention (= moskomule/senet.pytorch):
global average pool, Linear -> ReLU -> Linear -> Sigmoid, no biases.
"""

from __future__ import annotations

import torch
from torch import nn

from attn_export.modules.base import AttentionBlock, reduced_channels


def _excitation(channels: int, reduction: int) -> nn.Sequential:
    hidden = reduced_channels(channels, reduction, "se")
    return nn.Sequential(
        nn.Linear(channels, hidden, bias=False),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, channels, bias=False),
        nn.Sigmoid(),
    )


class SEReference(AttentionBlock):
    """SE as published: ``AdaptiveAvgPool2d(1)`` and views computed from ``x.size()``."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__(channels=channels, reduction=reduction)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = _excitation(channels, reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, _, _ = x.size()
        y = self.avg_pool(x).view(b, c)
        y = self.fc(y).view(b, c, 1, 1)
        return x * y.expand_as(x)


class SE(AttentionBlock):
    """Export-safe SE: a mean reduction instead of adaptive pooling, no sizes read from ``x``."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__(channels=channels, reduction=reduction)
        self.fc = _excitation(channels, reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x.mean((2, 3)))  # H4: a reduction, not a pool kernel sized from the input
        return x * y.unsqueeze(-1).unsqueeze(-1)
