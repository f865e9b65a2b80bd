"""Rotate to Attend: Convolutional Triplet Attention Module (Misra et al., WACV 2021, arXiv:2010.03045).

Reference follows the official landskape-ai/triplet-attention ``triplet_attention.py`` (root file):
three ``AttentionGate`` branches, each a Z-pool ([max, mean] over one axis) -> 7x7 conv -> BN ->
sigmoid, applied to the map rotated so that the pooled axis is the channel axis: ``cw`` pools over H
(gate on the C x W plane), ``hc`` over W (gate on the H x C plane), ``hw`` over C (the CBAM-like
spatial gate); the three gated maps are averaged. Keys: ``cw.conv.conv.weight``, ``cw.conv.bn.*``
and the same under ``hc`` and ``hw`` (absent with ``no_spatial=True``). The official code hard-codes
the 7x7 kernel; ours takes it as ``kernel_size``. The older ``MODELS/triplet_attention.py`` layout
(``ChannelGateH``/``ChannelGateW``/``SpatialGate`` with ``.spatial``), which the repository's
``MODELS/resnet.py`` training code builds, loads through ``convert_state_dict(..., source="models")``.

The deploy form never permutes the input map: it pools first (H5: ``amax`` with the axis kept
explicit instead of ``torch.max(x, 1)[0].unsqueeze(1)``), stacks the two pooled planes as the conv's
two input channels, and lets the gates broadcast back. For the ``hc`` branch the pooled plane comes
out as C x H instead of the official H x C; a correlation of the transposed plane with the
transposed kernel is the transpose of the original correlation, so the conv runs with
``weight.transpose(2, 3)`` (a constant the exporters fold) and no feature map is ever transposed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attn_export.errors import BlockConfigError
from attn_export.modules.base import AttentionBlock
from attn_export.modules.cbam import channel_max, channel_mean

StateDict = dict[str, torch.Tensor]


def _padding(kernel_size: int) -> int:
    if not isinstance(kernel_size, int) or isinstance(kernel_size, bool) or kernel_size < 1 \
            or kernel_size % 2 == 0:
        raise BlockConfigError(
            f"triplet: kernel_size must be an odd integer >= 1 (official: 7), got {kernel_size!r}; "
            "an even kernel with the official (k - 1) // 2 padding would shrink the map"
        )
    return (kernel_size - 1) // 2


def _check_channels(channels: int) -> None:
    if not isinstance(channels, int) or isinstance(channels, bool) or channels < 1:
        raise BlockConfigError(f"triplet: channels must be a positive integer, got {channels!r}")


class BasicConv(nn.Module):
    """Official ``BasicConv`` as the gates use it: conv (no bias) -> BN, no ReLU."""

    def __init__(self, in_planes: int, out_planes: int, kernel_size: int, padding: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_planes, out_planes, kernel_size, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_planes, eps=1e-5, momentum=0.01, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class ZPool(nn.Module):
    """Official Z-pool: [max, mean] over dim 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((torch.max(x, 1)[0].unsqueeze(1), torch.mean(x, 1).unsqueeze(1)), dim=1)


class AttentionGate(nn.Module):
    """Official gate: Z-pool over dim 1 -> conv -> BN -> sigmoid, times its input."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.compress = ZPool()
        self.conv = BasicConv(2, 1, kernel_size, padding=_padding(kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.conv(self.compress(x)))


class TripletAttentionReference(AttentionBlock):
    """Triplet attention as published: each branch permutes the full map, gates it, permutes back."""

    def __init__(self, channels: int, kernel_size: int = 7, no_spatial: bool = False) -> None:
        super().__init__(channels=channels, kernel_size=kernel_size, no_spatial=no_spatial)
        _check_channels(channels)
        self.no_spatial = bool(no_spatial)
        self.cw = AttentionGate(kernel_size)
        self.hc = AttentionGate(kernel_size)
        if not self.no_spatial:
            self.hw = AttentionGate(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_out11 = self.cw(x.permute(0, 2, 1, 3).contiguous()).permute(0, 2, 1, 3).contiguous()
        x_out21 = self.hc(x.permute(0, 3, 2, 1).contiguous()).permute(0, 3, 2, 1).contiguous()
        if self.no_spatial:
            return 1 / 2 * (x_out11 + x_out21)
        return 1 / 3 * (self.hw(x) + x_out11 + x_out21)


class _Gate(nn.Module):
    """Conv -> BN -> sigmoid on an already pooled (N, 2, A, B) map; keys as ``AttentionGate``."""

    def __init__(self, kernel_size: int) -> None:
        super().__init__()
        self.padding = _padding(kernel_size)
        self.conv = BasicConv(2, 1, kernel_size, padding=self.padding)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.conv(pooled))

    def transposed(self, pooled: torch.Tensor) -> torch.Tensor:
        """The gate of the transposed plane, computed on ``pooled`` as laid out (B x A)."""
        weight = self.conv.conv.weight.transpose(2, 3)  # parameter only: folded at export
        return torch.sigmoid(self.conv.bn(F.conv2d(pooled, weight, padding=self.padding)))


def _zpool(x: torch.Tensor, dim: int) -> torch.Tensor:
    """[max, mean] over ``dim`` of (N, C, H, W), stacked as two channels in front of the rest.

    H5: ``amax`` instead of ``torch.max(x, dim)[0]`` (values-and-indices max).
    """
    return torch.stack((x.amax(dim), x.mean(dim)), dim=1)


class TripletAttention(AttentionBlock):
    """Export-safe triplet attention: pool, then gate; no permute of the input map, same keys."""

    def __init__(self, channels: int, kernel_size: int = 7, no_spatial: bool = False) -> None:
        super().__init__(channels=channels, kernel_size=kernel_size, no_spatial=no_spatial)
        _check_channels(channels)
        self.channels = channels  # a plain attribute: the split sizes of channel_max
        self.no_spatial = bool(no_spatial)
        self.cw = _Gate(kernel_size)
        self.hc = _Gate(kernel_size)
        if not self.no_spatial:
            self.hw = _Gate(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # cw: pool over H -> (N, 2, C, W) is the official rotated plane; gate (N, 1, C, W) -> (N, C, 1, W)
        s_cw = self.cw(_zpool(x, 2)).squeeze(1).unsqueeze(2)
        # hc: pool over W -> (N, 2, C, H), the official H x C plane transposed; gate -> (N, C, H, 1)
        s_hc = self.hc.transposed(_zpool(x, 3)).squeeze(1).unsqueeze(3)
        if self.no_spatial:
            return x * (s_cw * (1 / 2) + s_hc * (1 / 2))
        # Speed (tuned on ONNX Runtime 1.32 CPU): ORT reduces over the channel axis slowly; the
        # channel max as a Split + Max tree (CBAM's form) took it from 7.6 floors to ~2 at
        # 1x256x56x56, bit-exact, and the channel mean as CBAM's 1x1 conv with weights 1/C (INT8
        # keeps that conv float, see cbam.py) from 3.4-4.5 floors to ~1.5.
        c = self.channels
        pooled = torch.cat((channel_max(x, c), channel_mean(x, c)), dim=1)
        s_hw = self.hw(pooled)
        # x*a + x*b + x*c == x*(a+b+c): one full-size multiply, the 1/3 applied to the small gates.
        return x * (s_hw * (1 / 3) + s_cw * (1 / 3) + s_hc * (1 / 3))


_MODELS_PREFIXES = {"ChannelGateH.spatial.": "cw.conv.", "ChannelGateW.spatial.": "hc.conv.",
                    "SpatialGate.spatial.": "hw.conv."}


def _from_models(sd: StateDict) -> StateDict:
    """``MODELS/triplet_attention.py`` keys -> ours (same tensors, renamed gates)."""
    if "ChannelGateH.spatial.conv.weight" not in sd:  # KeyError: convert_state_dict reports it
        raise KeyError("ChannelGateH.spatial.conv.weight")
    out: StateDict = {}
    for key, value in sd.items():
        prefix = next((p for p in _MODELS_PREFIXES if key.startswith(p)), None)
        if prefix is None:
            raise KeyError(f"{key} (not under {', '.join(_MODELS_PREFIXES)})")
        out[_MODELS_PREFIXES[prefix] + key[len(prefix):]] = value
    return out


def _infer_triplet(sd: StateDict) -> dict[str, object]:
    """kernel_size and no_spatial; the gates hold no per-channel tensor, so channels is free."""
    return {
        "kernel_size": int(sd["cw.conv.conv.weight"].shape[-1]),
        "no_spatial": "hw.conv.conv.weight" not in sd,
    }


SOURCES = {"triplet": {"models": _from_models}}
HYPERPARAMS = {"triplet": _infer_triplet}
