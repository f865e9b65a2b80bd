"""NAM: Normalization-based Attention Module (Liu et al., NeurIPS 2021 Workshop on ImageNet: Past,
Present, and Future, arXiv:2111.12419).

Reference follows Christian-lyc/NAM ``MODELS/attention.py`` ``Channel_Att`` (the module the repo's
``Att`` wraps; its spatial branch is never built): an affine BatchNorm ``bn2`` whose scale factors,
normalised to sum to one in absolute value, weight the normalised map channel by channel, and a
sigmoid of the result gates the input. ``t=16`` is a published constructor argument that the code
never reads; it is kept so that ``Channel_Att(channels, t)`` calls port unchanged.

Deploy form: the published code permutes the map to NHWC to broadcast the weights over the last
axis and permutes it back (two Transposes of the whole map); the deploy form multiplies by the
weights as a ``(1, C, 1, 1)`` view instead, so the graph holds no Transpose and every shape mode
works. The weights are taken with ``detach()`` as the published ``.data`` does (no gradient flows
through them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from attn_export.errors import BlockConfigError
from attn_export.modules.base import AttentionBlock


class _NAMLayers(AttentionBlock):
    """The BatchNorm both forms share (keys ``bn2.*``)."""

    def __init__(self, channels: int, t: int = 16) -> None:
        if channels < 1:
            raise BlockConfigError(f"nam: channels must be >= 1, got {channels}")
        super().__init__(channels=channels, t=t)
        self.channels = channels
        self.bn2 = nn.BatchNorm2d(channels, affine=True)

    def _channel_weights(self) -> torch.Tensor:
        w = self.bn2.weight.detach().abs()
        return w / w.sum()


class NAMReference(_NAMLayers):
    """``Channel_Att`` as published: permute to NHWC, weight, permute back."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x
        x = self.bn2(x)
        x = x.permute(0, 2, 3, 1).contiguous()
        x = torch.mul(self._channel_weights(), x)
        x = x.permute(0, 3, 1, 2).contiguous()
        return torch.sigmoid(x) * residual


class NAM(_NAMLayers):
    """Export-safe NAM: the channel weights broadcast as (1, C, 1, 1), no Transpose."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self._channel_weights().reshape(1, self.channels, 1, 1)
        return torch.sigmoid(self.bn2(x) * weights) * x


def _hyperparams(sd: Mapping[str, Any]) -> dict[str, int]:
    return {"channels": int(sd["bn2.weight"].shape[0])}


HYPERPARAMS = {"nam": _hyperparams}
