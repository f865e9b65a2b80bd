"""Concurrent spatial and channel squeeze & excitation (Roy et al., "Concurrent Spatial and Channel
'Squeeze & Excitation' in Fully Convolutional Networks", MICCAI 2018, arXiv:1803.02579; journal
version "Recalibrating Fully Convolutional Networks with Spatial and Channel 'Squeeze & Excitation'
Blocks", IEEE TMI 2018, arXiv:1808.08127).

Reference follows the seed ``channel-spatial-attention.md`` SCSEModule (=
segmentation_models.pytorch ``base/modules.py`` SCSEModule): a channel gate (pool, 1x1 conv with
bias, ReLU, 1x1 conv with bias, sigmoid) and a spatial gate (1x1 conv to one channel with bias,
sigmoid), fused by addition: ``x * cSE(x) + x * sSE(x)``. ``fusion="max"`` is the authors' own
choice in ai-med/squeeze_and_excitation ``ChannelSpatialSELayer``: ``max(x * cSE(x), x * sSE(x))``.
The authors' layout (Linear ``fc1``/``fc2`` and ``sSE.conv``; their default reduction is 2) loads
with ``convert_state_dict(..., source="ai_med")``; build the block with ``fusion="max"`` for it, the
tensors do not record the fusion.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from attn_export.errors import BlockConfigError
from attn_export.modules.base import AttentionBlock, reduced_channels
from attn_export.modules.checkpoints import reduction_for

FUSIONS = ("add", "max")


class _GlobalMean(nn.Module):
    """``AdaptiveAvgPool2d(1)`` as a ReduceMean; sits at index 0 so the conv keys stay ``cSE.1``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # A ReduceMean is valid at every H/W in every runtime; no pooling op whose kernel an
        # exporter could size from the export shape (H1/H4 for the pools of other blocks).
        return x.mean((2, 3), keepdim=True)


def _channel_gate(pool: nn.Module, channels: int, reduction: int) -> nn.Sequential:
    hidden = reduced_channels(channels, reduction, "scse")
    return nn.Sequential(
        pool,
        nn.Conv2d(channels, hidden, 1),
        nn.ReLU(inplace=True),
        nn.Conv2d(hidden, channels, 1),
        nn.Sigmoid(),
    )


class _SCSEBase(AttentionBlock):
    def __init__(self, channels: int, reduction: int, fusion: str, pool: nn.Module) -> None:
        if fusion not in FUSIONS:
            raise BlockConfigError(
                f"scse: fusion must be one of {', '.join(FUSIONS)} ('add': "
                f"segmentation_models.pytorch, 'max': ai-med), got {fusion!r}"
            )
        super().__init__(channels=channels, reduction=reduction, fusion=fusion)
        self.fusion = fusion
        self.cSE = _channel_gate(pool, channels, reduction)
        self.sSE = nn.Sequential(nn.Conv2d(channels, 1, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fusion == "add":  # a constructor constant, not a shape: one branch is traced
            return x * self.cSE(x) + x * self.sSE(x)
        return torch.max(x * self.cSE(x), x * self.sSE(x))


class SCSEReference(_SCSEBase):
    """scSE as published: ``AdaptiveAvgPool2d(1)`` at ``cSE[0]``."""

    def __init__(self, channels: int, reduction: int = 16, fusion: str = "add") -> None:
        super().__init__(channels, reduction, fusion, nn.AdaptiveAvgPool2d(1))


class SCSE(_SCSEBase):
    """Export-safe scSE: a mean reduction at ``cSE[0]`` instead of the adaptive pool, same keys."""

    def __init__(self, channels: int, reduction: int = 16, fusion: str = "add") -> None:
        super().__init__(channels, reduction, fusion, _GlobalMean())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fusion == "add":
            # x * c + x * s == x * (c + s): two full-size passes (the broadcast Add of the
            # (N, C, 1, 1) and (N, 1, H, W) gates, then one Mul) instead of three (Mul, Mul, Add).
            # Tuned on ONNX Runtime CPU 1.32: 6.3 -> 4.6 floors at 1x256x56x56 (kernel profile).
            # Float32 rounding only; in FP16 c + s <= 2, so nothing new can overflow.
            return x * (self.cSE(x) + self.sSE(x))
        return torch.max(x * self.cSE(x), x * self.sSE(x))


def _from_ai_med(sd: Mapping[str, Any]) -> dict[str, Any]:
    """ai-med ``ChannelSpatialSELayer``: Linear ``cSE.fc1``/``fc2`` -> 1x1 convs, ``sSE.conv``."""
    out = {}
    for theirs, ours in (("cSE.fc1", "cSE.1"), ("cSE.fc2", "cSE.3")):
        out[f"{ours}.weight"] = sd[f"{theirs}.weight"][:, :, None, None]
        out[f"{ours}.bias"] = sd[f"{theirs}.bias"]
    out["sSE.0.weight"] = sd["sSE.conv.weight"]
    out["sSE.0.bias"] = sd["sSE.conv.bias"]
    return out


def _hyperparams(sd: Mapping[str, Any]) -> dict[str, Any]:
    hidden, channels = (int(n) for n in sd["cSE.1.weight"].shape[:2])
    return {"channels": channels, "reduction": reduction_for(channels, hidden)}


SOURCES = {"scse": {"ai_med": _from_ai_med}}
HYPERPARAMS = {"scse": _hyperparams}
