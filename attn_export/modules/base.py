"""Common base of every block: records the constructor arguments so a twin can be rebuilt."""

from __future__ import annotations

from typing import Any

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
    hidden = int(channels // reduction)
    if hidden < minimum:
        raise BlockConfigError(
            f"{block}: channels={channels} with reduction={reduction} leaves a bottleneck of "
            f"{hidden} channels (needs >= {minimum}); use more channels or a smaller reduction"
        )
    return hidden
