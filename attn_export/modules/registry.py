"""The one plain dict from CLI name to block, with the metadata the CLI, docs and tests read.

Kept free of torch imports on purpose: ``attn-export --help`` and ``attn-export list`` must work on a
machine without torch, so the classes are named here and imported only when a block is built.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from attn_export.errors import UnknownBlockError

SHAPE_MODES = ("none", "batch", "all")
"""``none``: every dim fixed; ``batch``: dynamic N; ``all``: dynamic N, H and W."""


@dataclass(frozen=True)
class BlockInfo:
    """What the tooling must know about a block without importing it.

    Attributes:
        family: module under ``attn_export.modules`` that holds both forms.
        reference: class name of the form faithful to the published code.
        deploy: class name of the export-safe twin (same ``state_dict`` keys).
        tier: catalog tier from BLOCKS.md.
        paper: short citation shown by ``attn-export list``.
        shape_modes: the shape modes the deploy form supports.
        hazards: BLOCKS.md hazard ids the deploy form handles (H1..H12, F1, F2).
        sources: checkpoint layouts ``convert_state_dict`` accepts besides ``reference``.
        needs_geometry: the deploy form must be told the input H, W (``input_size=(H, W)``).
        default_channels: channel count used when the user gives none.
        refusal: why the missing shape modes are refused, and what to do instead.
    """

    family: str
    reference: str
    deploy: str
    tier: int
    paper: str
    shape_modes: tuple[str, ...] = SHAPE_MODES
    hazards: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    needs_geometry: bool = False
    default_channels: int = 64
    refusal: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


BLOCKS: dict[str, BlockInfo] = {
    "se": BlockInfo(
        family="squeeze_excitation", reference="SEReference", deploy="SE", tier=1,
        paper="Squeeze-and-Excitation Networks (CVPR 2018, arXiv:1709.01507)",
        sources=("timm", "cadene"),
    ),
    "cbam": BlockInfo(
        family="cbam", reference="CBAMReference", deploy="CBAM", tier=1,
        paper="CBAM: Convolutional Block Attention Module (ECCV 2018, arXiv:1807.06521)",
        hazards=("H3", "H4", "H5"), sources=("official", "timm"),
    ),
}


def list_blocks(tier: int | None = None) -> list[str]:
    """Registered block names, sorted by tier then name."""
    names = [n for n, info in BLOCKS.items() if tier is None or info.tier == tier]
    return sorted(names, key=lambda n: (BLOCKS[n].tier, n))


def block_info(name: str) -> BlockInfo:
    """Metadata of ``name``; an unknown name raises with the valid ones listed."""
    try:
        return BLOCKS[name]
    except KeyError:
        valid = ", ".join(list_blocks())
        raise UnknownBlockError(
            f"unknown block {name!r}; expected one of: {valid} (see `attn-export list`)"
        ) from None


def block_class(name: str, variant: str = "deploy") -> type:
    """Import and return the reference or deploy class of ``name``."""
    info = block_info(name)
    if variant not in ("deploy", "reference"):
        from attn_export.errors import BlockConfigError

        raise BlockConfigError(f"variant must be 'deploy' or 'reference', got {variant!r}")
    module = importlib.import_module(f"attn_export.modules.{info.family}")
    return getattr(module, info.deploy if variant == "deploy" else info.reference)
