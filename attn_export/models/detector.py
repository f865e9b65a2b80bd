"""A tiny YOLO-style detector of our own: the host the blocks are most often pasted into.

Conv-BN-SiLU backbone with residual stages (strides 8, 16, 32) and an SPPF, a PAN neck (top-down
then bottom-up, as YOLOv5/v8 do), an attention slot after each neck stage, and an anchor-free head
per scale. Written from the architecture's description, not from Ultralytics' AGPL code. The
output is one tensor ``(N, 4 + num_classes, anchors)``, the single-output form YOLO exports use,
so the golden file and the validation treat it like any block's output.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from attn_export.models.slots import AttnSlot, check_position


class ConvBNAct(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int = 1, stride: int = 1) -> None:
        super().__init__(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.SiLU(inplace=True))


class Residual(nn.Module):
    """``x + conv3x3(conv1x1(x))``, the bottleneck of YOLO's C3/C2f stages."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.cv1 = ConvBNAct(channels, channels // 2, 1)
        self.cv2 = ConvBNAct(channels // 2, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.cv2(self.cv1(x))


class SPPF(nn.Module):
    """Spatial pyramid pooling, fast: three chained 5x5 max pools concatenated (YOLOv5)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.cv1 = ConvBNAct(channels, channels // 2, 1)
        self.cv2 = ConvBNAct(channels * 2, channels, 1)
        self.pool = nn.MaxPool2d(5, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        y1 = self.pool(x)
        y2 = self.pool(y1)
        return self.cv2(torch.cat([x, y1, y2, self.pool(y2)], 1))


class Backbone(nn.Module):
    def __init__(self, w: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(ConvBNAct(3, w, 3, 2), ConvBNAct(w, 2 * w, 3, 2), Residual(2 * w))
        self.p3 = nn.Sequential(ConvBNAct(2 * w, 4 * w, 3, 2), Residual(4 * w))
        self.p4 = nn.Sequential(ConvBNAct(4 * w, 8 * w, 3, 2), Residual(8 * w))
        self.p5 = nn.Sequential(ConvBNAct(8 * w, 16 * w, 3, 2), Residual(16 * w), SPPF(16 * w))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        p3 = self.p3(self.stem(x))
        p4 = self.p4(p3)
        return p3, p4, self.p5(p4)


class Neck(nn.Module):
    """PAN: top-down (upsample + concat) then bottom-up (stride-2 conv + concat), blocks after."""

    def __init__(self, w: int, slot: AttnSlot) -> None:
        super().__init__()
        self.lat5 = ConvBNAct(16 * w, 8 * w, 1)
        self.td4 = nn.Sequential(ConvBNAct(16 * w, 8 * w, 1), Residual(8 * w))
        self.lat4 = ConvBNAct(8 * w, 4 * w, 1)
        self.td3 = nn.Sequential(ConvBNAct(8 * w, 4 * w, 1), Residual(4 * w))
        self.down3 = ConvBNAct(4 * w, 4 * w, 3, 2)
        self.bu4 = nn.Sequential(ConvBNAct(8 * w, 8 * w, 1), Residual(8 * w))
        self.down4 = ConvBNAct(8 * w, 8 * w, 3, 2)
        self.bu5 = nn.Sequential(ConvBNAct(16 * w, 16 * w, 1), Residual(16 * w))
        for i, (name, c) in enumerate((("attn3", 4 * w), ("attn4", 8 * w), ("attn5", 16 * w))):
            setattr(self, name, slot.build(c, i) or nn.Identity())

    def forward(self, p3: torch.Tensor, p4: torch.Tensor, p5: torch.Tensor):
        l5 = self.lat5(p5)
        t4 = self.td4(torch.cat([F.interpolate(l5, scale_factor=2.0, mode="nearest"), p4], 1))
        l4 = self.lat4(t4)
        n3 = self.td3(torch.cat([F.interpolate(l4, scale_factor=2.0, mode="nearest"), p3], 1))
        n4 = self.bu4(torch.cat([self.down3(n3), l4], 1))
        n5 = self.bu5(torch.cat([self.down4(n4), l5], 1))
        return self.attn3(n3), self.attn4(n4), self.attn5(n5)


class TinyDetector(nn.Module):
    def __init__(self, num_classes: int, width: int, slot: AttnSlot) -> None:
        super().__init__()
        self.backbone = Backbone(width)
        self.neck = Neck(width, slot)
        self.head = nn.ModuleList(
            nn.Sequential(ConvBNAct(c, c, 3), nn.Conv2d(c, 4 + num_classes, 1))
            for c in (4 * width, 8 * width, 16 * width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.neck(*self.backbone(x))
        return torch.cat([h(f).flatten(2) for h, f in zip(self.head, feats)], 2)


def tiny_detector(
    attn: str | None = None,
    position: str = "neck",
    num_classes: int = 80,
    width: int = 16,
    attn_kwargs: Mapping[str, Any] | None = None,
    stages: tuple[bool, bool, bool] | None = None,
    variant: str = "reference",
) -> TinyDetector:
    """The tiny detector with block ``attn`` after each neck stage (P3, P4, P5).

    Args:
        attn: registry block name, or None.
        position: ``neck`` (the only slot).
        num_classes: classes of the head (80: COCO).
        width: base width (16 gives 16/32/64/128/256 channels; H, W must be multiples of 32).
        attn_kwargs: the block's keyword arguments.
        stages: which of P3, P4, P5 get a block (default all).
        variant: the form of the blocks (``reference``: ``to_deploy`` swaps them).
    """
    from attn_export.models.slots import check_stages

    check_position(position, ("neck",), "tiny_detector")
    check_stages(stages, 3, "tiny_detector")
    return TinyDetector(num_classes, width, AttnSlot(attn, attn_kwargs or {}, variant, stages))
