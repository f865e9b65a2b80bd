"""EPSANet: An Efficient Pyramid Squeeze Attention Block on Convolutional Neural Network
(Zhang, Zu, Lu, Zou, Meng; ACCV 2022, arXiv:2105.14447).

Reference follows the official murufeng/EPSANet ``models/epsanet.py`` ``PSAModule`` with its
``SEWeightModule``: four grouped convs with kernels 3/5/7/9 (groups 1/4/8/16) each produce a quarter
of the output channels, one shared SE module (reduction 16, biases) weighs each quarter, a softmax
across the four branches normalises the weights, and the weighted branches are concatenated. Keys
are the official ones (``conv_1.weight`` .. ``conv_4.weight``, ``se.fc1.*``, ``se.fc2.*``). Here
``inplans == planes == channels`` and ``stride == 1``, so the block keeps the map's shape.

The official forward concatenates the weighted branches in *reverse* order (its loop prepends each
branch: output channels hold branch 4, 3, 2, 1). Both forms keep that order: a network trained with
the official code expects it.

The deploy form applies the SE with a mean reduction, builds the softmax logits already in the
output order (a softmax across branches does not care about their order) and reshapes them with
module constants and -1 (H11), where the official code views the full concatenated map as
(N, 4, C/4, H, W) with sizes read from the tensor.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from attn_export.errors import BlockConfigError
from attn_export.modules.base import AttentionBlock, reduced_channels

StateDict = dict[str, torch.Tensor]
SE_REDUCTION = 16  # SEWeightModule's default; PSAModule does not pass another


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check(channels: int, kernels: Sequence[int], groups: Sequence[int]) -> tuple[tuple, tuple]:
    kernels, groups = tuple(kernels), tuple(groups)
    if len(kernels) != 4 or not all(_is_int(k) and k >= 1 and k % 2 == 1 for k in kernels):
        raise BlockConfigError(
            f"epsa: conv_kernels must be 4 odd integers (official [3, 5, 7, 9]), got {kernels!r}"
        )
    if len(groups) != 4 or not all(_is_int(g) and g >= 1 for g in groups):
        raise BlockConfigError(
            f"epsa: conv_groups must be 4 positive integers (official [1, 4, 8, 16]), got {groups!r}"
        )
    if not _is_int(channels) or channels < 4 or channels % 4:
        raise BlockConfigError(
            f"epsa: channels must be a positive multiple of 4 (four branches), got {channels!r}"
        )
    bad = [g for g in groups if channels % g or (channels // 4) % g]
    if bad:
        raise BlockConfigError(
            f"epsa: each conv group count must divide both channels={channels} and the branch "
            f"width {channels // 4}; {bad} do not (with groups {list(groups)} use a multiple of "
            f"{4 * max(groups)} channels)"
        )
    return kernels, groups


def _branch_convs(module: nn.Module, channels: int, kernels: tuple, groups: tuple) -> None:
    for i, (k, g) in enumerate(zip(kernels, groups), start=1):
        conv = nn.Conv2d(channels, channels // 4, kernel_size=k, padding=k // 2, groups=g,
                         bias=False)
        module.add_module(f"conv_{i}", conv)


class SEWeightModule(nn.Module):
    """Official SE weight: pool -> 1x1 conv (bias) -> ReLU -> 1x1 conv (bias) -> sigmoid."""

    def __init__(self, channels: int, reduction: int = SE_REDUCTION) -> None:
        super().__init__()
        hidden = reduced_channels(channels, reduction, "epsa")
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, hidden, kernel_size=1, padding=0)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, kernel_size=1, padding=0)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))


class EPSAReference(AttentionBlock):
    """PSAModule as published (``inplans == planes == channels``, ``stride=1``)."""

    def __init__(
        self,
        channels: int,
        conv_kernels: Sequence[int] = (3, 5, 7, 9),
        conv_groups: Sequence[int] = (1, 4, 8, 16),
    ) -> None:
        super().__init__(channels=channels, conv_kernels=conv_kernels, conv_groups=conv_groups)
        kernels, groups = _check(channels, conv_kernels, conv_groups)
        _branch_convs(self, channels, kernels, groups)
        self.se = SEWeightModule(channels // 4)
        self.split_channel = channels // 4
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch_size = x.shape[0]
        branches = [self.conv_1(x), self.conv_2(x), self.conv_3(x), self.conv_4(x)]
        feats = torch.cat(branches, dim=1)
        feats = feats.view(batch_size, 4, self.split_channel, feats.shape[2], feats.shape[3])
        x_se = torch.cat([self.se(b) for b in branches], dim=1)
        attention = self.softmax(x_se.view(batch_size, 4, self.split_channel, 1, 1))
        feats_weight = feats * attention
        out = feats_weight[:, 0, :, :]
        for i in range(1, 4):  # official loop: each branch is prepended
            out = torch.cat((feats_weight[:, i, :, :], out), 1)
        return out


class _SEWeight(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        hidden = reduced_channels(channels, SE_REDUCTION, "epsa")
        self.fc1 = nn.Conv2d(channels, hidden, kernel_size=1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # H4: a mean reduction, not an adaptive pool.
        return torch.sigmoid(self.fc2(self.relu(self.fc1(x.mean((2, 3), keepdim=True)))))


class EPSA(AttentionBlock):
    """Export-safe PSA module: no 5-D view of the map, logits reshaped with constants (H11)."""

    def __init__(
        self,
        channels: int,
        conv_kernels: Sequence[int] = (3, 5, 7, 9),
        conv_groups: Sequence[int] = (1, 4, 8, 16),
    ) -> None:
        super().__init__(channels=channels, conv_kernels=conv_kernels, conv_groups=conv_groups)
        kernels, groups = _check(channels, conv_kernels, conv_groups)
        _branch_convs(self, channels, kernels, groups)
        self.se = _SEWeight(channels // 4)
        self.split_channel = channels // 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Official output order: branch 4, 3, 2, 1.
        branches = [self.conv_4(x), self.conv_3(x), self.conv_2(x), self.conv_1(x)]
        logits = torch.cat([self.se(b) for b in branches], dim=1)  # (N, 4 * C/4, 1, 1)
        att = torch.softmax(logits.reshape(-1, 4, self.split_channel), dim=1)
        att = att.reshape(-1, 4 * self.split_channel, 1, 1)
        return torch.cat(branches, dim=1) * att


def _infer_epsa(sd: StateDict) -> dict[str, object]:
    """channels, conv_kernels and conv_groups: all four conv weights determine them."""
    weights = [sd[f"conv_{i}.weight"] for i in range(1, 5)]
    channels = int(weights[0].shape[0]) * 4
    return {
        "channels": channels,
        "conv_kernels": tuple(int(w.shape[-1]) for w in weights),
        "conv_groups": tuple(channels // int(w.shape[1]) for w in weights),
    }


HYPERPARAMS = {"epsa": _infer_epsa}
