"""Global context block: GCNet: Non-local Networks Meet Squeeze-Excitation Networks and Beyond
(Cao et al., ICCV Workshops 2019, arXiv:1904.11492).

Reference follows xvjiarui/GCNet ``mmdet/ops/gcb/context_block.py`` ``ContextBlock`` (the same
module as mmcv's ``ContextBlock``): context modelling by attention pooling (a 1x1 conv
``conv_mask``, softmax over the H*W positions, a weighted sum of the map) or average pooling, then
one or both transforms ``conv 1x1 -> LayerNorm([planes, 1, 1]) -> ReLU -> conv 1x1`` fused by
broadcast addition (``channel_add_conv``) and/or a sigmoid gate (``channel_mul_conv``, applied
first). The official ``reset_parameters`` zero-initialises the last conv of each transform so a
fresh block is the identity (a training recipe); we keep PyTorch's default init so that a freshly
built block exercises every op in export checks. Trained checkpoints load the same either way.

The deploy form (H11) views the map once as (B, C, H*W) with the batch passed through from the
map, C a module constant and -1 for H*W (no arithmetic on sizes); ``conv_mask`` and the weighted
sum become two MatMuls on that view and the softmax over H*W is written out over its last axis. The
LayerNorm over (planes, 1, 1) becomes plain ops that are safe in FP16 (H9, see
``_ScaledLayerNorm``): we chose plain ops over ONNX ``LayerNormalization`` because they export
identically at every opset 11..21 and do not depend on the runtime keeping its normalisation layer
in FP32. ``fusion`` also takes a comma-separated string (``--set fusion=channel_add,channel_mul``).
"""

from __future__ import annotations

import torch
from torch import nn

from attn_export.errors import BlockConfigError
from attn_export.modules.base import AttentionBlock

_POOLINGS = ("att", "avg")
_FUSIONS = ("channel_add", "channel_mul")


def _fusion_tuple(fusion: tuple[str, ...] | list[str] | str) -> tuple[str, ...]:
    """``fusion`` as a tuple; a string ``"channel_add,channel_mul"`` (the CLI's --set) is split."""
    if isinstance(fusion, str):
        fusion = tuple(f.strip() for f in fusion.split(",") if f.strip())
    if not isinstance(fusion, (tuple, list)):
        raise BlockConfigError(
            f"gc: fusion must be a tuple of names from {_FUSIONS}, got {fusion!r}"
        )
    fusion = tuple(fusion)
    if not fusion or any(f not in _FUSIONS for f in fusion) or len(set(fusion)) != len(fusion):
        raise BlockConfigError(f"gc: fusion must name one or both of {_FUSIONS}, got {fusion!r}")
    return fusion


def _check_args(channels: int, ratio: float, pooling: str) -> int:
    if pooling not in _POOLINGS:
        raise BlockConfigError(f"gc: pooling must be one of {_POOLINGS}, got {pooling!r}")
    planes = int(channels * ratio)
    if planes < 1:
        raise BlockConfigError(
            f"gc: channels={channels} with ratio={ratio} leaves int(channels * ratio) = {planes} "
            "bottleneck channels (needs >= 1); use more channels or a larger ratio"
        )
    return planes


def _transform(channels: int, planes: int, norm: nn.Module) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels, planes, kernel_size=1),
        norm,
        nn.ReLU(inplace=True),
        nn.Conv2d(planes, channels, kernel_size=1),
    )


class _Modules(AttentionBlock):
    """The submodules both forms share, named as in the official code (so the keys are equal)."""

    def __init__(
        self, channels: int, ratio: float, pooling: str, fusion: tuple[str, ...] | str, norm: type
    ) -> None:
        planes = _check_args(channels, ratio, pooling)
        fusion = _fusion_tuple(fusion)
        super().__init__(channels=channels, ratio=ratio, pooling=pooling, fusion=fusion)
        self.inplanes, self.planes, self.pooling_type, self.fusion_types = (
            channels, planes, pooling, fusion)
        if pooling == "att":
            self.conv_mask = nn.Conv2d(channels, 1, kernel_size=1)
        self.channel_add_conv = (
            _transform(channels, planes, norm([planes, 1, 1])) if "channel_add" in fusion else None
        )
        self.channel_mul_conv = (
            _transform(channels, planes, norm([planes, 1, 1])) if "channel_mul" in fusion else None
        )

    def _fuse(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        out = x
        if self.channel_mul_conv is not None:
            out = out * torch.sigmoid(self.channel_mul_conv(context))
        if self.channel_add_conv is not None:
            out = out + self.channel_add_conv(context)
        return out


class ContextBlockReference(_Modules):
    """``ContextBlock`` as published: views from ``x.size()``, matmul pooling, ``nn.LayerNorm``."""

    def __init__(
        self,
        channels: int,
        ratio: float = 1.0 / 16,
        pooling: str = "att",
        fusion: tuple[str, ...] | str = ("channel_add",),
    ) -> None:
        super().__init__(channels, ratio, pooling, fusion, nn.LayerNorm)
        if pooling == "att":
            self.softmax = nn.Softmax(dim=2)
        else:
            self.avg_pool = nn.AdaptiveAvgPool2d(1)

    def spatial_pool(self, x: torch.Tensor) -> torch.Tensor:
        batch, channel, height, width = x.size()
        if self.pooling_type != "att":
            return self.avg_pool(x)
        input_x = x.view(batch, channel, height * width).unsqueeze(1)
        context_mask = self.conv_mask(x).view(batch, 1, height * width)
        context_mask = self.softmax(context_mask).unsqueeze(-1)
        context = torch.matmul(input_x, context_mask)
        return context.view(batch, channel, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fuse(x, self.spatial_pool(x))


class _ScaledLayerNorm(nn.Module):
    """``nn.LayerNorm([planes, 1, 1])`` on a (B, planes, 1, 1) context, FP16-safe (H9).

    LayerNorm squares deviations: in FP16 any ``|y - mean| > 256`` overflows 65504 (NVIDIA/TensorRT
    #2564). Dividing the deviations by ``s = max|d| + 1e-3`` first keeps every square <= 1, and
    ``d / sqrt(var(d) + eps) = (d/s) / sqrt(var(d/s) + (sqrt(eps)/s)**2)`` holds exactly for any
    ``s > 0`` (the 1e-3 only keeps ``s`` away from 0 on constant contexts). Same parameters as
    ``nn.LayerNorm`` (``weight``, ``bias`` of shape (planes, 1, 1)).
    """

    def __init__(self, normalized_shape: list[int], eps: float = 1e-5) -> None:
        super().__init__()
        self.eps_sqrt = eps**0.5
        self.weight = nn.Parameter(torch.ones(normalized_shape))
        self.bias = nn.Parameter(torch.zeros(normalized_shape))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        d = y - y.mean(1, keepdim=True)
        s = d.abs().amax(1, keepdim=True) + 1e-3
        dn = d / s
        var = (dn * dn).mean(1, keepdim=True)  # <= 1: no FP16 overflow (F1/H9)
        rel_eps = self.eps_sqrt / s
        return dn / torch.sqrt(var + rel_eps * rel_eps) * self.weight + self.bias


class ContextBlock(_Modules):
    """Export-safe global context block: one (B, C, H*W) view, two MatMuls, FP16-safe LayerNorm."""

    def __init__(
        self,
        channels: int,
        ratio: float = 1.0 / 16,
        pooling: str = "att",
        fusion: tuple[str, ...] | str = ("channel_add",),
    ) -> None:
        super().__init__(channels, ratio, pooling, fusion, _ScaledLayerNorm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pooling_type == "att":
            context = self._attention_pool(x)
        else:
            context = x.mean((2, 3), keepdim=True)  # H4: a reduction, not an adaptive pool
        return self._fuse(x, context)

    def _attention_pool(self, x: torch.Tensor) -> torch.Tensor:
        """``conv_mask``, softmax over H*W and the weighted sum of ``x`` as two MatMuls.

        Speed (tuned on ONNX Runtime 1.32 CPU): both passes over ``x`` are MatMuls on one
        (B, C, H*W) view of it, 1.9 floors in all against 4.0 for the published graph. The form
        before (``conv_mask`` as a Conv, ``(x * p).sum((2, 3))``) cost 5.2: ORT reorders ``x`` to
        NCHWc for the C -> 1 conv (a full copy) and the weighted sum is a full-size Mul plus a
        reduction. The view passes the batch through from ``x`` and lets -1 be H*W: no
        arithmetic on sizes (H11, as in ``MHSA``); C is a module constant.
        """
        flat = x.reshape(x.shape[0], self.inplanes, -1)  # (B, C, N)
        # The weight is MatMul's first operand: (1, C) @ (B, C, N) reads x once, in layout. The
        # transposed form (x^T @ w, weight second) runs as a FusedMatMul with transA at 1.4-1.7
        # floors against 0.3 for this one, and its INT8 graph measured no closer to PyTorch.
        weight = self.conv_mask.weight.reshape(1, self.inplanes)
        # conv_mask's bias shifts every logit alike, which the softmax ignores: dropping it saves
        # an op and, in INT8, a Q/DQ pair on the logits (the bias stays in the state dict).
        logits = weight @ flat  # (B, 1, N)
        # Softmax over N written out (five ops on a (B, 1, N) tensor, negligible next to x).
        e = torch.exp(logits - logits.amax(-1, keepdim=True))
        p = e / e.sum(-1, keepdim=True)
        # A convex combination of x: bounded in FP16 (the sum of e is <= H*W, so FP16 needs
        # H*W <= 65504). ORT folds the transpose of p into the MatMul (FusedMatMul, transB).
        return (flat @ p.transpose(1, 2)).unsqueeze(-1)  # (B, C, 1, 1)


# ----------------------------------------------------------------------------------------------
# Checkpoint layouts (see attn_export/modules/checkpoints.py): the official layout is also
# mmcv's, so no converter is needed.


def _ratio_for(channels: int, planes: int) -> float:
    """A ratio with ``int(channels * ratio) == planes`` (1/16 for 64 -> 4, not 0.0624999...)."""
    for ratio in (planes / channels, (planes + 0.5) / channels):
        if int(channels * ratio) == planes:
            return ratio
    raise AssertionError("unreachable: (planes + 0.5) / channels always rounds down to planes")


def _gc_hyperparams(sd: dict) -> dict:
    fusion = tuple(f for f in _FUSIONS if f"{f}_conv.0.weight" in sd)
    if not fusion:
        raise KeyError("channel_add_conv.0.weight")
    planes, channels = sd[f"{fusion[0]}_conv.0.weight"].shape[:2]
    return {
        "channels": int(channels),
        "ratio": _ratio_for(int(channels), int(planes)),
        "pooling": "att" if "conv_mask.weight" in sd else "avg",
        "fusion": fusion,
    }


HYPERPARAMS = {"gc": _gc_hyperparams}
