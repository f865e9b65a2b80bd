"""A small U-Net (Ronneberger et al., MICCAI 2015, arXiv:1505.04597) with scSE in its decoder.

The decoder is named as segmentation_models.pytorch's ``Unet(decoder_attention_type="scse")``
names it: ``decoder.blocks.i.conv1.{0,1}``, ``attention1.attention`` (on the upsampled map
concatenated with the skip), ``conv2.{0,1}``, ``attention2.attention``, and
``segmentation_head.0``; the scSE keys inside are smp's ``cSE.{1,3}``, ``sSE.0``. The encoder is a
small one of our own (smp's encoders are whole timm/torchvision backbones).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from attn_export.models.slots import AttnSlot, check_position


def _conv_relu(cin: int, cout: int) -> nn.Sequential:
    """smp's ``Conv2dReLU`` with batch norm: keys ``.0`` (conv, no bias) and ``.1`` (BN)."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class Attention(nn.Module):
    """smp's ``Attention`` wrapper: the block under ``.attention``, identity when there is none."""

    def __init__(self, block: nn.Module | None) -> None:
        super().__init__()
        self.attention = block if block is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention(x)


class DecoderBlock(nn.Module):
    def __init__(self, cin: int, skip: int, cout: int, slot: AttnSlot) -> None:
        super().__init__()
        self.conv1 = _conv_relu(cin + skip, cout)
        self.attention1 = Attention(slot.build(cin + skip))
        self.conv2 = _conv_relu(cout, cout)
        self.attention2 = Attention(slot.build(cout))
        self.has_skip = skip > 0

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        if skip is not None:
            x = self.attention1(torch.cat([x, skip], 1))
        return self.attention2(self.conv2(self.conv1(x)))


class Encoder(nn.Module):
    """Stride-2 conv stages; returns every stage's output, shallow first."""

    def __init__(self, widths: Sequence[int]) -> None:
        super().__init__()
        cins = (3, *widths[:-1])
        self.stages = nn.ModuleList(
            nn.Sequential(nn.Conv2d(a, b, 3, 2, 1, bias=False), nn.BatchNorm2d(b),
                          nn.ReLU(inplace=True), *_conv_relu(b, b))
            for a, b in zip(cins, widths))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


class Decoder(nn.Module):
    def __init__(self, enc: Sequence[int], dec: Sequence[int], slot: AttnSlot) -> None:
        super().__init__()
        skips = (*reversed(enc[:-1]), 0)
        cins = (enc[-1], *dec[:-1])
        self.blocks = nn.ModuleList(DecoderBlock(a, s, b, slot) for a, s, b in zip(cins, skips, dec))

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        skips = [*reversed(feats[:-1]), None]
        x = feats[-1]
        for block, skip in zip(self.blocks, skips):
            x = block(x, skip)
        return x


class UNet(nn.Module):
    def __init__(self, num_classes: int, enc: Sequence[int], dec: Sequence[int],
                 slot: AttnSlot) -> None:
        super().__init__()
        self.encoder = Encoder(enc)
        self.decoder = Decoder(enc, dec, slot)
        self.segmentation_head = nn.Sequential(nn.Conv2d(dec[-1], num_classes, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.segmentation_head(self.decoder(self.encoder(x)))


def unet_scse(
    attn: str | None = "scse",
    position: str = "decoder",
    num_classes: int = 1,
    encoder_channels: Sequence[int] = (16, 32, 64, 128),
    decoder_channels: Sequence[int] = (64, 32, 16, 16),
    attn_kwargs: Mapping[str, Any] | None = None,
    variant: str = "reference",
) -> UNet:
    """A U-Net whose decoder blocks hold ``attn`` (scSE by default) twice, smp style.

    Args:
        attn: registry block name (``scse`` as smp), or None for no attention.
        position: ``decoder`` (the only slot).
        num_classes: output channels of the segmentation head.
        encoder_channels: widths of the stride-2 encoder stages (H, W multiples of 2**stages).
        decoder_channels: widths of the decoder blocks, one per encoder stage.
        attn_kwargs: the block's keyword arguments (scSE's reduction is 16 as in smp).
        variant: the form of the blocks (``reference``: ``to_deploy`` swaps them).
    """
    from attn_export.errors import BlockConfigError

    check_position(position, ("decoder",), "unet_scse")
    if len(encoder_channels) != len(decoder_channels):
        raise BlockConfigError("unet_scse: give one decoder width per encoder stage, got "
                               f"{list(encoder_channels)} and {list(decoder_channels)}")
    slot = AttnSlot(attn, attn_kwargs or {}, variant)
    return UNet(num_classes, tuple(encoder_channels), tuple(decoder_channels), slot)
