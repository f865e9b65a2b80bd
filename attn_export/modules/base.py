"""Common base of every block: records the constructor arguments so a twin can be rebuilt."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from attn_export.errors import BlockConfigError


class AttentionBlock(nn.Module):
    """An attention block that remembers how it was built.

    ``to_deploy`` rebuilds the deploy twin of a reference block from ``init_args`` and copies the
    weights across, so every block (both forms) passes its constructor arguments up here.
    """

    def __init__(self, **init_args: Any) -> None:
        super().__init__()
        self.init_args = dict(init_args)


def reduced_channels(channels: int, reduction: int | float, block: str, minimum: int = 1) -> int:
    """``channels // reduction``, refusing widths that would leave an empty bottleneck."""
    if channels < 1:
        raise BlockConfigError(f"{block}: channels must be >= 1, got {channels}")
    if not isinstance(reduction, (int, float)) or isinstance(reduction, bool) or reduction <= 0:
        raise BlockConfigError(f"{block}: reduction must be a positive number, got {reduction!r}")
    hidden = int(channels // reduction)
    if hidden < minimum:
        raise BlockConfigError(
            f"{block}: channels={channels} with reduction={reduction} leaves a bottleneck of "
            f"{hidden} channels (needs >= {minimum}); use more channels or a smaller reduction"
        )
    return hidden


def pixel_count(x: torch.Tensor) -> torch.Tensor:
    """H*W of ``x`` as an ``(N, 1, 1, 1)`` tensor computed in the graph.

    Element-wise ops and a ReduceSum only: no Shape/Gather arithmetic (H11), so the count follows
    dynamic H/W in any runtime. In FP16 it saturates to ``inf`` above 65504 pixels; callers only
    use ``1 / count``, which then becomes 0, the right limit.
    """
    return (x[:, :1] * 0.0 + 1.0).sum((2, 3), keepdim=True)
