"""Coordinate Attention for Efficient Mobile Network Design (Hou et al., CVPR 2021,
arXiv:2103.02907).

Reference follows the seed ``channel-spatial-attention.md`` CoordAtt (= houqb/CoordAttention
``coordatt.py``), with ``h_sigmoid``/``h_swish`` as the seed
``attention-in-small-object-detection.md`` defines them: average each row and each column, run the
concatenated strips through a shared 1x1 conv + BN + h_swish, split them again, and gate the input
with one sigmoid per direction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from attn_export.errors import BlockConfigError, CheckpointError
from attn_export.modules.base import AttentionBlock


class h_sigmoid(nn.Module):
    """Hard sigmoid ``relu6(x + 3) / 6`` (MobileNetV3)."""

    def __init__(self, inplace: bool = True) -> None:
        super().__init__()
        self.relu = nn.ReLU6(inplace=inplace)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(x + 3) / 6


class h_swish(nn.Module):
    """Hard swish ``x * h_sigmoid(x)`` (MobileNetV3)."""

    def __init__(self, inplace: bool = True) -> None:
        super().__init__()
        self.sigmoid = h_sigmoid(inplace=inplace)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.sigmoid(x)


def _check_args(channels: int, oup: int | None, reduction: int) -> int:
    """``mip`` of the published code, refusing what it would only fail on later."""
    if not isinstance(channels, int) or channels < 1:
        raise BlockConfigError(f"coordatt: channels must be a positive integer, got {channels!r}")
    if not isinstance(reduction, int) or isinstance(reduction, bool) or reduction < 1:
        raise BlockConfigError(f"coordatt: reduction must be a positive integer, got {reduction!r}")
    if oup is not None and oup != channels:
        # The gates multiply the input (identity * a_w * a_h): any other width cannot broadcast.
        raise BlockConfigError(
            f"coordatt: oup must equal channels ({channels}) because the gates multiply the "
            f"input, got oup={oup}; leave oup=None"
        )
    return max(8, channels // reduction)


class _CoordAttLayers(AttentionBlock):
    """The layers both forms share (keys ``conv1``, ``bn1``, ``conv_h``, ``conv_w``)."""

    def __init__(self, channels: int, oup: int | None, reduction: int) -> None:
        super().__init__(channels=channels, oup=oup, reduction=reduction)
        mip = _check_args(channels, oup, reduction)
        self.conv1 = nn.Conv2d(channels, mip, kernel_size=1, stride=1, padding=0)
        self.bn1 = nn.BatchNorm2d(mip)
        self.act = h_swish()
        self.conv_h = nn.Conv2d(mip, channels, kernel_size=1, stride=1, padding=0)
        self.conv_w = nn.Conv2d(mip, channels, kernel_size=1, stride=1, padding=0)


class CoordAttReference(_CoordAttLayers):
    """CoordAtt as published: ``AdaptiveAvgPool2d((None, 1))``, cat, split and permutes."""

    def __init__(self, channels: int, oup: int | None = None, reduction: int = 32) -> None:
        super().__init__(channels, oup, reduction)
        self.pool_h = nn.AdaptiveAvgPool2d((None, 1))
        self.pool_w = nn.AdaptiveAvgPool2d((1, None))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        n, c, h, w = x.size()
        x_h = self.pool_h(x)
        x_w = self.pool_w(x).permute(0, 1, 3, 2)
        y = torch.cat([x_h, x_w], dim=2)
        y = self.conv1(y)
        y = self.bn1(y)
        y = self.act(y)
        x_h, x_w = torch.split(y, [h, w], dim=2)
        x_w = x_w.permute(0, 1, 3, 2)
        a_h = self.conv_h(x_h).sigmoid()
        a_w = self.conv_w(x_w).sigmoid()
        return identity * a_w * a_h


class CoordAtt(_CoordAttLayers):
    """Export-safe CoordAtt: strip means and a per-strip conv1/bn1/h_swish, same keys.

    ``AdaptiveAvgPool2d((None, 1))`` exports with a kernel baked from the export size (H2,
    houqb/CoordAttention#6), and the cat/permute/split around the shared conv needs the runtime H
    and W. A 1x1 conv and an eval-mode BatchNorm act on each position alone, so running them on
    the two strips separately gives the concatenated form's values; the graph then holds only
    ReduceMean, Conv, BatchNorm (folded), h_swish and Sigmoid, for any N, H, W.

    In training mode BatchNorm's batch statistics span both strips together, so training falls
    back to the concatenated form (runtime sizes are fine there: nothing is exported).
    """

    def __init__(self, channels: int, oup: int | None = None, reduction: int = 32) -> None:
        super().__init__(channels, oup, reduction)

    def _embed(self, strip: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn1(self.conv1(strip)))

    def _embed_jointly(self, x_h: torch.Tensor, x_w: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # Batch statistics over the H + W positions of both strips, as the reference computes them.
        h, w = x_h.shape[2], x_w.shape[3]
        y = self._embed(torch.cat([x_h.flatten(2), x_w.flatten(2)], dim=2).unsqueeze(-1))
        y_h, y_w = torch.split(y, [h, w], dim=2)
        return y_h, y_w.transpose(2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_h = x.mean(3, keepdim=True)  # H2: (N, C, H, 1) for any W
        x_w = x.mean(2, keepdim=True)  # H2: (N, C, 1, W) for any H
        if self.training:
            y_h, y_w = self._embed_jointly(x_h, x_w)
        else:
            y_h, y_w = self._embed(x_h), self._embed(x_w)
        # One full-size multiply of x by the (N, C, H, W) outer product of the two gates: ONNX
        # Runtime's CPU Mul broadcasting a (N, C, H, 1) or (N, C, 1, W) operand runs in rows of W,
        # ~3 passes each, so x * a_w * a_h (two of them, as published) is the block's main cost.
        return x * (self.conv_h(y_h).sigmoid() * self.conv_w(y_w).sigmoid())


def _coordatt_hyperparams(sd: Mapping[str, Any]) -> dict[str, Any]:
    """channels from ``conv1.weight``; a ``reduction`` that rebuilds its ``mip`` width.

    ``mip = max(8, channels // reduction)`` does not pin one reduction (every reduction that
    leaves 8 or fewer gives mip 8), so the published default 32 is preferred when it fits.
    """
    mip, channels = tuple(sd["conv1.weight"].shape[:2])
    oup = sd["conv_h.weight"].shape[0]
    if oup != channels:
        raise CheckpointError(
            f"coordatt: conv_h has {oup} output channels but conv1 takes {channels}; "
            "the block gates its input, so they must match"
        )
    for reduction in (32, *range(1, channels + 1)):
        if max(8, channels // reduction) == mip:
            return {"channels": channels, "reduction": reduction}
    raise CheckpointError(
        f"coordatt: conv1 maps {channels} channels to {mip}, which no reduction gives "
        f"(mip = max(8, channels // reduction))"
    )


HYPERPARAMS = {"coordatt": _coordatt_hyperparams}
