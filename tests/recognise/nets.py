"""Networks built from other codebases' real classes, as a user writes them (no weights).

Each builder imports its package lazily; ``tests/recognise/conftest.py`` makes torchvision
importable on a CPU-only torch first (``tests/torchvision_ops.py``). Also usable from the command
line: ``attn-export model tests/recognise/nets.py:yolo_cbam --input-shape 1x3x128x128``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:  # loaded by `attn-export model FILE.py:FUNCTION`: tests.* importable
    sys.path.insert(0, _ROOT)


def _torchvision_ready() -> None:
    from tests.torchvision_ops import ensure_importable

    ensure_importable()


class FirstOutput(nn.Module):
    """A detector whose export is its decoded predictions (Ultralytics returns (y, raw) in eval)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return out[0] if isinstance(out, (tuple, list)) else out


def _with_cbam(layer: nn.Module, channels: int) -> nn.Module:
    """``layer`` followed by Ultralytics' CBAM, keeping the routing attributes its
    ``DetectionModel`` reads (``f``, ``i``, ``type``, ``np``)."""
    from ultralytics.nn.modules import CBAM

    seq = nn.Sequential(layer, CBAM(channels))
    for attr in ("f", "i", "type", "np"):
        setattr(seq, attr, getattr(layer, attr))
    return seq


def yolo_silu() -> nn.Module:
    """Ultralytics' YOLOv8n (``yolov8n.yaml``): SiLU everywhere, no attention module."""
    _torchvision_ready()
    from ultralytics.nn.tasks import DetectionModel

    return FirstOutput(DetectionModel("yolov8n.yaml", verbose=False).eval())


def yolo_cbam() -> nn.Module:
    """YOLOv8n with Ultralytics' CBAM after each backbone C2f stage (as a YOLO yaml adds it)."""
    _torchvision_ready()
    from ultralytics.nn.modules import C2f
    from ultralytics.nn.tasks import DetectionModel

    model = DetectionModel("yolov8n.yaml", verbose=False)
    for i, layer in enumerate(model.model):
        if isinstance(layer, C2f) and i < 9:
            model.model[i] = _with_cbam(layer, layer.cv2.conv.out_channels)
    return FirstOutput(model.eval())


WIDTH = 32


class Chain(nn.Module):
    """A small CNN: a stem conv, then ``blocks`` each after a conv + ReLU, then a 1x1 head."""

    def __init__(self, blocks: list[nn.Module], width: int = WIDTH) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.stages = nn.ModuleList(
            nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width),
                          nn.ReLU(), block) for block in blocks)
        self.head = nn.Conv2d(width, 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.head(x)


def timm_net() -> nn.Module:
    """timm's SEModule, EcaModule, CbamModule, SelectiveKernel, GlobalContext and EfficientNet's
    SqueezeExcite (SiLU), as timm's ResNets / EfficientNets build them."""
    _torchvision_ready()
    from timm.layers import EcaModule, GlobalContext, SelectiveKernel, SEModule
    from timm.layers.cbam import CbamModule
    from timm.models._efficientnet_blocks import SqueezeExcite

    c = WIDTH
    return Chain([SEModule(c), EcaModule(c), CbamModule(c), SelectiveKernel(c, c),
                  GlobalContext(c, fuse_add=True, fuse_scale=True),
                  SqueezeExcite(c, rd_ratio=0.25, act_layer=nn.SiLU)])


def torchvision_net() -> nn.Module:
    """torchvision's SqueezeExcitation as ResNet/RegNet (ReLU, sigmoid), EfficientNet (SiLU) and
    MobileNetV3 (Hardsigmoid gate) build it."""
    _torchvision_ready()
    from torchvision.ops.misc import SqueezeExcitation

    c = WIDTH
    return Chain([SqueezeExcitation(c, 8), SqueezeExcitation(c, 8, activation=nn.SiLU),
                  SqueezeExcitation(c, 8, scale_activation=nn.Hardsigmoid)])


def ultralytics_net() -> nn.Module:
    """Ultralytics' CBAM, ChannelAttention and SpatialAttention (kernel 7 and 3)."""
    _torchvision_ready()
    from ultralytics.nn.modules import CBAM, ChannelAttention, SpatialAttention

    c = WIDTH
    return Chain([CBAM(c), ChannelAttention(c), SpatialAttention(7), CBAM(c, kernel_size=3)])


def smp_net() -> nn.Module:
    """segmentation_models_pytorch's SCSEModule, as its U-Net decoder adds it."""
    _torchvision_ready()
    from segmentation_models_pytorch.base.modules import SCSEModule

    return Chain([SCSEModule(WIDTH), SCSEModule(WIDTH, reduction=8)])


def mmcv_net() -> nn.Module:
    """mmcv's ContextBlock and mmdet's SELayer / ChannelAttention: transcriptions under their
    module paths (``mmcv_transcribed.py``), mmcv needing a compiled build."""
    from tests.recognise import mmcv_transcribed as mm

    c = WIDTH
    return Chain([mm.ContextBlock(c, 1 / 4), mm.ContextBlock(c, 1 / 4, "att", ("channel_mul",)),
                  mm.SELayer(c, 4), mm.ChannelAttention(c)])


def pasted_net() -> nn.Module:
    """Every pasted seed listing (``tests/seed_listings.py``) in one network."""
    from tests.seed_listings import SEEDS

    return Chain([build(WIDTH) for build, _block in SEEDS.values()])


class LookalikeCBAM(nn.Module):
    """The seed's cbam_block layout with a changed forward: the spatial gate reads [max, mean]."""

    def __init__(self, channel: int, ratio: int = 8) -> None:
        super().__init__()
        from tests.seed_listings import ChannelAttention, SpatialAttention

        self.channelattention = ChannelAttention(channel, ratio=ratio)
        self.spatialattention = SpatialAttention(7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.channelattention(x)
        stats = torch.cat([x.amax(1, keepdim=True), x.mean(1, keepdim=True)], 1)
        return x * torch.sigmoid(self.spatialattention.conv1(stats))


def lookalike_net() -> nn.Module:
    """A pasted CBAM whose forward was changed: recognised by layout, not swapped, reported."""
    return Chain([LookalikeCBAM(WIDTH)])


class PlainGate(nn.Module):
    """An attention gate no block of ours computes: a max-pooled 3x3 projection."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.proj(x.amax((2, 3), keepdim=True)))


def mixed_net() -> nn.Module:
    """What users deploy: timm, torchvision, Ultralytics and smp classes, pasted seed code, a
    pasted look-alike and a gate of their own, in one network (the docs' scan table)."""
    _torchvision_ready()
    from segmentation_models_pytorch.base.modules import SCSEModule
    from timm.layers import EcaModule
    from torchvision.ops.misc import SqueezeExcitation
    from ultralytics.nn.modules import CBAM

    from tests.seed_listings import cbam_block, simam_module

    c = WIDTH
    return Chain([EcaModule(c), SqueezeExcitation(c, 8, scale_activation=nn.Hardsigmoid), CBAM(c),
                  SCSEModule(c), cbam_block(c), simam_module(), LookalikeCBAM(c), PlainGate(c)])
