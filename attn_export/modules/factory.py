"""Building blocks by name, with the constructor contract checked before the block is built."""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from attn_export.errors import BlockConfigError
from attn_export.modules.registry import block_class


def create_block(name: str, channels: int, variant: str = "deploy", **kwargs: Any) -> nn.Module:
    """Build block ``name`` for ``channels`` input channels.

    Args:
        name: registry name (``attn-export list``).
        channels: input (and output) channel count.
        variant: ``"deploy"`` (export-safe) or ``"reference"`` (faithful to the published code).
        **kwargs: the block's keyword arguments, named as in BLOCKS.md; unknown names raise.
    """
    cls = block_class(name, variant)
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self",)]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise BlockConfigError(
            f"{name}: unknown argument(s) {', '.join(unknown)}; "
            f"{cls.__name__} takes: {', '.join(accepted)}"
        )
    if not isinstance(channels, int) or isinstance(channels, bool) or channels < 1:
        raise BlockConfigError(f"{name}: channels must be a positive integer, got {channels!r}")
    return cls(channels, **kwargs)
