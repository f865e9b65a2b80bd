"""Bilinear Attention (Fang et al., "Bilinear Attention Networks for Person Retrieval", ICCV 2019;
no arXiv version).

Reference follows the first author's code, PengfeiFANGanu/Attention-in-Attention-Networks
``models/bilinear_baseline_AIA.py`` ``BilinearAttention(inChannels, outChannels)``, checked against
the formulas of the seed ``channel-attention.md``: a 1x1 ConvBlock (conv, BN, ReLU) reduces the map
to ``m = channels // 16`` channels, each pixel's second-order vector is the lower triangle of its
outer product (``m (m + 1) / 2`` terms, diagonal by diagonal), a channel descriptor of its spatial
mean goes through ``dimReduceLayer3`` and gates ``dimReduceLayer2`` of the second-order map, and
``sigmoid`` of that gates the input. ``channels`` is ``inChannels``; ``out_channels``
(``outChannels``) defaults to it and must equal it, since the gate multiplies the input.

Deploy form, the same ``state_dict`` (``dimReduceLayer{1,2,3}.conv.conv.*`` / ``.conv.bn.*``):
H11: the published code flattens the map to ``(N*H*W, m)`` with ``view`` sizes read from
``x.size()``, takes ``bmm`` outer products, ``diagonal``s and a ``cat``, then permutes back. The
lower-triangle terms are ``x[j + i] * x[j]``, so the deploy form gathers the two factor channels
with constant indices and multiplies: the NCHW layout is kept, no reshape, no transpose, every
shape mode, and no (m x m) matrix per pixel. H4: ``F.avg_pool2d(x, x.size()[2:])`` is a mean.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from attn_export.errors import BlockConfigError
from attn_export.modules.base import AttentionBlock, reduced_channels


class ConvBlock(nn.Module):
    """conv + BN + ReLU (the published ``ConvBlock``; keys ``conv.*``, ``bn.*``)."""

    def __init__(self, in_c: int, out_c: int, k: int, s: int = 1, p: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_c, out_c, k, stride=s, padding=p)
        self.bn = nn.BatchNorm2d(out_c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class DimChange(nn.Sequential):
    """The published ``_dim_change``: one 1x1 ConvBlock registered as ``conv``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.add_module("conv", ConvBlock(in_channels, out_channels, k=1, s=1))


class _BilinearLayers(AttentionBlock):
    def __init__(self, channels: int, out_channels: int | None) -> None:
        super().__init__(channels=channels, out_channels=out_channels)
        out = channels if out_channels is None else out_channels
        if out != channels:
            raise BlockConfigError(
                f"bilinear: out_channels={out} must equal channels={channels}: the attention "
                "multiplies the input; leave out_channels unset"
            )
        mid = reduced_channels(channels, 16, "bilinear")  # inChannels // 16
        self.mid_channels = mid
        self.dimReduceLayer1 = DimChange(channels, mid)
        self.dimReduceLayer2 = DimChange(mid * (mid + 1) // 2, out)
        self.dimReduceLayer3 = DimChange(mid * (mid + 1) // 2, out)


class BilinearAttentionReference(_BilinearLayers):
    """``BilinearAttention`` as published."""

    def __init__(self, channels: int, out_channels: int | None = None) -> None:
        super().__init__(channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        input_x = x
        x = self.dimReduceLayer1(x)
        batches, channels, rows, cols = x.size()
        x = x.permute(0, 2, 3, 1).contiguous().view(-1, channels)
        x = torch.bmm(x.unsqueeze(2), x.unsqueeze(1))
        x = torch.cat([torch.diagonal(x, offset=-i, dim1=1, dim2=2) for i in range(channels)],
                      dim=1)
        x = x.view(batches, rows, cols, -1).permute(0, 3, 1, 2).contiguous()
        m_cha = self.dimReduceLayer3(F.avg_pool2d(x, x.size()[2:]))
        output = m_cha * self.dimReduceLayer2(x)
        return torch.sigmoid(output) * input_x


def triangle_indices(m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Factor channels of the published order: diagonal ``-i``, element ``j`` is ``x[j+i] x[j]``."""
    rows = [j + i for i in range(m) for j in range(m - i)]
    cols = [j for i in range(m) for j in range(m - i)]
    return torch.tensor(rows), torch.tensor(cols)


class BilinearAttention(_BilinearLayers):
    """Export-safe ``BilinearAttention``: second-order terms by constant-index gathers (H11)."""

    def __init__(self, channels: int, out_channels: int | None = None) -> None:
        super().__init__(channels, out_channels)
        rows, cols = triangle_indices(self.mid_channels)
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("cols", cols, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.dimReduceLayer1(x)
        second = torch.index_select(r, 1, self.rows) * torch.index_select(r, 1, self.cols)
        m_cha = self.dimReduceLayer3(second.mean((2, 3), keepdim=True))  # H4
        return torch.sigmoid(m_cha * self.dimReduceLayer2(second)) * x


def _bilinear_hyperparams(sd: Mapping[str, Any]) -> dict[str, Any]:
    return {"channels": int(sd["dimReduceLayer1.conv.conv.weight"].shape[1])}


HYPERPARAMS = {"bilinear": _bilinear_hyperparams}
