"""The one plain dict from CLI name to block, with the metadata the CLI, docs and tests read.

Kept free of torch imports on purpose: ``attn-export --help`` and ``attn-export list`` must work on a
machine without torch, so the classes are named here and imported only when a block is built.
"""

from __future__ import annotations

import importlib

from attn_export.errors import UnknownBlockError
from attn_export.modules.block_info import (
    SHAPE_MODES,
    BlockInfo,
    input_size_kwargs,
    residual_attention_sizes,
)

__all__ = ["BLOCKS", "SHAPE_MODES", "BlockInfo", "block_class", "block_info", "list_blocks"]

BLOCKS: dict[str, BlockInfo] = {
    "se": BlockInfo(
        family="squeeze_excitation", reference="SEReference", deploy="SE", tier=1,
        paper="Squeeze-and-Excitation Networks (CVPR 2018, arXiv:1709.01507)",
        hazards=("H4", "H11"), sources=("timm", "cadene"),
        forbidden_ops=("GlobalAveragePool", "AveragePool", "Shape", "Gather"),
    ),
    "cbam": BlockInfo(
        family="cbam", reference="CBAMReference", deploy="CBAM", tier=1,
        paper="CBAM: Convolutional Block Attention Module (ECCV 2018, arXiv:1807.06521)",
        hazards=("H3", "H4", "H5"), sources=("official", "timm"),
        forbidden_ops=("MaxPool", "GlobalMaxPool", "AveragePool", "GlobalAveragePool",
                       "ArgMax", "Shape", "Gather"),
    ),
    "rcan_ca": BlockInfo(
        family="rcan", reference="RCANChannelAttentionReference", deploy="RCANChannelAttention",
        tier=1, paper="RCAN channel attention: Image Super-Resolution Using Very Deep Residual "
        "Channel Attention Networks (ECCV 2018, arXiv:1807.02758)",
        sources=("basicsr",),
        forbidden_ops=("GlobalAveragePool", "AveragePool", "Shape"),
    ),
    "gct": BlockInfo(
        family="gct", reference="GCTReference", deploy="GCT", tier=1,
        paper="Gated Channel Transformation for Visual Recognition (CVPR 2020, arXiv:1909.11519)",
        hazards=("F1",),
        forbidden_ops=("Shape", "Gather"),
    ),
    "srm": BlockInfo(
        family="srm", reference="SRMReference", deploy="SRM", tier=1,
        paper="SRM: A Style-based Recalibration Module for Convolutional Neural Networks "
        "(ICCV 2019, arXiv:1903.10829)",
        hazards=("H10", "H11"),
        forbidden_ops=("Shape", "Gather", "ReduceProd", "Expand", "Concat"),
    ),
    "scse": BlockInfo(
        family="scse", reference="SCSEReference", deploy="SCSE", tier=1,
        paper="Concurrent Spatial and Channel Squeeze & Excitation in Fully Convolutional "
        "Networks (MICCAI 2018, arXiv:1803.02579)",
        sources=("ai_med",),
        forbidden_ops=("GlobalAveragePool", "AveragePool", "Shape"),
    ),
    "lka": BlockInfo(
        family="van", reference="LKAReference", deploy="LKA", tier=1,
        paper="Large Kernel Attention: Visual Attention Network (CVMJ 2023, arXiv:2202.09741)",
        sources=("hf", "mmpretrain"),
        forbidden_ops=("Shape", "Identity"),
    ),
    "van": BlockInfo(
        family="van", reference="VANAttentionReference", deploy="VANAttention", tier=1,
        paper="VAN attention unit: Visual Attention Network (CVMJ 2023, arXiv:2202.09741)",
        sources=("hf", "mmpretrain"),
        forbidden_ops=("Shape", "Identity"),
    ),
    "bam": BlockInfo(
        family="bam", reference="BAMReference", deploy="BAM", tier=1,
        paper="BAM: Bottleneck Attention Module (BMVC 2018, arXiv:1807.06514)",
        hazards=("H4",),
        forbidden_ops=("AveragePool", "Expand", "Shape"),
    ),
    "triplet": BlockInfo(
        family="triplet", reference="TripletAttentionReference", deploy="TripletAttention",
        tier=1, paper="Rotate to Attend: Convolutional Triplet Attention Module "
        "(WACV 2021, arXiv:2010.03045)",
        hazards=("H5",), sources=("models",),
        forbidden_ops=("Transpose",),
    ),
    "sk": BlockInfo(
        family="selective_kernel", reference="SelectiveKernelReference", deploy="SelectiveKernel",
        tier=1, paper="Selective Kernel Networks (CVPR 2019, arXiv:1903.06586)",
        hazards=("H11",), sources=("external_attention",),
        forbidden_ops=("Shape", "Gather", "Concat"),
    ),
    "epsa": BlockInfo(
        family="epsa", reference="EPSAReference", deploy="EPSA", tier=1,
        paper="EPSANet: An Efficient Pyramid Squeeze Attention Block on Convolutional Neural "
        "Network (ACCV 2022, arXiv:2105.14447)",
        hazards=("H4", "H11"),
        forbidden_ops=("Shape", "Gather"),
    ),
    "eca": BlockInfo(
        family="eca", reference="ECAReference", deploy="ECA", tier=1,
        paper="ECA-Net: Efficient Channel Attention for Deep Convolutional Neural Networks "
        "(CVPR 2020, arXiv:1910.03151)",
        hazards=("H4", "H11"), sources=("timm",),
        forbidden_ops=("Transpose", "Squeeze", "Unsqueeze", "Expand", "Shape",
                       "GlobalAveragePool", "AveragePool"),
    ),
    "coordatt": BlockInfo(
        family="coordinate_attention", reference="CoordAttReference", deploy="CoordAtt", tier=1,
        paper="Coordinate Attention for Efficient Mobile Network Design "
        "(CVPR 2021, arXiv:2103.02907)",
        hazards=("H2",),
        forbidden_ops=("AveragePool", "GlobalAveragePool", "Transpose", "Concat",
                       "Split", "Slice", "Shape", "Gather"),
    ),
    "simam": BlockInfo(
        family="simam", reference="SimAMReference", deploy="SimAM", tier=1,
        paper="SimAM: A Simple, Parameter-Free Attention Module for Convolutional Neural "
        "Networks (ICML 2021)",
        hazards=("F1", "H11"),
        forbidden_ops=("Shape", "Gather", "Cast"),
    ),
    "strip_pooling": BlockInfo(
        family="strip_pooling", reference="StripPoolingReference", deploy="StripPooling",
        tier=2, paper="Strip Pooling: Rethinking Spatial Pooling for Scene Parsing "
        "(CVPR 2020, arXiv:2003.13328)",
        shape_modes=("none", "batch"), hazards=("H1", "H2"), needs_geometry=True,
        refusal="strip_pooling's 20x20 and 12x12 adaptive pools have bins that depend on H and "
        "W, so its graph is only right for the declared geometry: fix H and W with "
        "--input-shape and use --dynamic batch (or none)",
        forbidden_ops=("GatherND", "Gather", "Range", "Floor", "Transpose", "Expand"),
    ),
    "external": BlockInfo(
        family="external_attention", reference="ExternalAttentionReference",
        deploy="ExternalAttention", tier=1,
        paper="Beyond Self-attention: External Attention using Two Linear Layers for Visual "
        "Tasks (TPAMI 2022, arXiv:2105.02358)",
        hazards=("H11",),
        forbidden_ops=("Shape", "Reshape", "Softmax"),
    ),
    "mhsa": BlockInfo(
        family="self_attention", reference="MHSAReference", deploy="MHSA", tier=1,
        paper="Attention Is All You Need (NeurIPS 2017, arXiv:1706.03762), timm Attention2d form",
        hazards=("H8", "H11"), sources=("timm", "timm_vit", "torch"),
        forbidden_ops=("Einsum", "Attention"),
    ),
    "gc": BlockInfo(
        family="global_context", reference="ContextBlockReference", deploy="ContextBlock",
        tier=1,
        paper="GCNet: Non-local Networks Meet Squeeze-Excitation Networks and Beyond "
        "(ICCV Workshops 2019, arXiv:1904.11492)",
        hazards=("H9", "H11"),
        # H11 is arithmetic on sizes read from x (tests/modules/test_global_context.py checks no
        # Shape-derived Mul/Div/Add); the deploy graph's one view passes the batch through.
        forbidden_ops=("LayerNormalization", "Softmax"),
    ),
    # -- tier 2 and 3: the blocks with a harder export (geometry, quadratic memory, states) --
    "nam": BlockInfo(
        family="normalization_attention", reference="NAMReference", deploy="NAM", tier=2,
        paper="NAM: Normalization-based Attention Module (NeurIPS 2021 Workshop, "
        "arXiv:2111.12419)",
        forbidden_ops=("Transpose",),
    ),
    "sp_block": BlockInfo(
        family="strip_pooling", reference="SPBlockReference", deploy="SPBlock", tier=2,
        paper="Strip Pooling: Rethinking Spatial Pooling for Scene Parsing, strip pooling module "
        "(CVPR 2020, arXiv:2003.13328)",
        hazards=("H2",),
        forbidden_ops=("AveragePool", "GlobalAveragePool", "Expand", "Shape"),
    ),
    "pam": BlockInfo(
        family="dual_attention", reference="PAMReference", deploy="PAM", tier=2,
        paper="DANet position attention: Dual Attention Network for Scene Segmentation "
        "(CVPR 2019, arXiv:1809.02983)",
        hazards=("H11",), sources=("mmseg",),
        forbidden_ops=("Softmax", "Einsum"),
        memory="(H*W)^2 attention: 4*(H*W)^2 bytes per image in FP32 (64 MiB at 64x64, "
               "1 GiB at 128x128); maps above max_positions=16384 are refused "
               "(raise with --set max_positions=N)",
    ),
    "cam": BlockInfo(
        family="dual_attention", reference="CAMReference", deploy="CAM", tier=2,
        paper="DANet channel attention: Dual Attention Network for Scene Segmentation "
        "(CVPR 2019, arXiv:1809.02983)",
        hazards=("F1", "H5", "H11"), sources=("mmseg",),
        forbidden_ops=("ArgMax", "ReduceMax", "Expand"),
    ),
    "scconv": BlockInfo(
        family="self_calibrated_conv", reference="SCConvReference", deploy="SCConv", tier=2,
        paper="Improving Convolutional Networks with Self-Calibrated Convolutions (CVPR 2020)",
    ),
    "gsop": BlockInfo(
        family="global_second_order", reference="GSoPReference", deploy="GSoP", tier=2,
        paper="Global Second-order Pooling Convolutional Networks, channel attention "
        "(CVPR 2019, arXiv:1811.12006)",
        hazards=("F1", "H6", "H11"),
        forbidden_ops=("Tile", "Expand", "EyeLike", "ConstantOfShape"),
    ),
    "fca": BlockInfo(
        family="frequency_channel_attention", reference="FCAReference", deploy="FCA", tier=2,
        paper="FcaNet: Frequency Channel Attention Networks (ICCV 2021, arXiv:2012.11879)",
        shape_modes=("none", "batch"), hazards=("H1", "H11", "H12"), needs_geometry=True,
        refusal="fca pools the map to its 7x7 DCT grid with bins that depend on H and W, so its "
        "graph is only right for the declared geometry: fix H and W with --input-shape and use "
        "--dynamic batch (or none)",
        forbidden_ops=("GatherND", "Gather", "Range", "Floor", "Expand", "Shape"),
    ),
    "encnet": BlockInfo(
        family="context_encoding", reference="EncNetReference", deploy="EncNet", tier=2,
        paper="EncNet context encoding module: Context Encoding for Semantic Segmentation "
        "(CVPR 2018, arXiv:1803.08904)",
        hazards=("F1", "H7", "H11"), sources=("mmseg",),
        forbidden_ops=("Softmax", "Einsum"),
    ),
    "rga": BlockInfo(
        family="relation_aware_attention", reference="RGAReference", deploy="RGA", tier=2,
        paper="Relation-Aware Global Attention for Person Re-identification "
        "(CVPR 2020, arXiv:1904.02998)",
        shape_modes=("none", "batch"), hazards=("H11",), needs_geometry=True,
        refusal="rga's channel branch convolves over the H*W positions (in_spatial = H*W is "
        "fixed at construction), so its weights fit one geometry: fix H and W with "
        "--input-shape and use --dynamic batch (or none)",
        forbidden_ops=("Expand", "Squeeze", "Shape"),
        # the published in_spatial: the reference form is built for a geometry too
        reference_geometry=input_size_kwargs,
    ),
    "ema": BlockInfo(
        family="efficient_multiscale_attention", reference="EMAReference", deploy="EMA", tier=2,
        paper="Efficient Multi-Scale Attention Module with Cross-Spatial Learning "
        "(ICASSP 2023, arXiv:2305.13563)",
        hazards=("H2", "H11"),
        forbidden_ops=("AveragePool", "GlobalAveragePool", "Transpose", "Concat",
                       "Split", "Shape", "Gather"),
    ),
    "shuffle_attention": BlockInfo(
        family="shuffle_attention", reference="ShuffleAttentionReference",
        deploy="ShuffleAttention", tier=2,
        paper="SA-Net: Shuffle Attention for Deep Convolutional Neural Networks "
        "(ICASSP 2021, arXiv:2102.00240)",
        hazards=("H4", "H11"), default_channels=128,
        forbidden_ops=("Shape", "Transpose", "Reshape", "Concat", "Slice",
                       "GlobalAveragePool", "AveragePool"),
    ),
    "criss_cross": BlockInfo(
        family="criss_cross", reference="CrissCrossAttentionReference",
        deploy="CrissCrossAttention", tier=2,
        paper="CCNet: Criss-Cross Attention for Semantic Segmentation "
        "(ICCV 2019, arXiv:1811.11721)",
        hazards=("H11", "H12"),
        forbidden_ops=("Shape", "Reshape", "Concat", "Gather", "Expand", "Tile",
                       "ConstantOfShape", "Softmax", "Einsum"),
        memory="N*H*W*(H+W) attention weights; refused above max_attention_mb=1024",
    ),
    "psa_p": BlockInfo(
        family="polarized_self_attention", reference="PSAPReference", deploy="PSAP", tier=2,
        paper="Polarized Self-Attention: Towards High-quality Pixel-wise Regression, parallel "
        "(Neurocomputing 2022, arXiv:2107.00782)",
        hazards=("H4", "H8", "H11", "F1"),
        forbidden_ops=("Shape", "Reshape", "Transpose", "GlobalAveragePool",
                       "AveragePool", "Einsum", "Softmax", "Gather", "MatMul"),
        memory="linear in H*W: no HW x HW matrix, (N, C/2, 1) + (N, 1, H*W) weights",
    ),
    "psa_s": BlockInfo(
        family="polarized_self_attention", reference="PSASReference", deploy="PSAS", tier=2,
        paper="Polarized Self-Attention: Towards High-quality Pixel-wise Regression, sequential "
        "(Neurocomputing 2022, arXiv:2107.00782)",
        hazards=("H4", "H8", "H9", "H11", "F1"),
        forbidden_ops=("Shape", "Reshape", "Transpose", "GlobalAveragePool",
                       "AveragePool", "Einsum", "Softmax", "Gather", "MatMul"),
        memory="linear in H*W: no HW x HW matrix, (N, C/2, 1) + (N, 1, H*W) weights",
    ),
    "bilinear": BlockInfo(
        family="bilinear_attention", reference="BilinearAttentionReference",
        deploy="BilinearAttention", tier=3,
        paper="Bilinear Attention Networks for Person Retrieval (ICCV 2019)",
        hazards=("H4", "H11"),
        forbidden_ops=("Shape", "Reshape", "Transpose", "AveragePool",
                       "GlobalAveragePool", "MatMul", "Concat"),
    ),
    "soca": BlockInfo(
        family="second_order_channel_attention", reference="SOCAReference", deploy="SOCA",
        tier=3, paper="Second-order Attention Network for Single Image Super-Resolution "
        "(CVPR 2019)",
        hazards=("H6", "H12", "F1"),
        forbidden_ops=("Shape", "Gather", "ConstantOfShape", "Expand", "Tile", "If",
                       "Loop", "Range", "Where"),
        memory="N*C*C covariance (+ N*H*C*C partial products); maps >= 1000 px "
               "are refused (published crop)",
    ),
    "residual_attention": BlockInfo(
        family="residual_attention", reference="ResidualAttentionReference",
        deploy="ResidualAttention", tier=2,
        paper="Residual Attention Network for Image Classification (CVPR 2017, arXiv:1704.06904)",
        default_channels=16,
        forbidden_ops=("Upsample", "AveragePool", "GlobalAveragePool"),
        reference_geometry=residual_attention_sizes,
    ),
    "dia": BlockInfo(
        family="dense_implicit_attention", reference="DIAReference", deploy="DIA", tier=3,
        paper="DIANet: Dense-and-Implicit Attention Network (AAAI 2020, arXiv:1905.10671)",
        hazards=("H4", "H11", "H12"), sources=("stage",),
        forbidden_ops=("GlobalAveragePool", "AveragePool", "Shape", "Split",
                       "Gather", "Concat"),
        inputs=("input", "h", "c"), outputs=("output", "h_out", "c_out"),
    ),
    "sca": BlockInfo(
        family="sca_cnn", reference="SCAReference", deploy="SCA", tier=3,
        paper="SCA-CNN: Spatial and Channel-wise Attention in Convolutional Networks for Image "
        "Captioning (CVPR 2017, arXiv:1611.05594); the paper's equations, no PyTorch original",
        hazards=("H11", "F1"),
        forbidden_ops=("Shape", "Transpose", "Gather", "Concat"),
        inputs=("input", "state"), outputs=("output",),
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
