"""SCConv: Improving Convolutional Networks with Self-Calibrated Convolutions (Liu et al., CVPR 2020;
no arXiv version; MCG-NKU/SCNet).

Reference follows the seed ``channel-spatial-attention.md`` ``SCConv`` (= MCG-NKU/SCNet
``scnet.py``): ``k2`` average-pools the map by ``pooling_r`` and convolves it, its nearest
upsampling added to the input gates ``k3(x)`` through a sigmoid, and ``k4`` convolves the gated
map. The published constructor has no defaults; ours are SCNet's Bottleneck settings
(``stride=1, padding=1, dilation=1, groups=1, pooling_r=4``, BatchNorm). ``planes`` equals
``channels`` (the sigmoid adds ``k2``'s output to the input), and the block returns a map of the
input's shape, so ``stride`` must be 1 and ``padding`` equal to ``dilation``; other values are
refused at construction, naming the kwarg.

Deploy form: the published graph is already export-safe. The pool has a fixed kernel and stride
(``pooling_r``), not one derived from the input size, and the upsampling targets the input's own
H, W: a Resize whose sizes follow the map in every shape mode (a constant in static graphs). The
deploy form keeps those ops and adds what the published code lacks: a clear error for maps
smaller than ``pooling_r`` (the pooled map would be empty) instead of PyTorch's "output size is
too small" from deep inside the pool.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from attn_export.errors import BlockConfigError, CheckpointError, ShapeModeError
from attn_export.modules.base import AttentionBlock


def _positive_int(name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise BlockConfigError(f"scconv: {name} must be a positive int, got {value!r}")
    return value


def _check_args(channels: int, stride: int, padding: int, dilation: int, groups: int,
                pooling_r: int) -> None:
    for name, value in (("channels", channels), ("stride", stride), ("dilation", dilation),
                        ("groups", groups), ("pooling_r", pooling_r)):
        _positive_int(name, value)
    if stride != 1:
        raise BlockConfigError(
            f"scconv: stride={stride} would shrink the map; the block returns the input's shape, "
            "so stride must be 1 (downsample outside the block)"
        )
    if padding != dilation:
        raise BlockConfigError(
            f"scconv: padding={padding} with dilation={dilation} changes H and W of the 3x3 convs; "
            f"pass padding={dilation}"
        )
    if channels % groups:
        raise BlockConfigError(
            f"scconv: channels={channels} is not divisible by groups={groups}; pick groups that "
            "divides the channel count"
        )


def _conv_bn(channels, padding, dilation, groups, norm_layer) -> list[nn.Module]:
    return [nn.Conv2d(channels, channels, kernel_size=3, stride=1, padding=padding,
                      dilation=dilation, groups=groups, bias=False), norm_layer(channels)]


class SCConvReference(AttentionBlock):
    """``SCConv`` as published (keys ``k2.1``/``k2.2``, ``k3.0``/``k3.1``, ``k4.0``/``k4.1``)."""

    def __init__(self, channels: int, stride: int = 1, padding: int = 1, dilation: int = 1,
                 groups: int = 1, pooling_r: int = 4,
                 norm_layer: type[nn.Module] = nn.BatchNorm2d) -> None:
        _check_args(channels, stride, padding, dilation, groups, pooling_r)
        super().__init__(channels=channels, stride=stride, padding=padding, dilation=dilation,
                         groups=groups, pooling_r=pooling_r, norm_layer=norm_layer)
        self.pooling_r = pooling_r
        self.k2 = nn.Sequential(nn.AvgPool2d(kernel_size=pooling_r, stride=pooling_r),
                                *_conv_bn(channels, padding, dilation, groups, norm_layer))
        self.k3 = nn.Sequential(*_conv_bn(channels, padding, dilation, groups, norm_layer))
        self.k4 = nn.Sequential(*_conv_bn(channels, padding, dilation, groups, norm_layer))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = torch.sigmoid(torch.add(identity, F.interpolate(self.k2(x), identity.size()[2:])))
        out = torch.mul(self.k3(x), out)
        return self.k4(out)


class SCConv(SCConvReference):
    """Export-safe SCConv: the published ops (fixed-kernel pool, Resize to the input's size),
    with maps smaller than ``pooling_r`` refused in one line."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (torch.jit.is_tracing() or torch.compiler.is_compiling()):
            if min(x.shape[2:]) < self.pooling_r:
                raise ShapeModeError(
                    f"scconv: a {tuple(x.shape[2:])} map is smaller than pooling_r="
                    f"{self.pooling_r}, so k2's pooled map would be empty; use H, W >= "
                    f"{self.pooling_r} or a smaller pooling_r"
                )
        up = F.interpolate(self.k2(x), size=x.shape[2:], mode="nearest")
        return self.k4(self.k3(x) * torch.sigmoid(x + up))


def _hyperparams(sd: Mapping[str, Any]) -> dict[str, int]:
    out_c, in_per_group = tuple(sd["k3.0.weight"].shape[:2])
    if out_c % in_per_group:
        raise CheckpointError(f"scconv: k3.0.weight {tuple(sd['k3.0.weight'].shape)} is not a "
                              "grouped 3x3 conv of one width")
    return {"channels": int(out_c), "groups": int(out_c // in_per_group)}


HYPERPARAMS = {"scconv": _hyperparams}
