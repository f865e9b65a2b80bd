"""ResNet-18/34/50 (He et al., CVPR 2016, arXiv:1512.03385) with an attention slot.

The backbone keys are torchvision's (``conv1``, ``bn1``, ``layerN.i.{conv,bn}K``,
``downsample.{0,1}``, ``fc``), and the stride of a bottleneck sits on its 3x3 conv (v1.5), as in
torchvision, timm, Jongchan/attention-module, BangguWu/ECANet and ZjjConan/SimAM, so their
checkpoints map by key renames only. Where the block goes follows the official codes:

- ``position="block"``: after the last BN of every residual block, before the add (timm's
  ``self.se``, Jongchan's ``self.cbam``, ECANet's ``self.eca``); the attribute is ``attn_name``.
- ``position="conv2"``: ``conv2 = Sequential(conv2, block)`` (SimAM's official ResNet, keys
  ``conv2.0.*``).
- ``position="stage"``: once after each stage (``stage_attn.layerN``), mmdet-plugin style.

The pooling before ``fc`` is a mean over H, W (export-safe, equal to ``AdaptiveAvgPool2d(1)``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from attn_export.errors import BlockConfigError
from attn_export.models.registry import RESNET_POSITIONS
from attn_export.models.slots import AttnSlot, check_position, check_stages

DEPTHS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)), 50: ("bottleneck", (3, 4, 6, 3))}


def _conv(cin: int, cout: int, k: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride, padding=k // 2, bias=False)


class _Residual(nn.Module):
    """What both block kinds share: the optional slot and the residual add."""

    def _place(self, block: nn.Module | None, position: str, attn_name: str, conv2: nn.Module):
        self.attn_name = attn_name if block is not None and position == "block" else None
        if block is not None and position == "conv2":
            conv2 = nn.Sequential(conv2, block)
        self.conv2 = conv2
        if self.attn_name:
            setattr(self, attn_name, block)

    def _finish(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.attn_name:
            out = getattr(self, self.attn_name)(out)
        identity = self.downsample(x) if self.downsample is not None else x
        return self.relu(out + identity)


class BasicBlock(_Residual):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int, downsample: nn.Module | None,
                 block: nn.Module | None, position: str, attn_name: str) -> None:
        super().__init__()
        self.conv1 = _conv(cin, planes, 3, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self._place(block, position, attn_name, _conv(planes, planes, 3))
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self._finish(self.bn2(self.conv2(out)), x)


class Bottleneck(_Residual):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int, downsample: nn.Module | None,
                 block: nn.Module | None, position: str, attn_name: str) -> None:
        super().__init__()
        self.conv1 = _conv(cin, planes, 1)
        self.bn1 = nn.BatchNorm2d(planes)
        self._place(block, position, attn_name, _conv(planes, planes, 3, stride))
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv(planes, planes * 4, 1)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self._finish(self.bn3(self.conv3(out)), x)


class ResNet(nn.Module):
    """The torchvision-layout ResNet with ``slot`` blocks at ``position``."""

    def __init__(self, depth: int, num_classes: int, slot: AttnSlot, position: str,
                 attn_name: str) -> None:
        super().__init__()
        kind, layers = DEPTHS[depth]
        block_cls = BasicBlock if kind == "basic" else Bottleneck
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.stage_attn = nn.ModuleDict()
        cin = 64
        for i, (count, planes) in enumerate(zip(layers, (64, 128, 256, 512))):
            blocks = []
            for j in range(count):
                stride = 2 if i > 0 and j == 0 else 1
                cout = planes * block_cls.expansion
                down = None
                if stride != 1 or cin != cout:
                    down = nn.Sequential(_conv(cin, cout, 1, stride), nn.BatchNorm2d(cout))
                width = planes if position == "conv2" else cout
                attn = slot.build(width, i) if position in ("block", "conv2") else None
                blocks.append(block_cls(cin, planes, stride, down, attn, position, attn_name))
                cin = cout
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            stage_block = slot.build(cin, i) if position == "stage" else None
            if stage_block is not None:
                self.stage_attn[f"layer{i + 1}"] = stage_block
        self.fc = nn.Linear(cin, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        """torchvision's initialisation of the host (the blocks keep their own)."""
        for name, m in self.named_modules():
            if isinstance(m, nn.Conv2d) and name.count(".") <= 2:
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
            if f"layer{i}" in self.stage_attn:
                x = self.stage_attn[f"layer{i}"](x)
        return self.fc(x.mean((2, 3)))


def resnet(
    depth: int = 50,
    attn: str | None = None,
    position: str = "block",
    num_classes: int = 1000,
    attn_kwargs: Mapping[str, Any] | None = None,
    stages: Sequence[bool] | None = None,
    stage_kwargs: Sequence[Mapping[str, Any]] | None = None,
    attn_name: str = "attn",
    variant: str = "reference",
) -> ResNet:
    """A torchvision-layout ResNet-``depth`` holding block ``attn`` at ``position``.

    Args:
        depth: 18, 34 or 50.
        attn: registry block name (``attn-export list``), or None for the plain ResNet.
        position: ``block`` (after the last BN of each residual block), ``stage`` (after each
            stage) or ``conv2`` (inside conv2, as SimAM's official code).
        num_classes: width of ``fc``.
        attn_kwargs: the block's keyword arguments.
        stages: which of the 4 stages get blocks (default all).
        stage_kwargs: per-stage block kwargs (4 dicts), e.g. ECA's ``k_size`` per stage.
        attn_name: the attribute of a ``block`` slot (``se``, ``cbam``, ``eca`` in official codes).
        variant: the form of the blocks (``reference``: ``to_deploy`` swaps them).
    """
    if depth not in DEPTHS:
        raise BlockConfigError(f"resnet: depth must be one of {sorted(DEPTHS)}, got {depth!r}")
    check_position(position, RESNET_POSITIONS, f"resnet{depth}")
    check_stages(stages, 4, f"resnet{depth}")
    check_stages(stage_kwargs, 4, f"resnet{depth}")
    if not attn_name.isidentifier():
        raise BlockConfigError(f"resnet: attn_name must be an identifier, got {attn_name!r}")
    slot = AttnSlot(attn, attn_kwargs or {}, variant, stages, stage_kwargs)
    return ResNet(depth, num_classes, slot, position, attn_name)
