"""Attention slots: the one way every host network builds the block it holds.

Hosts build the *reference* form of a catalog block by default, so that ``to_deploy`` swaps each
one for its deploy twin and proves the swap on the network's own activations (the report then
names every swapped block and the difference it made).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from attn_export.errors import BlockConfigError


@dataclass(frozen=True)
class AttnSlot:
    """Which block fills a host's slots and how.

    Attributes:
        name: registry block name, or None for an empty slot (the plain host).
        kwargs: block keyword arguments for every slot.
        variant: ``reference`` (default: to_deploy then swaps it) or ``deploy``.
        stages: per-stage mask (mmdet's ``stages=(False, True, True, True)`` idiom).
        stage_kwargs: per-stage keyword arguments merged over ``kwargs`` (ECA's k per stage).
    """

    name: str | None = None
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    variant: str = "reference"
    stages: Sequence[bool] | None = None
    stage_kwargs: Sequence[Mapping[str, Any]] | None = None

    def build(self, channels: int, stage: int = 0) -> nn.Module | None:
        """The block for a slot of ``channels`` channels in ``stage`` (0-based), or None."""
        if self.name is None or (self.stages is not None and not self.stages[stage]):
            return None
        from attn_export.modules.factory import create_block
        from attn_export.modules.registry import block_info

        if block_info(self.name).needs_geometry:
            raise BlockConfigError(
                f"{self.name} needs the export H, W of its own input, which differs per slot in a "
                "network; put it in a network of your own and pass input_size to to_deploy"
            )
        kwargs = dict(self.kwargs)
        if self.stage_kwargs is not None:
            kwargs.update(self.stage_kwargs[stage])
        return create_block(self.name, channels, self.variant, **kwargs)


def check_position(position: str, allowed: Sequence[str], network: str) -> None:
    if position not in allowed:
        raise BlockConfigError(
            f"{network}: position {position!r} is not a slot of this network; expected one of "
            f"{', '.join(allowed)}"
        )


def check_stages(stages: Sequence[bool] | None, count: int, network: str) -> None:
    if stages is not None and len(stages) != count:
        raise BlockConfigError(
            f"{network}: stages must have {count} entries (one per stage), got {list(stages)}"
        )
