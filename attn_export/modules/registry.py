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
        hazards=("H4", "H11"), sources=("timm", "cadene"),
        extra={"forbidden_ops": ("GlobalAveragePool", "AveragePool", "Shape", "Gather")},
    ),
    "cbam": BlockInfo(
        family="cbam", reference="CBAMReference", deploy="CBAM", tier=1,
        paper="CBAM: Convolutional Block Attention Module (ECCV 2018, arXiv:1807.06521)",
        hazards=("H3", "H4", "H5"), sources=("official", "timm"),
        extra={"forbidden_ops": ("MaxPool", "GlobalMaxPool", "AveragePool", "GlobalAveragePool",
                                 "ArgMax", "Shape", "Gather")},
    ),
    "rcan_ca": BlockInfo(
        family="rcan", reference="RCANChannelAttentionReference", deploy="RCANChannelAttention",
        tier=1, paper="RCAN channel attention: Image Super-Resolution Using Very Deep Residual "
        "Channel Attention Networks (ECCV 2018, arXiv:1807.02758)",
        sources=("basicsr",),
        extra={"forbidden_ops": ("GlobalAveragePool", "AveragePool", "Shape")},
    ),
    "gct": BlockInfo(
        family="gct", reference="GCTReference", deploy="GCT", tier=1,
        paper="Gated Channel Transformation for Visual Recognition (CVPR 2020, arXiv:1909.11519)",
        hazards=("F1",),
        extra={"forbidden_ops": ("Shape", "Gather")},
    ),
    "srm": BlockInfo(
        family="srm", reference="SRMReference", deploy="SRM", tier=1,
        paper="SRM: A Style-based Recalibration Module for Convolutional Neural Networks "
        "(ICCV 2019, arXiv:1903.10829)",
        hazards=("H10", "H11"),
        extra={"forbidden_ops": ("Shape", "Gather", "ReduceProd", "Expand", "Concat")},
    ),
    "scse": BlockInfo(
        family="scse", reference="SCSEReference", deploy="SCSE", tier=1,
        paper="Concurrent Spatial and Channel Squeeze & Excitation in Fully Convolutional "
        "Networks (MICCAI 2018, arXiv:1803.02579)",
        sources=("ai_med",),
        extra={"forbidden_ops": ("GlobalAveragePool", "AveragePool", "Shape")},
    ),
    "lka": BlockInfo(
        family="van", reference="LKAReference", deploy="LKA", tier=1,
        paper="Large Kernel Attention: Visual Attention Network (CVMJ 2023, arXiv:2202.09741)",
        sources=("hf", "mmpretrain"),
        extra={"forbidden_ops": ("Shape", "Identity")},
    ),
    "van": BlockInfo(
        family="van", reference="VANAttentionReference", deploy="VANAttention", tier=1,
        paper="VAN attention unit: Visual Attention Network (CVMJ 2023, arXiv:2202.09741)",
        sources=("hf", "mmpretrain"),
        extra={"forbidden_ops": ("Shape", "Identity")},
    ),
    "bam": BlockInfo(
        family="bam", reference="BAMReference", deploy="BAM", tier=1,
        paper="BAM: Bottleneck Attention Module (BMVC 2018, arXiv:1807.06514)",
        hazards=("H4",),
        extra={"forbidden_ops": ("AveragePool", "Expand", "Shape")},
    ),
    "triplet": BlockInfo(
        family="triplet", reference="TripletAttentionReference", deploy="TripletAttention",
        tier=1, paper="Rotate to Attend: Convolutional Triplet Attention Module "
        "(WACV 2021, arXiv:2010.03045)",
        hazards=("H5",), sources=("models",),
        extra={"forbidden_ops": ("Transpose",)},
    ),
    "sk": BlockInfo(
        family="selective_kernel", reference="SelectiveKernelReference", deploy="SelectiveKernel",
        tier=1, paper="Selective Kernel Networks (CVPR 2019, arXiv:1903.06586)",
        hazards=("H11",), sources=("external_attention",),
        extra={"forbidden_ops": ("Shape", "Gather", "Concat")},
    ),
    "epsa": BlockInfo(
        family="epsa", reference="EPSAReference", deploy="EPSA", tier=1,
        paper="EPSANet: An Efficient Pyramid Squeeze Attention Block on Convolutional Neural "
        "Network (ACCV 2022, arXiv:2105.14447)",
        hazards=("H4", "H11"),
        extra={"forbidden_ops": ("Shape", "Gather")},
    ),
    "eca": BlockInfo(
        family="eca", reference="ECAReference", deploy="ECA", tier=1,
        paper="ECA-Net: Efficient Channel Attention for Deep Convolutional Neural Networks "
        "(CVPR 2020, arXiv:1910.03151)",
        hazards=("H4", "H11"), sources=("timm",),
        extra={"forbidden_ops": ("Transpose", "Squeeze", "Unsqueeze", "Expand", "Shape",
                                 "GlobalAveragePool", "AveragePool")},
    ),
    "coordatt": BlockInfo(
        family="coordinate_attention", reference="CoordAttReference", deploy="CoordAtt", tier=1,
        paper="Coordinate Attention for Efficient Mobile Network Design "
        "(CVPR 2021, arXiv:2103.02907)",
        hazards=("H2",),
        extra={"forbidden_ops": ("AveragePool", "GlobalAveragePool", "Transpose", "Concat",
                                 "Split", "Slice", "Shape", "Gather")},
    ),
    "simam": BlockInfo(
        family="simam", reference="SimAMReference", deploy="SimAM", tier=1,
        paper="SimAM: A Simple, Parameter-Free Attention Module for Convolutional Neural "
        "Networks (ICML 2021)",
        hazards=("F1", "H11"),
        extra={"forbidden_ops": ("Shape", "Gather", "Cast")},
    ),
    "strip_pooling": BlockInfo(
        family="strip_pooling", reference="StripPoolingReference", deploy="StripPooling",
        tier=2, paper="Strip Pooling: Rethinking Spatial Pooling for Scene Parsing "
        "(CVPR 2020, arXiv:2003.13328)",
        shape_modes=("none", "batch"), hazards=("H1", "H2"), needs_geometry=True,
        refusal="strip_pooling's 20x20 and 12x12 adaptive pools have bins that depend on H and "
        "W, so its graph is only right for the declared geometry: fix H and W with "
        "--input-shape and use --dynamic batch (or none)",
        extra={"forbidden_ops": ("GatherND", "Gather", "Range", "Floor", "Transpose", "Expand")},
    ),
    "external": BlockInfo(
        family="external_attention", reference="ExternalAttentionReference",
        deploy="ExternalAttention", tier=1,
        paper="Beyond Self-attention: External Attention using Two Linear Layers for Visual "
        "Tasks (TPAMI 2022, arXiv:2105.02358)",
        hazards=("H11",),
        extra={"forbidden_ops": ("Shape", "Reshape", "Softmax")},
    ),
    "mhsa": BlockInfo(
        family="self_attention", reference="MHSAReference", deploy="MHSA", tier=1,
        paper="Attention Is All You Need (NeurIPS 2017, arXiv:1706.03762), timm Attention2d form",
        hazards=("H8", "H11"), sources=("timm", "timm_vit", "torch"),
        extra={"forbidden_ops": ("Einsum", "Attention")},
    ),
    "gc": BlockInfo(
        family="global_context", reference="ContextBlockReference", deploy="ContextBlock",
        tier=1,
        paper="GCNet: Non-local Networks Meet Squeeze-Excitation Networks and Beyond "
        "(ICCV Workshops 2019, arXiv:1904.11492)",
        hazards=("H9", "H11"),
        extra={"forbidden_ops": ("LayerNormalization", "Shape", "Reshape", "MatMul", "Softmax")},
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
        import difflib

        valid = ", ".join(list_blocks())
        near = difflib.get_close_matches(str(name), list_blocks(), n=1, cutoff=0.6)
        guess = f"did you mean {near[0]}? " if near else ""
        raise UnknownBlockError(
            f"unknown block {name!r}; {guess}expected one of: {valid} (see `attn-export list`)"
        ) from None


def block_class(name: str, variant: str = "deploy") -> type:
    """Import and return the reference or deploy class of ``name``."""
    info = block_info(name)
    if variant not in ("deploy", "reference"):
        from attn_export.errors import BlockConfigError

        raise BlockConfigError(f"variant must be 'deploy' or 'reference', got {variant!r}")
    module = importlib.import_module(f"attn_export.modules.{info.family}")
    return getattr(module, info.deploy if variant == "deploy" else info.reference)
