"""Building blocks by name, and swapping reference blocks for their deploy twins."""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from attn_export.errors import BlockConfigError
from attn_export.modules.registry import BLOCKS, block_class, block_info


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


def _reference_to_name() -> dict[type, str]:
    return {block_class(name, "reference"): name for name in BLOCKS}


def deploy_twin(block: nn.Module, name: str, **extra: Any) -> nn.Module:
    """The deploy form of a reference ``block`` of registry entry ``name``, weights copied."""
    args = dict(block.init_args)
    if block_info(name).needs_geometry:
        args.update(extra)
    twin = block_class(name, "deploy")(**args)
    twin.load_state_dict(block.state_dict(), strict=True)
    return twin.train(block.training)


def to_deploy(model: nn.Module, **geometry: Any) -> nn.Module:
    """Swap every reference block inside ``model`` for its deploy twin, in place.

    Args:
        model: any module; a reference block itself is accepted and its twin returned.
        **geometry: ``input_size=(H, W)`` for blocks whose deploy form needs the export geometry.

    Returns:
        ``model`` with the swaps done (or the twin, when ``model`` is itself a reference block).
    """
    ref_names = _reference_to_name()
    if type(model) in ref_names:
        return deploy_twin(model, ref_names[type(model)], **geometry)
    for child_name, child in model.named_children():
        if type(child) in ref_names:
            setattr(model, child_name, deploy_twin(child, ref_names[type(child)], **geometry))
        else:
            to_deploy(child, **geometry)
    return model
