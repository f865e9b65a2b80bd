"""Channel attention of RCAN (Zhang et al., "Image Super-Resolution Using Very Deep Residual Channel
Attention Networks", ECCV 2018, arXiv:1807.02758).

Reference follows the seed ``channel-attention.md`` CALayer (= yulunzhang/RCAN ``CALayer``): global
average pool, 1x1 conv -> ReLU -> 1x1 conv -> Sigmoid, both convs with bias. BasicSR's
``ChannelAttention`` (the layout of its released RCAN weights: the pool and the convs in one
``attention`` Sequential) loads through ``convert_state_dict(..., source="basicsr")``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from attn_export.modules.base import AttentionBlock, reduced_channels
from attn_export.modules.checkpoints import reduction_for


def _conv_du(channels: int, reduction: int) -> nn.Sequential:
    hidden = reduced_channels(channels, reduction, "rcan_ca")
    return nn.Sequential(
        nn.Conv2d(channels, hidden, 1, padding=0, bias=True),
        nn.ReLU(inplace=True),
        nn.Conv2d(hidden, channels, 1, padding=0, bias=True),
        nn.Sigmoid(),
    )


class RCANChannelAttentionReference(AttentionBlock):
    """RCAN's CA layer as published: ``AdaptiveAvgPool2d(1)`` then the ``conv_du`` gate."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__(channels=channels, reduction=reduction)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_du = _conv_du(channels, reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.avg_pool(x)
        y = self.conv_du(y)
        return x * y


class RCANChannelAttention(AttentionBlock):
    """Export-safe CA layer: a mean reduction instead of the adaptive pool, same keys."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__(channels=channels, reduction=reduction)
        self.conv_du = _conv_du(channels, reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # A ReduceMean is valid at every H/W in every runtime; no pooling op whose kernel an
        # exporter could size from the export shape (H1/H4 for the pools of other blocks).
        return x * self.conv_du(x.mean((2, 3), keepdim=True))


def _from_basicsr(sd: Mapping[str, Any]) -> dict[str, Any]:
    """BasicSR ``ChannelAttention``: ``attention.{1,3}`` (pool at index 0) -> ``conv_du.{0,2}``."""
    return {
        f"conv_du.{ours}.{p}": sd[f"attention.{theirs}.{p}"]
        for theirs, ours in ((1, 0), (3, 2))
        for p in ("weight", "bias")
    }


def _hyperparams(sd: Mapping[str, Any]) -> dict[str, Any]:
    hidden, channels = (int(n) for n in sd["conv_du.0.weight"].shape[:2])
    return {"channels": channels, "reduction": reduction_for(channels, hidden)}


SOURCES = {"rcan_ca": {"basicsr": _from_basicsr}}
HYPERPARAMS = {"rcan_ca": _hyperparams}
