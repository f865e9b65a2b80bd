"""Residual Attention (Wang et al., "Residual Attention Network for Image Classification",
CVPR 2017, arXiv:1704.06904).

Reference follows tengshaofeng/ResidualAttentionNetwork-pytorch ``model/attention_module.py``
``AttentionModule_stage1``, ``_stage2`` and ``_stage3`` (chosen with ``stage=1|2|3``) built from
``model/basic_layers.py`` ``ResidualBlock``: a trunk of two residual blocks, and a soft mask branch
that max-pools ``stage`` times (bottom-up, with skip residual blocks), upsamples back with
``UpsamplingBilinear2d(size=...)`` adding the skips (top-down), and ends in BN-ReLU-1x1 conv twice
and a sigmoid; the output is ``last_blocks((1 + mask) * trunk)``. Keys as published
(``first_residual_blocks.*``, ``trunk_branches.*``, ``softmax{k}_blocks.*``, ...).

Two deviations, neither changing a value: ``ResidualBlock`` divides by 4 with ``//`` (the published
``output_channels/4`` is a float in Python 3 and ``nn.Conv2d`` refuses it), and ``out_channels``
(the published ``out_channels``) must equal ``channels``: every residual block there adds its
input to its output, so the published modules only run when the two are equal.

The upsampling sizes ``size1``.. are constructor constants (defaults, as published: stage 1
56/28/14, stage 2 28/14, stage 3 14 px), so the reference runs at one input size only; it says so
instead of failing in an add. Deploy form, same ``state_dict``: each upsampling targets the size of
the tensor it is added to (the skip, or the trunk), which is what the constants stand for, so it is
exact at every size, odd ones included, in every shape mode; the ``size*`` arguments are accepted
and ignored. In a dynamic-H/W graph the Resize sizes come from that tensor's Shape (TensorRT
takes them as shape tensors); a static graph folds them to constants.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attn_export.errors import BlockConfigError, ShapeModeError
from attn_export.modules.base import AttentionBlock

DEFAULT_SIZES = {1: ((56, 56), (28, 28), (14, 14)), 2: ((28, 28), (14, 14)), 3: ((14, 14),)}


class ResidualBlock(nn.Module):
    """The published pre-activation bottleneck (``conv4`` projects when widths differ)."""

    def __init__(self, input_channels: int, output_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.input_channels = input_channels
        self.output_channels = output_channels
        self.stride = stride
        self.bn1 = nn.BatchNorm2d(input_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(input_channels, output_channels // 4, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(output_channels // 4)
        self.conv2 = nn.Conv2d(output_channels // 4, output_channels // 4, 3, stride, padding=1,
                               bias=False)
        self.bn3 = nn.BatchNorm2d(output_channels // 4)
        self.conv3 = nn.Conv2d(output_channels // 4, output_channels, 1, 1, bias=False)
        self.conv4 = nn.Conv2d(input_channels, output_channels, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x
        out1 = self.relu(self.bn1(x))
        out = self.relu(self.bn2(self.conv1(out1)))
        out = self.relu(self.bn3(self.conv2(out)))
        out = self.conv3(out)
        if (self.input_channels != self.output_channels) or (self.stride != 1):
            residual = self.conv4(out1)
        return out + residual


def _mask_head(channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
        nn.Conv2d(channels, channels, kernel_size=1, stride=1, bias=False),
        nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
        nn.Conv2d(channels, channels, kernel_size=1, stride=1, bias=False), nn.Sigmoid())


def _sizes(stage: int, given: tuple) -> tuple[tuple[int, int], ...]:
    if stage not in DEFAULT_SIZES:
        raise BlockConfigError(f"residual_attention: stage must be 1, 2 or 3, got {stage!r}")
    depth = len(DEFAULT_SIZES[stage])
    if any(s is not None for s in given[depth:]):
        raise BlockConfigError(f"residual_attention: stage {stage} has {depth} upsampling "
                               f"size(s) (size1..size{depth}); drop the others")
    out = []
    for default, size in zip(DEFAULT_SIZES[stage], given):
        size = default if size is None else size
        if isinstance(size, int) and not isinstance(size, bool):
            size = (size, size)
        if not (len(size) == 2 and all(isinstance(s, int) and s >= 1 for s in size)):
            raise BlockConfigError(f"residual_attention: sizes must be (H, W) pairs, got {size!r}")
        out.append(tuple(size))
    return tuple(out)


def pooled(size: tuple[int, int]) -> tuple[int, int]:
    """Size after the published ``MaxPool2d(3, stride=2, padding=1)``."""
    return tuple((s - 1) // 2 + 1 for s in size)


def reference_geometry(input_size: tuple[int, int], stage: int = 1) -> dict:
    """The ``size1``.. that make the reference run at ``input_size`` (what the deploy form infers)."""
    sizes, size = {}, tuple(input_size)
    for k in range(1, len(DEFAULT_SIZES[stage]) + 1):
        sizes[f"size{k}"] = size
        size = pooled(size)
    return sizes


class _ResidualAttentionLayers(AttentionBlock):
    """Modules of ``AttentionModule_stage{1,2,3}``, registered under the published names."""

    def __init__(self, channels: int, out_channels, stage: int, size1, size2, size3) -> None:
        super().__init__(channels=channels, out_channels=out_channels, stage=stage, size1=size1,
                         size2=size2, size3=size3)
        out = channels if out_channels is None else out_channels
        if out != channels:
            raise BlockConfigError(
                f"residual_attention: out_channels={out} must equal channels={channels} (the "
                "published residual blocks add their input to their output); leave it unset")
        if channels < 4:
            raise BlockConfigError(f"residual_attention: channels={channels} leaves a bottleneck "
                                   "of 0 (channels // 4); use >= 4 channels")
        self.sizes = _sizes(stage, (size1, size2, size3))
        self.stage = stage
        self.depth = d = len(self.sizes)
        rb = ResidualBlock
        self.first_residual_blocks = rb(channels, channels)
        self.trunk_branches = nn.Sequential(rb(channels, channels), rb(channels, channels))
        for k in range(1, d + 1):
            setattr(self, f"mpool{k}", nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
            setattr(self, f"softmax{k}_blocks", rb(channels, channels) if k < d else
                    nn.Sequential(rb(channels, channels), rb(channels, channels)))
            if k < d:
                setattr(self, f"skip{k}_connection_residual_block", rb(channels, channels))
        for k in range(d, 1, -1):
            setattr(self, f"softmax{2 * d - k + 1}_blocks", rb(channels, channels))
        setattr(self, f"softmax{2 * d}_blocks", _mask_head(channels))
        self.last_blocks = rb(channels, channels)

    def _upsample(self, k: int, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.depth
        x = self.first_residual_blocks(x)
        out_trunk = self.trunk_branches(x)
        down, skips, out = [], [], x
        for k in range(1, d + 1):
            out = getattr(self, f"softmax{k}_blocks")(getattr(self, f"mpool{k}")(out))
            down.append(out)
            if k < d:
                skips.append(getattr(self, f"skip{k}_connection_residual_block")(out))
        for k in range(d, 1, -1):
            out = self._upsample(k, out, down[k - 2]) + down[k - 2] + skips[k - 2]
            out = getattr(self, f"softmax{2 * d - k + 1}_blocks")(out)
        mask = getattr(self, f"softmax{2 * d}_blocks")(self._upsample(1, out, out_trunk)
                                                       + out_trunk)
        return self.last_blocks((1 + mask) * out_trunk)


class ResidualAttentionReference(_ResidualAttentionLayers):
    """``AttentionModule_stage{stage}`` as published: fixed ``UpsamplingBilinear2d`` sizes."""

    def __init__(self, channels: int, out_channels: int | None = None, stage: int = 1,
                 size1: tuple[int, int] | None = None, size2: tuple[int, int] | None = None,
                 size3: tuple[int, int] | None = None) -> None:
        super().__init__(channels, out_channels, stage, size1, size2, size3)
        for k, size in enumerate(self.sizes, start=1):
            setattr(self, f"interpolation{k}", nn.UpsamplingBilinear2d(size=size))

    def _upsample(self, k: int, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return getattr(self, f"interpolation{k}")(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_tracing() and tuple(x.shape[2:]) != self.sizes[0]:
            raise ShapeModeError(
                f"residual_attention: the reference form upsamples to the constant size1="
                f"{self.sizes[0]} and got a {tuple(x.shape[2:])} map; build it with "
                f"{reference_geometry(tuple(x.shape[2:]), self.stage)} "
                "or use the deploy form, which upsamples to each skip's size"
            )
        return super().forward(x)


class ResidualAttention(_ResidualAttentionLayers):
    """Export-safe attention module: upsampling to the size of the tensor it is added to."""

    def __init__(self, channels: int, out_channels: int | None = None, stage: int = 1,
                 size1: tuple[int, int] | None = None, size2: tuple[int, int] | None = None,
                 size3: tuple[int, int] | None = None) -> None:
        super().__init__(channels, out_channels, stage, size1, size2, size3)

    def _upsample(self, k: int, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=target.shape[2:], mode="bilinear", align_corners=True)
