"""Deploy forms of published blocks that differ from every block of the catalog.

Ultralytics' ``CBAM`` is not the paper's CBAM: its channel gate is RTMDet's (one biased 1x1 conv
on the global average, no max branch, no bottleneck), its spatial gate the paper's over
[mean, max]. torchvision's ``SqueezeExcitation`` and timm's EfficientNet ``SqueezeExcite`` take
any activation and gate (SiLU and Hardsigmoid in EfficientNet / MobileNetV3), which our ``se``
(ReLU, sigmoid, Linear layers) does not. Each gets an export-safe form here: a mean reduction
instead of ``AdaptiveAvgPool2d`` (H4), the channel pooling of our CBAM for the spatial gate, the
activations carried over as the module's own instances. The gate itself stays a Sigmoid (or the
module's gate), so INT8 keeps it float (F2) like every catalog gate.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from attn_export.modules.base import AttentionBlock
from attn_export.modules.cbam import _SpatialGate


class PooledSE(AttentionBlock):
    """``x * gate(fc2(act(fc1(mean(x)))))``: squeeze-excitation with the module's own activation
    and gate (1x1 convs, biases as found)."""

    def __init__(self, channels: int, hidden: int, bias: bool = True,
                 act: nn.Module | None = None, gate: nn.Module | None = None) -> None:
        super().__init__(channels=channels, hidden=hidden, bias=bias)
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=bias)
        self.act = copy.deepcopy(act) if act is not None else nn.ReLU()
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=bias)
        self.gate = copy.deepcopy(gate) if gate is not None else nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.mean((2, 3), keepdim=True)  # H4
        return x * self.gate(self.fc2(self.act(self.fc1(y))))


class ChannelGateRTM(AttentionBlock):
    """RTMDet / Ultralytics ``ChannelAttention``: ``x * act(fc(mean(x)))``, one biased conv (act:
    Ultralytics sigmoid, mmdet hard sigmoid)."""

    def __init__(self, channels: int, gate: nn.Module | None = None) -> None:
        super().__init__(channels=channels)
        self.fc = nn.Conv2d(channels, channels, 1, bias=True)
        self.act = copy.deepcopy(gate) if gate is not None else nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.act(self.fc(x.mean((2, 3), keepdim=True)))


class SpatialGateMeanMax(AttentionBlock):
    """Ultralytics ``SpatialAttention``: ``x * sigmoid(conv([mean_c(x), max_c(x)]))`` with our
    CBAM's channel pooling (one Split and an elementwise Max tree; see ``cbam._SpatialGate``)."""

    def __init__(self, channels: int, kernel_size: int = 7) -> None:
        super().__init__(channels=channels, kernel_size=kernel_size)
        self.gate = _SpatialGate(kernel_size, bias=False, channels=channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class UltralyticsCBAM(AttentionBlock):
    """Ultralytics ``CBAM`` (RTMDet channel gate, then the [mean, max] spatial gate)."""

    def __init__(self, channels: int, kernel_size: int = 7) -> None:
        super().__init__(channels=channels, kernel_size=kernel_size)
        self.channel_attention = ChannelGateRTM(channels)
        self.spatial_attention = SpatialGateMeanMax(channels, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial_attention(self.channel_attention(x))
