"""Large Kernel Attention and the VAN attention unit (Guo et al., "Visual Attention Network",
Computational Visual Media 2023, arXiv:2202.09741).

Reference follows the seed ``channel-spatial-attention.md`` LKA and Attention (=
Visual-Attention-Network/VAN-Classification ``models/van.py`` AttentionModule and SpatialAttention):
``lka`` is a 5x5 depthwise conv, a 7x7 depthwise conv with dilation 3, a 1x1 conv, and the product
with the input; ``van`` wraps it as 1x1 conv -> GELU -> LKA -> 1x1 conv plus the shortcut. The
seed's ``Attention.forward`` ends with a bare ``return`` (it returns ``None``); the official code returns
``x`` (projection plus shortcut), which both our forms do.

There is no pooling, no reshape and no shape arithmetic to remove: the convolutions have fixed
kernels, pads and dilations and export at any H/W with either exporter. The deploy forms differ
from the reference only by dropping the ``x.clone()`` the published forward makes of its input
(a copy that changes nothing in inference, exported as an extra Identity node at best); they are
separate classes so the registry, ``to_deploy`` and the tests treat every block alike.

Other layouts: mmpretrain ``VAN`` (``DW_conv``, ``DW_D_conv``) and Hugging Face transformers
``VanSpatialAttentionLayer`` (``pre_projection.conv``, ``attention_layer.attention.depth_wise``...)
load through ``convert_state_dict(..., source="mmpretrain" | "hf")``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from attn_export.errors import BlockConfigError
from attn_export.modules.base import AttentionBlock


def _check_channels(channels: int, block: str) -> None:
    if channels < 1:
        raise BlockConfigError(f"{block}: channels must be >= 1, got {channels}")


class _LKALayers(AttentionBlock):
    """The three convolutions of LKA (keys ``conv0``, ``conv_spatial``, ``conv1``)."""

    def __init__(self, channels: int) -> None:
        _check_channels(channels, "lka")
        super().__init__(channels=channels)
        dim = channels
        self.conv0 = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.conv_spatial = nn.Conv2d(dim, dim, 7, stride=1, padding=9, groups=dim, dilation=3)
        self.conv1 = nn.Conv2d(dim, dim, 1)


class LKAReference(_LKALayers):
    """LKA as published."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.clone()
        attn = self.conv0(x)
        attn = self.conv_spatial(attn)
        attn = self.conv1(attn)
        return u * attn


class LKA(_LKALayers):
    """LKA for export: the reference without the input clone (nothing else needed changing)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.conv1(self.conv_spatial(self.conv0(x)))


class _VANLayers(AttentionBlock):
    """``proj_1``, GELU, the LKA ``spatial_gating_unit`` and ``proj_2``."""

    def __init__(self, channels: int, lka: type[_LKALayers]) -> None:
        _check_channels(channels, "van")
        super().__init__(channels=channels)
        self.proj_1 = nn.Conv2d(channels, channels, 1)
        self.activation = nn.GELU()
        self.spatial_gating_unit = lka(channels)
        self.proj_2 = nn.Conv2d(channels, channels, 1)


class VANAttentionReference(_VANLayers):
    """VAN's attention unit as published (with the official ``return x``)."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, LKAReference)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shorcut = x.clone()  # sic, as published
        x = self.proj_1(x)
        x = self.activation(x)
        x = self.spatial_gating_unit(x)
        x = self.proj_2(x)
        x = x + shorcut
        return x  # the seed's bare `return` drops this; the official code returns it


class VANAttention(_VANLayers):
    """VAN attention for export: the reference without the clones, same keys."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, LKA)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.spatial_gating_unit(self.activation(self.proj_1(x)))
        return self.proj_2(y) + x


_LKA_KEYS = {
    "mmpretrain": {"DW_conv": "conv0", "DW_D_conv": "conv_spatial", "conv1": "conv1"},
    "hf": {
        "attention.depth_wise": "conv0",
        "attention.depth_wise_dilated": "conv_spatial",
        "attention.point_wise": "conv1",
    },
}
_VAN_OUTER_KEYS = {
    "mmpretrain": {"proj_1": "proj_1", "proj_2": "proj_2"},
    "hf": {"pre_projection.conv": "proj_1", "post_projection": "proj_2"},
}
_VAN_LKA_PREFIX = {"mmpretrain": "spatial_gating_unit.", "hf": "attention_layer."}


def _rename(sd: Mapping[str, Any], names: Mapping[str, str], theirs: str = "", ours: str = ""):
    return {
        f"{ours}{new}.{p}": sd[f"{theirs}{old}.{p}"]
        for old, new in names.items()
        for p in ("weight", "bias")
    }


def _lka_converter(source: str):
    def convert(sd: Mapping[str, Any]) -> dict[str, Any]:
        return _rename(sd, _LKA_KEYS[source])

    convert.__doc__ = f"{source} LKA keys -> ours."
    return convert


def _van_converter(source: str):
    def convert(sd: Mapping[str, Any]) -> dict[str, Any]:
        out = _rename(sd, _VAN_OUTER_KEYS[source])
        out.update(_rename(sd, _LKA_KEYS[source], _VAN_LKA_PREFIX[source], "spatial_gating_unit."))
        return out

    convert.__doc__ = f"{source} VAN attention keys -> ours."
    return convert


SOURCES = {
    "lka": {source: _lka_converter(source) for source in _LKA_KEYS},
    "van": {source: _van_converter(source) for source in _LKA_KEYS},
}
HYPERPARAMS = {
    "lka": lambda sd: {"channels": int(sd["conv0.weight"].shape[0])},
    "van": lambda sd: {"channels": int(sd["proj_1.weight"].shape[0])},
}
