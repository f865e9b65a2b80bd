"""CBAM: Convolutional Block Attention Module (Woo et al., ECCV 2018, arXiv:1807.06521).

Reference follows the seed ``attention-in-small-object-detection.md`` cbam_block: a channel gate
(shared 1x1-conv MLP over average- and max-pooled maps, no biases) then a spatial gate (7x7 conv
over the channel-wise [mean, max] maps). The official Jongchan/attention-module layout (Linear MLP
with biases, BatchNorm in the spatial gate, [max, mean] order) and timm's load through
``convert_state_dict``: ``mlp_bias=True`` / ``spatial_bias=True`` (not in the seed, off by default)
give the MLP and the spatial conv the biases those layouts have, the eval-mode BatchNorm of the
spatial gate is folded into the conv, and the [max, mean] input channels are swapped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attn_export.errors import BlockConfigError
from attn_export.modules.base import AttentionBlock, reduced_channels


def _spatial_padding(kernel_size: int) -> int:
    if kernel_size not in (3, 7):
        raise BlockConfigError(
            f"cbam: kernel_size must be 3 or 7 (as published), got {kernel_size}"
        )
    return 3 if kernel_size == 7 else 1


class ChannelAttention(nn.Module):
    """Channel gate of the seed code (keys ``fc1``, ``fc2``)."""

    def __init__(self, in_planes: int, ratio: int = 8, bias: bool = False) -> None:
        super().__init__()
        hidden = reduced_channels(in_planes, ratio, "cbam")
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.max_pool = nn.AdaptiveMaxPool2d(1)
        self.fc1 = nn.Conv2d(in_planes, hidden, 1, bias=bias)
        self.relu1 = nn.ReLU()
        self.fc2 = nn.Conv2d(hidden, in_planes, 1, bias=bias)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg_out = self.fc2(self.relu1(self.fc1(self.avg_pool(x))))
        max_out = self.fc2(self.relu1(self.fc1(self.max_pool(x))))
        return self.sigmoid(avg_out + max_out)


class SpatialAttention(nn.Module):
    """Spatial gate of the seed code (key ``conv1``), input order [mean, max]."""

    def __init__(self, kernel_size: int = 7, bias: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 1, kernel_size, padding=_spatial_padding(kernel_size), bias=bias)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg_out = torch.mean(x, dim=1, keepdim=True)
        max_out, _ = torch.max(x, dim=1, keepdim=True)
        return self.sigmoid(self.conv1(torch.cat([avg_out, max_out], dim=1)))


class _CBAMBase(AttentionBlock):
    """Channel gate then spatial gate; the two forms differ only in the gate classes."""

    channel_gate: type[nn.Module]
    spatial_gate: type[nn.Module]

    def __init__(
        self,
        channels: int,
        ratio: int = 8,
        kernel_size: int = 7,
        mlp_bias: bool = False,
        spatial_bias: bool = False,
    ) -> None:
        super().__init__(
            channels=channels, ratio=ratio, kernel_size=kernel_size, mlp_bias=mlp_bias,
            spatial_bias=spatial_bias,
        )
        self.channelattention = self.channel_gate(channels, ratio, mlp_bias)
        self.spatialattention = self.spatial_gate(kernel_size, spatial_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.channelattention(x)
        return x * self.spatialattention(x)


class CBAMReference(_CBAMBase):
    """CBAM as published in the seed code."""

    channel_gate = ChannelAttention
    spatial_gate = SpatialAttention


class _ChannelGate(nn.Module):
    def __init__(self, channels: int, ratio: int, bias: bool) -> None:
        super().__init__()
        hidden = reduced_channels(channels, ratio, "cbam")
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=bias)
        self.relu1 = nn.ReLU()
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = x.mean((2, 3), keepdim=True)  # H4
        mx = x.amax((2, 3), keepdim=True)  # H3: GlobalMax-like reduction, not a fixed MaxPool
        mlp_avg = self.fc2(self.relu1(self.fc1(avg)))
        return torch.sigmoid(mlp_avg + self.fc2(self.relu1(self.fc1(mx))))


MAX_CHANNEL_GROUPS = 16
"""Pieces the spatial gate splits the channels into before its Max/Add trees (see _SpatialGate)."""


def channel_groups(channels: int, most: int = MAX_CHANNEL_GROUPS) -> int:
    """The largest divisor of ``channels`` up to ``most``: equal pieces, so the trees broadcast."""
    return max(g for g in range(1, min(most, channels) + 1) if channels % g == 0)


def _tree(pieces: list[torch.Tensor], op) -> torch.Tensor:
    """``op`` folded over ``pieces`` as a balanced binary tree (log2 depth, one node per pair)."""
    while len(pieces) > 1:
        pairs = [op(a, b) for a, b in zip(pieces[::2], pieces[1::2])]
        pieces = pairs + pieces[len(pairs) * 2:]
    return pieces[0]


def channel_max(x: torch.Tensor, channels: int) -> torch.Tensor:
    """``x.amax(1, keepdim=True)`` as one Split into equal pieces, a Max tree and a ReduceMax on
    the last piece: bit-exact, and what ONNX Runtime CPU runs fast (see :class:`_SpatialGate`).
    ``channels`` is the module constant the split sizes come from (no shape read from ``x``)."""
    peak = _tree(list(torch.split(x, channels // channel_groups(channels), dim=1)), torch.maximum)
    return peak.amax(1, keepdim=True) if peak.shape[1] > 1 else peak  # H5: amax keeps dim 1


def channel_mean(x: torch.Tensor, channels: int) -> torch.Tensor:
    """``x.mean(1, keepdim=True)`` as a 1x1 convolution with weights ``1 / channels``: ONNX
    Runtime CPU runs it as one pass over ``x`` where its ReduceMean over axis 1 is slow (tuned on
    ORT 1.32 CPU). INT8 export keeps this conv float (``int8_from_onnx.mean_convs``)."""
    weight = torch.full((1, channels, 1, 1), 1.0 / channels, dtype=x.dtype, device=x.device)
    return F.conv2d(x, weight)


class _SpatialGate(nn.Module):
    """Spatial gate over the channel-wise [mean, max] maps, the max computed the way ONNX
    Runtime CPU runs fast (tuned on ORT 1.32 CPU, 1 and 2 threads).

    ``ReduceMean``/``ReduceMax`` over axis 1 took 4.0 + 4.4 floors at 1x256x56x56 in ORT's
    profile (a one-pass ``Mul`` is 1 floor): ORT reduces over a non-trailing axis slowly. For the
    max, the map is split once into ``groups`` equal channel pieces (one Split node, 1 floor),
    the pieces are combined by a balanced tree of elementwise Max (reading them once, ~0.8
    floor), and only the last ``C / groups`` channels go through ReduceMax, on a map ``groups``
    times smaller (0.12 floor); bit-exact. One piece per channel would win at 56x56 but lose 3x
    at 14x14 (per-node cost of 2C nodes); 16 pieces win at 14x14, 56x56 and 160x160 alike.

    The mean is a 1x1 convolution with weights 1/C (:func:`channel_mean`): ORT's ReduceMean over
    axis 1 took 3.3-4 floors at 1x256x56x56, the conv and its NCHWc reorder ~1.5; the whole graph
    went from 9.1 to 5.5 floors there. A quantizer would put a Q/DQ pair on the gated map in
    front of that conv, shared by the final gate multiply (F2 forbids that), so INT8 export
    recognises the conv by its weight (one constant everywhere, no bias, one output channel:
    ``macs.mean_convs``) and keeps it float. An Add tree over the split pieces was also tried:
    one Q/DQ pair per Add, whose rounding failed the INT8 tolerance on post-ReLU maps.
    TensorRT has its own channel-reduction kernels; this form has not been timed there.
    """

    def __init__(self, kernel_size: int, bias: bool, channels: int = 0) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 1, kernel_size, padding=_spatial_padding(kernel_size), bias=bias)
        self.channels = channels  # 0: plain ReduceMean / ReduceMax (set by CBAM.__init__)

    def channel_stats(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 2, H, W): channel mean and channel max, [mean, max] as the published gate."""
        c = self.channels
        groups = channel_groups(c) if c else 1
        if groups == 1:
            # H5: amax keeps the channel dim; torch.max(x, 1)[0].unsqueeze(1) breaks shape inference.
            return torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)
        return torch.cat([channel_mean(x, c), channel_max(x, c)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.conv1(self.channel_stats(x)))


class CBAM(_CBAMBase):
    """Export-safe CBAM: reductions instead of adaptive pools, same keys as the reference."""

    channel_gate = _ChannelGate
    spatial_gate = _SpatialGate

    def __init__(
        self,
        channels: int,
        ratio: int = 8,
        kernel_size: int = 7,
        mlp_bias: bool = False,
        spatial_bias: bool = False,
    ) -> None:
        super().__init__(channels, ratio, kernel_size, mlp_bias, spatial_bias)
        self.spatialattention.channels = channels  # a plain attribute: no new state_dict keys


# ----------------------------------------------------------------------------------------------
# Checkpoint layouts (see attn_export/modules/checkpoints.py).


def _spatial_from_conv_bn(sd: dict, prefix: str, swap_max_mean: bool) -> dict:
    """Spatial gate conv (+ eval-mode BatchNorm folded in) as ``spatialattention.conv1.*``."""
    from attn_export.errors import CheckpointError
    from attn_export.modules.checkpoints import batchnorm_params, fold_batchnorm

    if f"{prefix}conv.weight" not in sd:
        raise CheckpointError(
            f"cbam: no spatial gate in the checkpoint (no {prefix}conv.weight): a CBAM built with "
            "no_spatial=True is a channel gate only, which our cbam (always with its spatial "
            "gate) cannot represent"
        )
    weight, bias = sd[f"{prefix}conv.weight"], sd.get(f"{prefix}conv.bias")
    if f"{prefix}bn.weight" in sd:
        # Both published gates build BatchNorm2d with eps=1e-5 (official: eps=1e-5, momentum=0.01).
        weight, bias = fold_batchnorm(weight, bias, batchnorm_params(sd, f"{prefix}bn."), 1e-5)
    if swap_max_mean:
        weight = weight[:, [1, 0]]  # official ChannelPool is [max, mean]; ours is [mean, max]
    out = {"spatialattention.conv1.weight": weight}
    if bias is not None:
        out["spatialattention.conv1.bias"] = bias
    return out


def _cbam_from_official(sd: dict) -> dict:
    """Jongchan/attention-module ``MODELS/cbam.py`` CBAM (default pool_types ['avg', 'max']).

    ChannelGate.mlp = Flatten, Linear(+bias), ReLU, Linear(+bias) -> 1x1 convs with biases
    (``mlp_bias=True``); SpatialGate.spatial = conv(2->1, 7x7, no bias) + BatchNorm -> folded
    into a conv with bias (``spatial_bias=True``), input channels swapped from [max, mean] to
    [mean, max].
    The 'lp'/'lse' pool types leave no trace in the weights and are not supported.
    """
    from attn_export.modules.checkpoints import conv1x1_from_linear

    out = {
        "channelattention.fc1.weight": conv1x1_from_linear(sd["ChannelGate.mlp.1.weight"]),
        "channelattention.fc1.bias": sd["ChannelGate.mlp.1.bias"],
        "channelattention.fc2.weight": conv1x1_from_linear(sd["ChannelGate.mlp.3.weight"]),
        "channelattention.fc2.bias": sd["ChannelGate.mlp.3.bias"],
    }
    return {**out, **_spatial_from_conv_bn(sd, "SpatialGate.spatial.", swap_max_mean=True)}


def _cbam_from_timm(sd: dict) -> dict:
    """timm ``layers/cbam.py`` CbamModule: ``channel.fc1/fc2`` 1x1 convs (bias only with
    ``mlp_bias=True``), ``spatial.conv`` = ConvNormAct(2, 1, k) (conv + BatchNorm, [mean, max])."""
    out = {
        "channelattention.fc1.weight": sd["channel.fc1.weight"],
        "channelattention.fc2.weight": sd["channel.fc2.weight"],
    }
    for fc in ("fc1", "fc2"):
        if f"channel.{fc}.bias" in sd:
            out[f"channelattention.{fc}.bias"] = sd[f"channel.{fc}.bias"]
    return {**out, **_spatial_from_conv_bn(sd, "spatial.conv.", swap_max_mean=False)}


def _cbam_hyperparams(sd: dict) -> dict:
    from attn_export.modules.checkpoints import reduction_for

    hidden, channels = sd["channelattention.fc1.weight"].shape[:2]
    return {
        "channels": int(channels),
        "ratio": reduction_for(int(channels), int(hidden)),
        "kernel_size": int(sd["spatialattention.conv1.weight"].shape[-1]),
        "mlp_bias": "channelattention.fc1.bias" in sd,
        "spatial_bias": "spatialattention.conv1.bias" in sd,
    }


SOURCES = {"cbam": {"official": _cbam_from_official, "timm": _cbam_from_timm}}
HYPERPARAMS = {"cbam": _cbam_hyperparams}
