"""MobileNetV2 (Sandler et al., CVPR 2018, arXiv:1801.04381) with an attention slot, in the layout of
houqb/CoordAttention ``mbv2_ca.py`` (Hou et al., CVPR 2021, arXiv:2103.02907).

That layout keeps each inverted residual flat: ``features.k.conv.{0,1,3,4}`` for the first
(expand ratio 1) block, ``conv.{0,1,3,4,6,7,8}`` for the expanding ones with the block at index 6,
after the depthwise conv and its ReLU6; then ``conv.{0,1}`` (1x1 to 1280) and ``classifier.1``.
With no block, index 6 is an ``Identity`` so the keys do not move (torchvision's nested layout
converts to this one by renames: ``--source torchvision``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from attn_export.models.slots import AttnSlot, check_position

CONFIG = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
          (6, 160, 3, 2), (6, 320, 1, 1))
"""(expand ratio t, output channels c, repeats n, first stride s), as published."""


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True):
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
              nn.BatchNorm2d(cout)]
    return layers + [nn.ReLU6(inplace=True)] if act else layers


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, t: int, block: nn.Module | None) -> None:
        super().__init__()
        hidden = round(cin * t)
        self.identity = stride == 1 and cin == cout
        if t == 1:
            layers = [*_conv_bn(hidden, hidden, 3, stride, hidden), *_conv_bn(hidden, cout, 1,
                                                                               act=False)]
        else:
            layers = [*_conv_bn(cin, hidden, 1), *_conv_bn(hidden, hidden, 3, stride, hidden),
                      block if block is not None else nn.Identity(),
                      *_conv_bn(hidden, cout, 1, act=False)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return x + y if self.identity else y


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int, slot: AttnSlot) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Sequential(*_conv_bn(3, 32, 3, 2))]
        cin = 32
        for t, c, n, s in CONFIG:
            for i in range(n):
                block = slot.build(round(cin * t)) if t != 1 else None
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t, block))
                cin = c
        self.features = nn.Sequential(*layers)
        self.conv = nn.Sequential(*_conv_bn(cin, 1280, 1))
        self.classifier = nn.Sequential(nn.Dropout(0.1), nn.Linear(1280, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(self.features(x))
        return self.classifier(x.mean((2, 3)))


def mobilenetv2(
    attn: str | None = None,
    position: str = "dw",
    num_classes: int = 1000,
    attn_kwargs: Mapping[str, Any] | None = None,
    variant: str = "reference",
) -> MobileNetV2:
    """MobileNetV2 1.0 holding block ``attn`` after the depthwise conv of each expanding block.

    Args:
        attn: registry block name, or None for the plain network.
        position: ``dw`` (the only slot: where Coordinate Attention's official code puts it).
        num_classes: width of ``classifier.1``.
        attn_kwargs: the block's keyword arguments (``reduction=32`` gives mbv2_ca's ``mip``).
        variant: the form of the blocks (``reference``: ``to_deploy`` swaps them).
    """
    check_position(position, ("dw",), "mobilenetv2")
    return MobileNetV2(num_classes, AttnSlot(attn, attn_kwargs or {}, variant))
