"""FcaNet: Frequency Channel Attention Networks (Qin et al., ICCV 2021, arXiv:2012.11879).

Reference follows the seed ``channel-attention.md`` ``MultiSpectralAttentionLayer`` (=
cfzd/FcaNet ``model/layer.py``, with its ``MultiSpectralDCTLayer`` and ``get_freq_indices``): the
channels are split into ``num_freq`` groups, each group is projected on one 2D DCT basis function
of a ``dct_h x dct_w`` (7x7 by default) grid, and the resulting vector drives an SE-style MLP and
sigmoid gate. The DCT filter is a buffer in the state_dict (``dct_layer.weight``), so checkpoints
carry it. Maps of another size are first pooled to the DCT grid with ``adaptive_avg_pool2d``; the
published code decides that with a Python test on ``x.shape`` (H12). The published asserts
(``channel % num_freq == 0``) and ``NotImplementedError`` (unknown ``freq_sel_method``) become
construction-time refusals naming the kwarg.

Deploy form (H1, H12): the adaptive pool's bins depend on H and W, so the deploy form takes the
geometry as ``input_size=(H, W)`` and pools with ``GridPool`` (``avg_pool2d`` when the grid divides
the map, constant averaging matrices otherwise, exactly ``adaptive_avg_pool2d``), or not at all
when the map already is the DCT grid: the published shape test becomes a constructor constant. Only
the batch may vary; dynamic H/W are refused with the reason. The gate is reshaped with module
constants and -1 and broadcast, instead of ``view(n, c, 1, 1).expand_as(x)`` (H11).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from attn_export.errors import BlockConfigError, ShapeModeError
from attn_export.modules.base import AttentionBlock, reduced_channels
from attn_export.modules.strip_pooling import bin_matrix

_TOP = ([0, 0, 6, 0, 0, 1, 1, 4, 5, 1, 3, 0, 0, 0, 3, 2, 4, 6, 3, 5, 5, 2, 6, 5, 5, 3, 3, 4, 2, 2, 6, 1],
        [0, 1, 0, 5, 2, 0, 2, 0, 0, 6, 0, 4, 6, 3, 5, 2, 6, 3, 3, 3, 5, 1, 1, 2, 4, 2, 1, 1, 3, 0, 5, 3])
_LOW = ([0, 0, 1, 1, 0, 2, 2, 1, 2, 0, 3, 4, 0, 1, 3, 0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5, 6, 1, 2, 3, 4],
        [0, 1, 0, 1, 2, 0, 1, 2, 2, 3, 0, 0, 4, 3, 1, 5, 4, 3, 2, 1, 0, 6, 5, 4, 3, 2, 1, 0, 6, 5, 4, 3])
_BOT = ([6, 1, 3, 3, 2, 4, 1, 2, 4, 4, 5, 1, 4, 6, 2, 5, 6, 1, 6, 2, 2, 4, 3, 3, 5, 5, 6, 2, 5, 5, 3, 6],
        [6, 4, 4, 6, 6, 3, 1, 4, 4, 5, 6, 5, 2, 2, 5, 1, 4, 3, 5, 0, 3, 1, 1, 2, 4, 2, 1, 1, 5, 3, 3, 3])
FREQ_TABLES = {"top": _TOP, "low": _LOW, "bot": _BOT}
FREQ_METHODS = tuple(f"{kind}{n}" for kind in FREQ_TABLES for n in (1, 2, 4, 8, 16, 32))
"""The published ``freq_sel_method`` values (the 7x7 frequency space ranked three ways)."""


def get_freq_indices(method: str) -> tuple[list[int], list[int]]:
    """The (u, v) DCT frequencies of ``method`` in the 7x7 space, as published."""
    if method not in FREQ_METHODS:
        raise BlockConfigError(
            f"fca: freq_sel_method must be one of {', '.join(FREQ_METHODS)}, got {method!r}"
        )
    num_freq = int(method[3:])
    xs, ys = FREQ_TABLES[method[:3]]
    return xs[:num_freq], ys[:num_freq]


def build_filter(pos: int, freq: int, size: int) -> float:
    """One orthonormal 1D DCT-II basis value, as published."""
    result = math.cos(math.pi * freq * (pos + 0.5) / size) / math.sqrt(size)
    return result if freq == 0 else result * math.sqrt(2)


def dct_filter(height: int, width: int, mapper_x, mapper_y, channels: int) -> torch.Tensor:
    """(C, height, width) filter: channel group i holds the basis function (u_i, v_i)."""
    weight = torch.zeros(channels, height, width)
    part = channels // len(mapper_x)
    for i, (u, v) in enumerate(zip(mapper_x, mapper_y)):
        for tx in range(height):
            for ty in range(width):
                weight[i * part:(i + 1) * part, tx, ty] = (build_filter(tx, u, height)
                                                          * build_filter(ty, v, width))
    return weight


class MultiSpectralDCTLayer(nn.Module):
    """The published DCT layer: a fixed filter buffer ``weight``, a weighted sum over H, W."""

    def __init__(self, height: int, width: int, mapper_x, mapper_y, channel: int) -> None:
        super().__init__()
        self.num_freq = len(mapper_x)
        self.register_buffer("weight", dct_filter(height, width, mapper_x, mapper_y, channel))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sum(x * self.weight, dim=[2, 3])


def _check_size(name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise BlockConfigError(f"fca: {name} must be a positive int (published 7), got {value!r}")
    return value


class _FCALayers(AttentionBlock):
    """DCT buffer and MLP both forms share (keys ``dct_layer.weight``, ``fc.0``, ``fc.2``)."""

    def __init__(self, channels: int, dct_h: int, dct_w: int, reduction: int,
                 freq_sel_method: str) -> None:
        mapper_x, mapper_y = get_freq_indices(freq_sel_method)
        self.dct_h, self.dct_w = _check_size("dct_h", dct_h), _check_size("dct_w", dct_w)
        if channels % len(mapper_x):
            raise BlockConfigError(
                f"fca: channels={channels} is not divisible by the {len(mapper_x)} frequencies of "
                f"freq_sel_method={freq_sel_method!r}; use a multiple of {len(mapper_x)} channels "
                "or fewer frequencies (e.g. 'top4')"
            )
        hidden = reduced_channels(channels, reduction, "fca")
        super().__init__(channels=channels, dct_h=dct_h, dct_w=dct_w, reduction=reduction,
                         freq_sel_method=freq_sel_method)
        self.channels = channels
        self.reduction = reduction
        self.num_split = len(mapper_x)
        # the frequencies of a larger grid are those of the 7x7 space, scaled (published)
        mapper_x = [u * (dct_h // 7) for u in mapper_x]
        mapper_y = [v * (dct_w // 7) for v in mapper_y]
        self.dct_layer = MultiSpectralDCTLayer(dct_h, dct_w, mapper_x, mapper_y, channels)
        self.fc = nn.Sequential(nn.Linear(channels, hidden, bias=False), nn.ReLU(inplace=True),
                                nn.Linear(hidden, channels, bias=False), nn.Sigmoid())


class FCAReference(_FCALayers):
    """``MultiSpectralAttentionLayer`` as published (adaptive pool chosen by a shape test)."""

    def __init__(self, channels: int, dct_h: int = 7, dct_w: int = 7, reduction: int = 16,
                 freq_sel_method: str = "top16") -> None:
        super().__init__(channels, dct_h, dct_w, reduction, freq_sel_method)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        x_pooled = x
        if h != self.dct_h or w != self.dct_w:
            x_pooled = F.adaptive_avg_pool2d(x, (self.dct_h, self.dct_w))
        y = self.fc(self.dct_layer(x_pooled)).view(n, c, 1, 1)
        return x * y.expand_as(x)


def _check_input_size(input_size) -> tuple[int, int]:
    if input_size is None:
        raise BlockConfigError(
            "fca: the deploy form needs the input geometry, because the adaptive pool to the "
            "7x7 DCT grid has bins that depend on H and W; pass input_size=(H, W) "
            "(to_deploy(model, input_size=(H, W)) or --input-shape), or use variant='reference'"
        )
    ok = (isinstance(input_size, (tuple, list)) and len(input_size) == 2
          and all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in input_size))
    if not ok:
        raise BlockConfigError(f"fca: input_size must be two positive integers (H, W), got {input_size!r}")
    return int(input_size[0]), int(input_size[1])


class FCA(_FCALayers):
    """Export-safe FcaNet attention for one declared ``input_size=(H, W)`` (H1, H12)."""

    def __init__(self, channels: int, dct_h: int = 7, dct_w: int = 7, reduction: int = 16,
                 freq_sel_method: str = "top16", input_size: tuple[int, int] | None = None) -> None:
        size = _check_input_size(input_size)
        super().__init__(channels, dct_h, dct_w, reduction, freq_sel_method)
        self.init_args["input_size"] = input_size
        self.input_size = size
        # H12: the published per-call shape test, decided once for the declared geometry
        self.pool = None if size == (dct_h, dct_w) else GridPool(size, (dct_h, dct_w))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (torch.jit.is_tracing() or torch.compiler.is_compiling()) \
                and tuple(x.shape[2:]) != self.input_size:
            raise ShapeModeError(
                f"fca: this deploy block was built for H, W = {self.input_size} and got "
                f"{tuple(x.shape[2:])}; rebuild it with input_size={tuple(x.shape[2:])} (the pool "
                "to the DCT grid depends on H and W), or use the reference form"
            )
        pooled = x if self.pool is None else self.pool(x)
        y = self.fc(self.dct_layer(pooled)).reshape(-1, self.channels, 1, 1)
        return x * y


class GridPool(nn.Module):
    """``adaptive_avg_pool2d(x, (bins_h, bins_w))`` for one declared size (H1), by strip_pooling's
    ``BinPool`` rule with a rectangular grid: ``avg_pool2d`` when the grid divides the map,
    constant averaging matrices (non-persistent buffers, out of the state_dict) otherwise."""

    def __init__(self, input_size: tuple[int, int], bins: tuple[int, int]) -> None:
        super().__init__()
        (h, w), (bh, bw) = input_size, bins
        self.kernel = (h // bh, w // bw) if h % bh == 0 and w % bw == 0 else None
        if self.kernel is None:
            self.register_buffer("rows", bin_matrix(h, bh), persistent=False)
            self.register_buffer("cols_t", bin_matrix(w, bw).t().contiguous(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel is not None:  # a constructor constant, not a shape test
            return F.avg_pool2d(x, self.kernel, self.kernel)
        return torch.matmul(torch.matmul(self.rows, x), self.cols_t)


def _hyperparams(sd: Mapping[str, Any]) -> dict[str, Any]:
    from attn_export.modules.checkpoints import reduction_for

    hidden, channels = (int(s) for s in sd["fc.0.weight"].shape)
    _, dct_h, dct_w = (int(s) for s in sd["dct_layer.weight"].shape)
    return {"channels": channels, "reduction": reduction_for(channels, hidden),
            "dct_h": dct_h, "dct_w": dct_w}


HYPERPARAMS = {"fca": _hyperparams}
