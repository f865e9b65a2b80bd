"""Polarized Self-Attention (Liu et al., "Polarized Self-Attention: Towards High-quality
Pixel-wise Regression", Neurocomputing 2022, arXiv:2107.00782).

Reference follows DeLightCMU/PSA ``semantic-segmentation/network/PSA.py``: ``PSA_p`` (parallel:
channel branch + spatial branch) and ``PSA_s`` (sequential: the spatial branch gates the channel
branch's output, and ``conv_up`` is a bottleneck with a ``LayerNorm``). Published signature
``(inplanes, planes, kernel_size=1, stride=1)``; here ``channels`` is ``inplanes``, ``planes``
defaults to it, and ``planes != channels`` or ``stride != 1`` are refused: the branches multiply
``x`` by masks of ``planes`` channels at the conv's stride, which only broadcast for these values
(``kernel_size`` is stored, unused, as upstream).

Memory: no (HW x HW) matrix is formed; the attention weights are ``(N, planes/2, 1)`` and
``(N, 1, H*W)``, linear in H*W, so no bound is needed.

Deploy form, the same ``state_dict``:

- H4/H8: ``AdaptiveAvgPool2d(1)`` is a mean, the reshape/transpose/matmul contractions are
  reductions over H, W (or C) of broadcast products; no Reshape, no Transpose, no Shape.
- The softmax over H*W is written out as ``exp(t - max)`` over its mean: the weighted sum
  ``sum(v * softmax)`` becomes ``mean(v * e) / mean(e)``, in which H*W cancels, so FP16 never
  sums H*W terms (F1); where the softmax itself is used (PSA_p's spatial mask, PSA_s's theta)
  its ``1 / (H*W)`` is counted in the graph (``pixel_count``).
- ``conv_v_right`` has no bias, so it commutes with the softmax-weighted pooling: the deploy form
  pools ``x`` first and applies the conv to a ``(N, C, 1, 1)`` vector (H*W times fewer MACs).
- H9: PSA_s's ``LayerNorm([c, 1, 1])`` runs through ``F.layer_norm``, which opset 17 exports as
  one ``LayerNormalization`` (TensorRT keeps it accurate in FP16); at lower opsets it decomposes
  over a ``(N, c, 1, 1)`` vector, whose variance has c terms, not H*W.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from attn_export.errors import BlockConfigError
from attn_export.modules.base import AttentionBlock, pixel_count

MEMORY = "no HW x HW matrix: (N, C/2, 1) and (N, 1, H*W) weights, linear in H*W"


def _check(name: str, channels: int, planes: int | None, stride: int, minimum: int) -> int:
    planes = channels if planes is None else planes
    if planes != channels:
        raise BlockConfigError(
            f"{name}: planes={planes} must equal channels={channels}: the block multiplies the "
            "input by a mask of `planes` channels; leave planes unset"
        )
    if stride != 1:
        raise BlockConfigError(
            f"{name}: stride={stride} is refused: the masks would be smaller than the input "
            "they gate (the published code fails there too); use stride=1"
        )
    if planes // 2 < minimum:
        raise BlockConfigError(f"{name}: channels={channels} is too narrow (needs >= "
                               f"{2 * minimum} for its planes // 2 bottleneck)")
    return planes


class _PSALayers(AttentionBlock):
    """Convs both forms and both variants share, named as in ``PSA.py``."""

    block_name = "psa_p"

    def __init__(self, channels: int, planes: int | None, kernel_size: int, stride: int,
                 minimum: int = 1) -> None:
        super().__init__(channels=channels, planes=planes, kernel_size=kernel_size, stride=stride)
        self.inplanes = channels
        self.planes = _check(self.block_name, channels, planes, stride, minimum)
        self.inter_planes = self.planes // 2
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = (kernel_size - 1) // 2
        self.conv_q_right = nn.Conv2d(channels, 1, 1, stride=stride, padding=0, bias=False)
        self.conv_v_right = nn.Conv2d(channels, self.inter_planes, 1, stride=stride, padding=0,
                                      bias=False)
        self.conv_up = self._conv_up()
        self.softmax_right = nn.Softmax(dim=2)
        self.sigmoid = nn.Sigmoid()
        self.conv_q_left = nn.Conv2d(channels, self.inter_planes, 1, stride=stride, padding=0,
                                     bias=False)
        self.conv_v_left = nn.Conv2d(channels, self.inter_planes, 1, stride=stride, padding=0,
                                     bias=False)
        self.softmax_left = nn.Softmax(dim=2)
        for conv in (self.conv_q_right, self.conv_v_right, self.conv_q_left, self.conv_v_left):
            nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")

    def _conv_up(self) -> nn.Module:
        return nn.Conv2d(self.inter_planes, self.planes, 1, stride=1, padding=0, bias=False)


class _PSAReference(_PSALayers):
    """The published spatial_pool / channel_pool (``sequential`` picks PSA_s's order)."""

    avg_softmax_first = False  # PSA_s softmaxes theta before the contraction

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)

    def spatial_pool(self, x: torch.Tensor) -> torch.Tensor:
        input_x = self.conv_v_right(x)
        batch, channel, height, width = input_x.size()
        input_x = input_x.view(batch, channel, height * width)
        context_mask = self.conv_q_right(x).view(batch, 1, height * width)
        context_mask = self.softmax_right(context_mask)
        context = torch.matmul(input_x, context_mask.transpose(1, 2)).unsqueeze(-1)
        return x * self.sigmoid(self.conv_up(context))

    def channel_pool(self, x: torch.Tensor) -> torch.Tensor:
        g_x = self.conv_q_left(x)
        batch, channel, height, width = g_x.size()
        avg_x = self.avg_pool(g_x)
        batch, channel, avg_x_h, avg_x_w = avg_x.size()
        avg_x = avg_x.view(batch, channel, avg_x_h * avg_x_w).permute(0, 2, 1)
        theta_x = self.conv_v_left(x).view(batch, self.inter_planes, height * width)
        if self.avg_softmax_first:
            theta_x = self.softmax_left(theta_x)
            context = torch.matmul(avg_x, theta_x)
        else:
            context = self.softmax_left(torch.matmul(avg_x, theta_x))
        context = context.view(batch, 1, height, width)
        return x * self.sigmoid(context)


def _spatial_softmax(t: torch.Tensor, inv_count: torch.Tensor) -> torch.Tensor:
    """Softmax over H, W as ``e / mean(e) / (H*W)``: no sum of H*W terms (F1)."""
    e = torch.exp(t - t.amax((2, 3), keepdim=True))
    return e / e.mean((2, 3), keepdim=True) * inv_count


class _PSADeploy(_PSALayers):
    """Export-safe spatial_pool / channel_pool (see the module doc)."""

    avg_softmax_first = False

    def spatial_pool(self, x: torch.Tensor) -> torch.Tensor:
        mask = self.conv_q_right(x)
        e = torch.exp(mask - mask.amax((2, 3), keepdim=True))
        pooled = (x * e).mean((2, 3), keepdim=True) / e.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self._up(self.conv_v_right(pooled)))

    def _up(self, context: torch.Tensor) -> torch.Tensor:
        return self.conv_up(context)

    def channel_pool(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.conv_q_left(x.mean((2, 3), keepdim=True))  # the conv has no bias: commutes
        theta = self.conv_v_left(x)
        inv_count = 1.0 / pixel_count(x)
        if self.avg_softmax_first:
            context = (avg * _spatial_softmax(theta, inv_count)).sum(1, keepdim=True)
        else:
            context = _spatial_softmax((avg * theta).sum(1, keepdim=True), inv_count)
        return x * torch.sigmoid(context)


class PSAPReference(_PSAReference):
    """``PSA_p`` as published: ``channel_pool(x) + spatial_pool(x)``."""

    def __init__(self, channels: int, planes: int | None = None, kernel_size: int = 1,
                 stride: int = 1) -> None:
        super().__init__(channels, planes, kernel_size, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.channel_pool(x) + self.spatial_pool(x)


class PSAP(_PSADeploy):
    """Export-safe ``PSA_p``."""

    def __init__(self, channels: int, planes: int | None = None, kernel_size: int = 1,
                 stride: int = 1) -> None:
        super().__init__(channels, planes, kernel_size, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.channel_pool(x) + self.spatial_pool(x)


class _Sequential:
    """PSA_s: bottleneck ``conv_up`` with LayerNorm, theta softmaxed first, branches in series."""

    block_name = "psa_s"
    avg_softmax_first = True
    ratio = 4

    def _conv_up(self) -> nn.Module:
        mid = self.inter_planes // self.ratio
        return nn.Sequential(nn.Conv2d(self.inter_planes, mid, kernel_size=1),
                             nn.LayerNorm([mid, 1, 1]), nn.ReLU(inplace=True),
                             nn.Conv2d(mid, self.planes, kernel_size=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.channel_pool(self.spatial_pool(x))


class PSASReference(_Sequential, _PSAReference):
    """``PSA_s`` as published."""

    def __init__(self, channels: int, planes: int | None = None, kernel_size: int = 1,
                 stride: int = 1) -> None:
        super().__init__(channels, planes, kernel_size, stride, minimum=4)


class PSAS(_Sequential, _PSADeploy):
    """Export-safe ``PSA_s`` (H9: ``F.layer_norm``, one LayerNormalization at opset 17)."""

    def __init__(self, channels: int, planes: int | None = None, kernel_size: int = 1,
                 stride: int = 1) -> None:
        super().__init__(channels, planes, kernel_size, stride, minimum=4)

    def _up(self, context: torch.Tensor) -> torch.Tensor:
        conv1, norm, _, conv2 = self.conv_up
        hidden = F.layer_norm(conv1(context), norm.normalized_shape, norm.weight, norm.bias,
                              norm.eps)
        return conv2(F.relu(hidden))


def _channels_from(sd: Mapping[str, Any]) -> dict[str, Any]:
    return {"channels": int(sd["conv_q_right.weight"].shape[1])}


HYPERPARAMS = {"psa_p": _channels_from, "psa_s": _channels_from}
