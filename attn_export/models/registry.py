"""The one plain dict from network name to its card, read by the CLI, the docs table and the tests.

Torch-free on purpose, like the block registry: ``attn-export model list`` and ``--help`` must work
without torch, so a card names its builder by module and function and imports it only to build.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from attn_export.errors import AttnExportError


class UnknownModelError(AttnExportError, KeyError):
    """A network name that is not in the registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class ModelCard:
    """What the tooling must know about a network without building it.

    Attributes:
        builder: ``module:function`` under ``attn_export.models`` that builds it.
        task: classify, detect or segment (decides the accuracy proxy of INT8 reports).
        attn: the block in its slots by default (``None``: an empty slot the user fills with
            ``attn=``); ``fixed`` cards (official layouts) refuse another block.
        slot: where the blocks sit, in words (the table in docs/networks.md shows it).
        positions: the ``position=`` values the builder accepts.
        input_size: the H, W the network was published at.
        test_size: a small H, W at which it still exports and validates (tests, examples).
        params: exact parameter count of what we build at the card's default classes.
        official_params: the official definition's count where ours differs by design (an
            eval-mode BatchNorm folded into a conv); the tests derive it from the definition.
        size_multiple: H and W must be multiples of this (skip concatenations after strides).
        layout: the recorded checkpoint layout (``attn_export/models/layouts/LAYOUT.json``).
        sources: checkpoint layouts ``--source`` accepts, besides ``ours``.
        checkpoint: where the published weights live (download-only; never fetched here).
        notes: export notes shown by ``attn-export model list --json`` and docs/networks.md.
        fixed: the blocks and their arguments are part of the published layout.
        kwargs: builder keyword arguments of this card.
    """

    builder: str
    task: str
    slot: str
    attn: str | None = None
    positions: tuple[str, ...] = ()
    input_size: tuple[int, int] = (224, 224)
    test_size: tuple[int, int] = (64, 64)
    params: int | None = None
    official_params: int | None = None
    size_multiple: int = 1
    layout: str | None = None
    sources: tuple[str, ...] = ()
    checkpoint: str = ""
    notes: str = ""
    fixed: bool = False
    kwargs: dict[str, Any] = field(default_factory=dict)


RESNET_POSITIONS = ("block", "stage", "conv2")
_RESNET_SLOT = ("any block: after the last BN of each residual block (block), after each stage "
                "(stage), or inside conv2 (conv2)")

MODELS: dict[str, ModelCard] = {
    "resnet18": ModelCard(
        builder="resnet:resnet", task="classify", slot=_RESNET_SLOT, positions=RESNET_POSITIONS,
        params=11_689_512, layout="torchvision_resnet18", sources=("torchvision",),
        checkpoint="torchvision ResNet18_Weights (download.pytorch.org)",
        notes="torchvision key layout; attention keys under layerN.i.attn.*",
        kwargs={"depth": 18}),
    "resnet34": ModelCard(
        builder="resnet:resnet", task="classify", slot=_RESNET_SLOT, positions=RESNET_POSITIONS,
        params=21_797_672, layout="torchvision_resnet34", sources=("torchvision",),
        checkpoint="torchvision ResNet34_Weights (download.pytorch.org)",
        notes="torchvision key layout; attention keys under layerN.i.attn.*",
        kwargs={"depth": 34}),
    "resnet50": ModelCard(
        builder="resnet:resnet", task="classify", slot=_RESNET_SLOT, positions=RESNET_POSITIONS,
        params=25_557_032, layout="torchvision_resnet50", sources=("torchvision",),
        checkpoint="torchvision ResNet50_Weights (download.pytorch.org)",
        notes="torchvision key layout (ResNet v1.5: stride on conv2); attention keys under "
        "layerN.i.attn.*", kwargs={"depth": 50}),
    "se_resnet50": ModelCard(
        builder="resnet:resnet", task="classify", attn="se", slot="se after bn3 of every "
        "bottleneck (timm layerN.i.se)", params=28_088_024, layout="timm_seresnet50",
        sources=("timm",), fixed=True,
        checkpoint="timm seresnet50.a1_in1k / ra2_in1k (HF Hub timm/)",
        notes="timm SEModule: biased 1x1 convs fc1/fc2, r=16; loads as our se(bias=True)",
        kwargs={"depth": 50, "attn_name": "se", "attn_kwargs": {"reduction": 16, "bias": True}}),
    "cbam_resnet50": ModelCard(
        builder="resnet:resnet", task="classify", attn="cbam", slot="cbam after bn3 of every "
        "bottleneck (Jongchan layerN.i.cbam)", params=28_089_608, official_params=28_089_624,
        layout="jongchan_cbam_resnet50", sources=("official",), fixed=True,
        checkpoint="Jongchan/attention-module RESNET50_CBAM_new_name_wrap.pth (Google Drive)",
        notes="official MLP is Linear with bias (-> 1x1 convs), spatial gate conv+BN(eps 1e-5) "
        "folded (16 fewer parameters than the official 28,089,624, same function), input "
        "[max, mean] swapped to our [mean, max]; not Ultralytics' CBAM (one biased "
        "1x1 conv, no MLP)",
        kwargs={"depth": 50, "attn_name": "cbam",
                "attn_kwargs": {"ratio": 16, "mlp_bias": True, "spatial_bias": True}}),
    "eca_resnet50": ModelCard(
        builder="resnet:resnet", task="classify", attn="eca", slot="eca after bn3 of every "
        "bottleneck (BangguWu layerN.i.eca), k = 3, 5, 5, 7 per stage", params=25_557_112,
        layout="bangguwu_eca_resnet50", sources=("official",), fixed=True,
        checkpoint="BangguWu/ECANet eca_resnet50_k3557.pth.tar (Google Drive / Baidu Pan)",
        notes="k is read from each conv.weight (BangguWu/ECANet#46); the README's 24.37M is a "
        "thop artefact, the exact count is 25,557,112",
        kwargs={"depth": 50, "attn_name": "eca", "stage_kwargs": [
            {"k_size": 3}, {"k_size": 5}, {"k_size": 5}, {"k_size": 7}]}),
    "simam_resnet50": ModelCard(
        builder="resnet:resnet", task="classify", attn="simam", slot="simam inside conv2 of "
        "every bottleneck (ZjjConan layerN.i.conv2.1)", positions=("conv2",),
        params=25_557_032, layout="zjjconan_simam_resnet50", sources=("official",), fixed=True,
        checkpoint="ZjjConan/SimAM imagenet-resnet50-simam-param0.1 (Google Drive / Baidu Pan)",
        notes="parameter-free; the ImageNet release was trained with e_lambda=0.1 (its folder "
        "name: simam-param0.1); FP16-safe deploy form (F1)",
        kwargs={"depth": 50, "position": "conv2", "attn_kwargs": {"e_lambda": 0.1}}),
    "mobilenetv2": ModelCard(
        builder="mobilenetv2:mobilenetv2", task="classify", slot="any block after the "
        "depthwise conv of each expanding inverted residual (features.k.conv.6)",
        positions=("dw",), params=3_504_872, layout="torchvision_mobilenet_v2",
        sources=("torchvision", "houqb"),
        checkpoint="torchvision MobileNet_V2_Weights (download.pytorch.org)",
        notes="houqb/mbv2_ca.py's flat layout (conv.0..8, final conv.*); torchvision's nested "
        "layout converts with --source torchvision"),
    "mobilenetv2_ca": ModelCard(
        builder="mobilenetv2:mobilenetv2", task="classify", attn="coordatt",
        slot="coordatt after the depthwise conv of each expanding inverted residual "
        "(features.k.conv.6, mip = max(8, C // 32))", positions=("dw",), params=3_950_648,
        layout="houqb_mbv2_ca", sources=("houqb",), fixed=True,
        checkpoint="houqb/CoordAttention mbv2_ca.pth (committed in the repository)",
        notes="gates conv2/conv3 -> our conv_h/conv_w; AdaptiveAvgPool2d((None, 1)) replaced by "
        "means (houqb/CoordAttention#6)", kwargs={"attn_kwargs": {"reduction": 32}}),
    "tiny_detector": ModelCard(
        builder="detector:tiny_detector", task="detect", slot="any block after each neck stage "
        "(neck.attn3/4/5 at strides 8, 16, 32)", positions=("neck",), input_size=(640, 640),
        test_size=(320, 320), params=2_671_084, size_multiple=32,
        notes="our own YOLO-style backbone + PAN neck + anchor-free head (no AGPL code); one "
        "output (N, 4 + classes, anchors) as YOLO exports it; exports at 320 and 640"),
    "unet_scse": ModelCard(
        builder="unet:unet_scse", task="segment", attn="scse", slot="scse twice in each decoder "
        "block (decoder.blocks.i.attention1/2.attention, as segmentation_models.pytorch names it)",
        positions=("decoder",), input_size=(256, 256), test_size=(64, 64), params=500_583,
        size_multiple=16,
        notes="small encoder of our own; decoder keys as smp Unet(decoder_attention_type='scse')"),
}


def list_models() -> list[str]:
    """Registered network names, sorted."""
    return sorted(MODELS)


def model_card(name: str) -> ModelCard:
    """The card of ``name``; an unknown name raises with the valid ones listed."""
    try:
        return MODELS[name]
    except KeyError:
        raise UnknownModelError(
            f"unknown network {name!r}; expected one of: {', '.join(list_models())} "
            "(see `attn-export model list`), or FILE.py:FUNCTION for your own"
        ) from None


def model_builder(name: str):
    """Import and return the builder function of ``name``."""
    module, func = model_card(name).builder.split(":")
    return getattr(importlib.import_module(f"attn_export.models.{module}"), func)
