"""Style-based Recalibration Module (Lee et al., "SRM: A Style-based Recalibration Module for
Convolutional Neural Networks", ICCV 2019, arXiv:1903.10829).

Reference follows the seed ``channel-attention.md`` SRMLayer (= EvgenyKashin/SRMnet
``models/layer_blocks.py``): style pooling (per-channel mean and unbiased std over H*W), a
channel-wise fully connected layer (``cfc``: a depthwise ``Conv1d`` with kernel 2 over
``[mean, std]``, weight ``(C, 1, 2)``), ``BatchNorm1d`` and a sigmoid gate. The seed's unused
``reduction=None`` argument ("for compatibility with layer_block interface") is dropped.

In eval mode the BatchNorm uses its running statistics (a fixed affine map per channel); in training
it normalises ``z`` over the batch, so a batch of one raises in both forms, as in the seed.
A 1x1 map gives a NaN std in both forms (``torch.std`` of one sample).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from attn_export.errors import BlockConfigError
from attn_export.modules.base import AttentionBlock, pixel_count


class _SRMParams(AttentionBlock):
    """``cfc`` and ``bn`` exactly as the seed builds them (keys ``cfc.weight``, ``bn.*``)."""

    def __init__(self, channels: int) -> None:
        if channels < 1:
            raise BlockConfigError(f"srm: channels must be >= 1, got {channels}")
        super().__init__(channels=channels)
        self.cfc = nn.Conv1d(channels, channels, kernel_size=2, bias=False, groups=channels)
        self.bn = nn.BatchNorm1d(channels)


class SRMReference(_SRMParams):
    """SRM as published: ``torch.std`` and views sized from ``x.size()``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, _, _ = x.size()
        mean = x.view(b, c, -1).mean(-1).unsqueeze(-1)
        std = x.view(b, c, -1).std(-1).unsqueeze(-1)
        u = torch.cat((mean, std), -1)  # (b, c, 2)
        z = self.cfc(u)  # (b, c, 1)
        z = self.bn(z)
        g = torch.sigmoid(z)
        g = g.view(b, c, 1, 1)
        return x * g.expand_as(x)


class SRM(_SRMParams):
    """Export-safe SRM: std from explicit mean/variance, the CFC as two per-channel scales."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean((2, 3), keepdim=True)
        # H10: torch.std lowers to std.dim, which the dynamo exporter lacked (pytorch#150446).
        # Unbiased like torch.std: var * n / (n - 1), written 1 / (1 - 1/n) so an FP16 count that
        # saturates to inf gives the right limit instead of inf / inf. Means, not sums (F1).
        var = (x - mean).pow(2).mean((2, 3), keepdim=True)
        std = (var / (1.0 - 1.0 / pixel_count(x))).sqrt()
        # Conv1d(C, C, 2, groups=C) over [mean, std] is w[c, 0] * mean + w[c, 1] * std.
        w = self.cfc.weight  # (C, 1, 2): broadcasts as (C, 1, 1) against (N, C, 1, 1)
        z = mean * w[:, :, :1] + std * w[:, :, 1:]
        g = torch.sigmoid(self.bn(z.flatten(1)))  # BatchNorm1d over (N, C), as over (N, C, 1)
        return x * g.unsqueeze(-1).unsqueeze(-1)


def _hyperparams(sd: Mapping[str, Any]) -> dict[str, int]:
    return {"channels": int(sd["cfc.weight"].shape[0])}


HYPERPARAMS = {"srm": _hyperparams}
