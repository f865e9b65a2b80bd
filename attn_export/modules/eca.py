"""ECA-Net: Efficient Channel Attention for Deep CNNs (Wang et al., CVPR 2020, arXiv:1910.03151).

Reference follows the seed ``channel-attention.md`` eca_layer (= BangguWu/ECANet ``eca_module.py``):
global average pool, a 1-D convolution of kernel ``k`` across the channel axis, sigmoid gate. With
``k_size=None`` the kernel size is chosen from the width as in the seed
``attention-in-small-object-detection.md`` eca_block (``|(log2(C) + b) / gamma|_odd``, gamma=2,
b=1).
timm's ``EcaModule`` stores the same single tensor ``conv.weight`` of shape (1, 1, k).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from attn_export.errors import BlockConfigError, CheckpointError
from attn_export.modules.base import AttentionBlock


def adaptive_kernel_size(channels: int, gamma: int = 2, b: int = 1) -> int:
    """ECA's ``psi(C)``: the odd kernel size the paper derives from the channel count."""
    t = int(abs((math.log(channels, 2) + b) / gamma))
    return t if t % 2 else t + 1


def _kernel_size(channels: int, k_size: int | None) -> int:
    if not isinstance(channels, int) or channels < 1:
        raise BlockConfigError(f"eca: channels must be a positive integer, got {channels!r}")
    if k_size is None:
        return adaptive_kernel_size(channels)
    if not isinstance(k_size, int) or isinstance(k_size, bool) or k_size < 1 or k_size % 2 == 0:
        raise BlockConfigError(
            f"eca: k_size must be None (adaptive) or a positive odd integer, got {k_size!r}; "
            "an even kernel with padding (k-1)//2 shortens the channel axis by one"
        )
    return k_size


def _conv(k: int) -> nn.Conv1d:
    return nn.Conv1d(1, 1, kernel_size=k, padding=(k - 1) // 2, bias=False)


class ECAReference(AttentionBlock):
    """ECA as published: ``AdaptiveAvgPool2d(1)``, squeeze/transpose around a ``Conv1d``."""

    def __init__(self, channels: int, k_size: int | None = None) -> None:
        super().__init__(channels=channels, k_size=k_size)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv = _conv(_kernel_size(channels, k_size))
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.avg_pool(x)
        y = self.conv(y.squeeze(-1).transpose(-1, -2)).transpose(-1, -2).unsqueeze(-1)
        y = self.sigmoid(y)
        return x * y.expand_as(x)


class ECA(AttentionBlock):
    """Export-safe ECA: the channel conv runs as a (k, 1) Conv2d on the pooled vector.

    The pooled (N, C, 1, 1) vector is reshaped to (N, 1, C, 1) with the module constant C, so the
    graph holds ReduceMean, Reshape, Conv, Sigmoid, Reshape, Mul: no Squeeze/Transpose/Expand and
    no size read from the input (H11). A 1-D conv traced at batch 1 makes torch.export specialise
    N (measured on torch 2.13: the seed then fails the dynamo export with a dynamic batch); the
    2-D conv does not. ``conv`` stays an ``nn.Conv1d`` so the weight keeps its (1, 1, k) shape.
    """

    def __init__(self, channels: int, k_size: int | None = None) -> None:
        super().__init__(channels=channels, k_size=k_size)
        self.channels = channels
        self.conv = _conv(_kernel_size(channels, k_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.conv.kernel_size[0]
        y = x.mean((2, 3), keepdim=True).reshape(-1, 1, self.channels, 1)  # H4, H11
        y = F.conv2d(y, self.conv.weight.view(1, 1, k, 1), padding=((k - 1) // 2, 0))
        return x * torch.sigmoid(y).reshape(-1, self.channels, 1, 1)


def _eca_hyperparams(sd: Mapping[str, Any]) -> dict[str, Any]:
    """k_size from ``conv.weight`` (BangguWu/ECANet#46: it cannot be recomputed from C).

    ECA's only tensor says nothing about the channel count, so ``channels`` is left to the caller.
    """
    shape = tuple(sd["conv.weight"].shape)
    if len(shape) != 3 or shape[:2] != (1, 1):
        raise CheckpointError(f"eca: conv.weight must have shape (1, 1, k), found {shape}")
    return {"k_size": shape[2]}


def _from_timm(sd: Mapping[str, Any]) -> dict[str, Any]:
    """timm ``EcaModule`` (default, ``use_mlp=False``): the same single ``conv.weight`` tensor.

    timm's MLP variant (``conv`` of shape (rd, 1, 1) plus ``conv2``) has no ECA counterpart here
    and is refused rather than loaded half-way.
    """
    extra = sorted(set(sd) - {"conv.weight"})
    if extra:
        raise CheckpointError(f"timm EcaModule with use_mlp=True or bias is not supported: {extra}")
    _eca_hyperparams(sd)
    return {"conv.weight": sd["conv.weight"]}


SOURCES = {"eca": {"timm": _from_timm}}
HYPERPARAMS = {"eca": _eca_hyperparams}
