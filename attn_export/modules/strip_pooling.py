"""Strip Pooling: Rethinking Spatial Pooling for Scene Parsing (Hou et al., CVPR 2020,
arXiv:2003.13328).

Reference follows the seed ``channel-spatial-attention.md`` StripPooling (the mixed pooling module
of Andrew-Qibin/SPNet): two pyramid branches that average x1 into 20x20 and 12x12 bins and
upsample back, two strip branches that average x2 over rows and over columns, each mixed by a
small conv, fused by a 1x1 conv and added to the input.

``SPBlock`` (registry ``sp_block``) is the paper's strip pooling module alone, following
Andrew-Qibin/SPNet ``models/resnet.py`` ``SPBlock``: a (3, 1) conv over the row means and a (1, 3)
conv over the column means, each with a BatchNorm, expanded back to H x W, summed, ReLU, a 1x1 conv
and a sigmoid. The published module returns that gate and SPNet's Bottleneck multiplies it in
(``out = out * self.spm(out)``); both our forms return ``x * gate``, the recalibrated map. The
published ``outplanes`` must equal ``inplanes`` for that product, so the block has ``channels``
only; the published ``norm_layer=None`` default cannot build (``None(midplanes)``), so ours is
``nn.BatchNorm2d``, what SPNet's ResNet passes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from attn_export.errors import BlockConfigError, CheckpointError, ShapeModeError
from attn_export.modules.base import AttentionBlock, reduced_channels

DEFAULT_UP_KWARGS = {"mode": "bilinear", "align_corners": True}


def _check_pool_size(pool_size: tuple[int, int]) -> tuple[int, int]:
    ok = (isinstance(pool_size, (tuple, list)) and len(pool_size) == 2
          and all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in pool_size))
    if not ok:
        raise BlockConfigError(
            f"strip_pooling: pool_size must be two positive integers (the published (20, 12)), "
            f"got {pool_size!r}"
        )
    return int(pool_size[0]), int(pool_size[1])


def _branch(cin: int, cout: int, kernel, padding, norm_layer, relu: bool) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, kernel, 1, padding, bias=False), norm_layer(cout)]
    return nn.Sequential(*layers, nn.ReLU(True)) if relu else nn.Sequential(*layers)


class _StripPoolingLayers(AttentionBlock):
    """The convs both forms share (keys ``conv1_1.*`` ... ``conv3.*`` of the published code)."""

    def __init__(self, channels: int, pool_size, norm_layer, up_kwargs) -> None:
        super().__init__(channels=channels, pool_size=pool_size, norm_layer=norm_layer,
                         up_kwargs=up_kwargs)
        self.pool_size = _check_pool_size(pool_size)
        inter = reduced_channels(channels, 4, "strip_pooling")  # int(in_channels / 4)
        self.conv1_1 = _branch(channels, inter, 1, 0, norm_layer, relu=True)
        self.conv1_2 = _branch(channels, inter, 1, 0, norm_layer, relu=True)
        self.conv2_0 = _branch(inter, inter, 3, 1, norm_layer, relu=False)
        self.conv2_1 = _branch(inter, inter, 3, 1, norm_layer, relu=False)
        self.conv2_2 = _branch(inter, inter, 3, 1, norm_layer, relu=False)
        self.conv2_3 = _branch(inter, inter, (1, 3), (0, 1), norm_layer, relu=False)
        self.conv2_4 = _branch(inter, inter, (3, 1), (1, 0), norm_layer, relu=False)
        self.conv2_5 = _branch(inter, inter, 3, 1, norm_layer, relu=True)
        self.conv2_6 = _branch(inter, inter, 3, 1, norm_layer, relu=True)
        self.conv3 = _branch(inter * 2, channels, 1, 0, norm_layer, relu=False)
        self._up_kwargs = dict(DEFAULT_UP_KWARGS if up_kwargs is None else up_kwargs)


class StripPoolingReference(_StripPoolingLayers):
    """StripPooling as published: adaptive pools, upsampling to the runtime size."""

    def __init__(self, channels: int, pool_size: tuple[int, int] = (20, 12),
                 norm_layer: type[nn.Module] = nn.BatchNorm2d,
                 up_kwargs: dict | None = None) -> None:
        super().__init__(channels, pool_size, norm_layer, up_kwargs)
        self.pool1 = nn.AdaptiveAvgPool2d(self.pool_size[0])
        self.pool2 = nn.AdaptiveAvgPool2d(self.pool_size[1])
        self.pool3 = nn.AdaptiveAvgPool2d((1, None))
        self.pool4 = nn.AdaptiveAvgPool2d((None, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, h, w = x.size()
        x1 = self.conv1_1(x)
        x2 = self.conv1_2(x)
        x2_1 = self.conv2_0(x1)
        x2_2 = F.interpolate(self.conv2_1(self.pool1(x1)), (h, w), **self._up_kwargs)
        x2_3 = F.interpolate(self.conv2_2(self.pool2(x1)), (h, w), **self._up_kwargs)
        x2_4 = F.interpolate(self.conv2_3(self.pool3(x2)), (h, w), **self._up_kwargs)
        x2_5 = F.interpolate(self.conv2_4(self.pool4(x2)), (h, w), **self._up_kwargs)
        x1 = self.conv2_5(F.relu_(x2_1 + x2_2 + x2_3))
        x2 = self.conv2_6(F.relu_(x2_5 + x2_4))
        out = self.conv3(torch.cat([x1, x2], dim=1))
        return F.relu_(x + out)


def bin_matrix(size: int, bins: int) -> torch.Tensor:
    """(bins, size) matrix whose rows average the input span ``AdaptiveAvgPool`` gives each bin."""
    m = torch.zeros(bins, size)
    for i in range(bins):
        start, end = (i * size) // bins, ((i + 1) * size + bins - 1) // bins
        m[i, start:end] = 1.0 / (end - start)
    return m


class BinPool(nn.Module):
    """``AdaptiveAvgPool2d(bins)`` for one declared input size (H1).

    When ``bins`` divides H and W the bins are a plain ``avg_pool2d`` with kernel = stride =
    size / bins; otherwise the bins overlap or differ in length, and ``rows @ x @ cols_t`` with
    constant averaging matrices gives them exactly. The matrices are non-persistent buffers: they
    follow ``.to()``/``.half()`` but stay out of the state_dict, whose keys match the reference.
    """

    def __init__(self, bins: int, input_size: tuple[int, int]) -> None:
        super().__init__()
        h, w = input_size
        self.kernel = (h // bins, w // bins) if h % bins == 0 and w % bins == 0 else None
        if self.kernel is None:
            self.register_buffer("rows", bin_matrix(h, bins), persistent=False)
            self.register_buffer("cols_t", bin_matrix(w, bins).t().contiguous(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel is not None:  # a constructor constant, not a shape test
            return F.avg_pool2d(x, self.kernel, self.kernel)
        return torch.matmul(torch.matmul(self.rows, x), self.cols_t)


def _check_input_size(input_size) -> tuple[int, int]:
    if input_size is None:
        raise BlockConfigError(
            "strip_pooling: the deploy form needs the input geometry, because its pyramid pools "
            "(20x20 and 12x12 bins by default) depend on H and W; pass input_size=(H, W) "
            "(to_deploy(model, input_size=(H, W)) or --input-shape), or use "
            "variant='reference' for training"
        )
    ok = (isinstance(input_size, (tuple, list)) and len(input_size) == 2
          and all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in input_size))
    if not ok:
        raise BlockConfigError(
            f"strip_pooling: input_size must be two positive integers (H, W), got {input_size!r}"
        )
    return int(input_size[0]), int(input_size[1])


class StripPooling(_StripPoolingLayers):
    """Export-safe StripPooling for one declared input size ``input_size=(H, W)``.

    H1: the 20x20 and 12x12 adaptive pools become ``BinPool`` (avg_pool2d or constant averaging
    matrices) and their upsampling targets the constant (H, W), so the graph is exact for that
    geometry and only the batch may vary. H2: the strip pools are means over one axis, and
    upsampling a length-1 axis repeats it for every interpolation mode, so broadcasting in the
    add stands for the published ``F.interpolate`` of the strips.

    Eager calls with another H, W raise ``ShapeModeError``. Under the dynamo exporter the same
    check pins H and W (the graph input gets static H, W even when asked for dynamic ones). The
    TorchScript tracer skips it (it would only add a TracerWarning) and cannot know that H and W
    were meant to be dynamic: the registry's ``shape_modes=("none", "batch")`` refuses that mode.
    """

    def __init__(self, channels: int, pool_size: tuple[int, int] = (20, 12),
                 norm_layer: type[nn.Module] = nn.BatchNorm2d,
                 up_kwargs: dict | None = None,
                 input_size: tuple[int, int] | None = None) -> None:
        size = _check_input_size(input_size)
        super().__init__(channels, pool_size, norm_layer, up_kwargs)
        self.init_args["input_size"] = input_size
        self.input_size = size
        self.pool1 = BinPool(self.pool_size[0], self.input_size)
        self.pool2 = BinPool(self.pool_size[1], self.input_size)

    def _check_size(self, x: torch.Tensor) -> None:
        if torch.jit.is_tracing():
            return
        if tuple(x.shape[2:]) != self.input_size:
            raise ShapeModeError(
                f"strip_pooling: this deploy block was built for H, W = {self.input_size} and got "
                f"{tuple(x.shape[2:])}; rebuild it with input_size={tuple(x.shape[2:])} (its pool "
                "bins depend on H and W), or use the reference form"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_size(x)
        x1 = self.conv1_1(x)
        x2 = self.conv1_2(x)
        x2_1 = self.conv2_0(x1)
        x2_2 = F.interpolate(self.conv2_1(self.pool1(x1)), self.input_size, **self._up_kwargs)
        x2_3 = F.interpolate(self.conv2_2(self.pool2(x1)), self.input_size, **self._up_kwargs)
        x2_4 = self.conv2_3(x2.mean(2, keepdim=True))  # H2: (N, C', 1, W)
        x2_5 = self.conv2_4(x2.mean(3, keepdim=True))  # H2: (N, C', H, 1)
        x1 = self.conv2_5(F.relu(x2_1 + x2_2 + x2_3))
        x2 = self.conv2_6(F.relu(x2_5 + x2_4))
        out = self.conv3(torch.cat([x1, x2], dim=1))
        return F.relu(x + out)


class _SPBlockLayers(AttentionBlock):
    """The layers both forms share (keys ``conv1``, ``bn1``, ``conv2``, ``bn2``, ``conv3``)."""

    def __init__(self, channels: int, norm_layer: type[nn.Module] = nn.BatchNorm2d) -> None:
        if channels < 1:
            raise BlockConfigError(f"sp_block: channels must be >= 1, got {channels}")
        super().__init__(channels=channels, norm_layer=norm_layer)
        midplanes = channels  # the published midplanes = outplanes
        self.conv1 = nn.Conv2d(channels, midplanes, kernel_size=(3, 1), padding=(1, 0), bias=False)
        self.bn1 = norm_layer(midplanes)
        self.conv2 = nn.Conv2d(channels, midplanes, kernel_size=(1, 3), padding=(0, 1), bias=False)
        self.bn2 = norm_layer(midplanes)
        self.conv3 = nn.Conv2d(midplanes, channels, kernel_size=1, bias=True)
        self.relu = nn.ReLU(inplace=False)


class SPBlockReference(_SPBlockLayers):
    """SPNet's ``SPBlock`` as published (adaptive strip pools, ``expand`` to the runtime H x W),
    applied as SPNet's Bottleneck applies it."""

    def __init__(self, channels: int, norm_layer: type[nn.Module] = nn.BatchNorm2d) -> None:
        super().__init__(channels, norm_layer)
        self.pool1 = nn.AdaptiveAvgPool2d((None, 1))
        self.pool2 = nn.AdaptiveAvgPool2d((1, None))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, h, w = x.size()
        x1 = self.bn1(self.conv1(self.pool1(x))).expand(-1, -1, h, w)
        x2 = self.bn2(self.conv2(self.pool2(x))).expand(-1, -1, h, w)
        gate = self.conv3(self.relu(x1 + x2)).sigmoid()
        return x * gate


class SPBlock(_SPBlockLayers):
    """Export-safe SPBlock: strip means (H2) and broadcasting instead of ``expand`` (no Shape).

    ``AdaptiveAvgPool2d((None, 1))`` exports with a kernel baked from the export size
    (houqb/CoordAttention#6): ``mean(3)`` / ``mean(2)`` follow any H, W. ``expand(-1, -1, h, w)``
    reads h, w from the runtime shape; adding an (N, C, H, 1) and an (N, C, 1, W) map broadcasts
    to the same (N, C, H, W) sum with no shape arithmetic.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.bn1(self.conv1(x.mean(3, keepdim=True)))  # (N, C, H, 1)
        x2 = self.bn2(self.conv2(x.mean(2, keepdim=True)))  # (N, C, 1, W)
        gate = self.conv3(self.relu(x1 + x2)).sigmoid()
        return x * gate


def _sp_block_hyperparams(sd: Mapping[str, Any]) -> dict[str, Any]:
    mid, channels = tuple(sd["conv1.weight"].shape[:2])
    out = int(sd["conv3.weight"].shape[0])
    if mid != channels or out != channels:
        raise CheckpointError(
            f"sp_block: the checkpoint maps {channels} channels to midplanes={mid}, "
            f"outplanes={out}; the block multiplies x by its gate, which needs "
            f"inplanes == outplanes (= midplanes in SPNet)"
        )
    return {"channels": int(channels)}


def _strip_pooling_hyperparams(sd: Mapping[str, Any]) -> dict[str, Any]:
    """channels from ``conv1_1.0.weight``; pool_size and up_kwargs hold no tensors."""
    inter, channels = tuple(sd["conv1_1.0.weight"].shape[:2])
    if inter != channels // 4:
        raise CheckpointError(
            f"strip_pooling: conv1_1 maps {channels} channels to {inter}; the block uses "
            f"int(channels / 4) = {channels // 4}"
        )
    return {"channels": channels}


HYPERPARAMS = {"strip_pooling": _strip_pooling_hyperparams, "sp_block": _sp_block_hyperparams}
