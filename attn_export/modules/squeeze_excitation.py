"""Squeeze-and-Excitation Networks (Hu et al., CVPR 2018, arXiv:1709.01507).

Reference follows the seed ``channel-attention.md`` SEAttention (= moskomule/senet.pytorch):
global average pool, Linear -> ReLU -> Linear -> Sigmoid, no biases. ``bias=True`` (not in the seed)
adds biases to both Linear layers so timm ``SEModule`` and Cadene ``SEModule`` checkpoints, which
have them, load exactly (``convert_state_dict("se", sd, source="timm")``).
"""

from __future__ import annotations

import torch
from torch import nn

from attn_export.modules.base import AttentionBlock, reduced_channels


def _excitation(channels: int, reduction: int, bias: bool = False) -> nn.Sequential:
    hidden = reduced_channels(channels, reduction, "se")
    return nn.Sequential(
        nn.Linear(channels, hidden, bias=bias),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, channels, bias=bias),
        nn.Sigmoid(),
    )


class SEReference(AttentionBlock):
    """SE as published: ``AdaptiveAvgPool2d(1)`` and views computed from ``x.size()``."""

    def __init__(self, channels: int, reduction: int = 16, bias: bool = False) -> None:
        super().__init__(channels=channels, reduction=reduction, bias=bias)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = _excitation(channels, reduction, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, _, _ = x.size()
        y = self.avg_pool(x).view(b, c)
        y = self.fc(y).view(b, c, 1, 1)
        return x * y.expand_as(x)


class SE(AttentionBlock):
    """Export-safe SE: a mean reduction instead of adaptive pooling, no sizes read from ``x``."""

    def __init__(self, channels: int, reduction: int = 16, bias: bool = False) -> None:
        super().__init__(channels=channels, reduction=reduction, bias=bias)
        self.fc = _excitation(channels, reduction, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x.mean((2, 3)))  # H4: a reduction, not a pool kernel sized from the input
        return x * y.unsqueeze(-1).unsqueeze(-1)


# ----------------------------------------------------------------------------------------------
# Checkpoint layouts (see attn_export/modules/checkpoints.py).


def _se_from_conv_layout(sd: dict) -> dict:
    """timm ``SEModule`` / Cadene ``SEModule``: ``fc1``/``fc2`` 1x1 convs, biases by default.

    timm's optional ``bn`` (``norm_layer``) between fc1 and the ReLU is folded into fc1 (exact in
    eval mode). A bias-free timm SE (``bias=False``) converts to ``bias=False``; where only one
    layer ends up with a bias, the other gets zeros so our single ``bias`` flag fits.
    """
    from attn_export.modules.checkpoints import (
        batchnorm_params,
        fold_batchnorm,
        linear_from_conv1x1,
    )

    w1, b1 = linear_from_conv1x1(sd["fc1.weight"]), sd.get("fc1.bias")
    w2, b2 = linear_from_conv1x1(sd["fc2.weight"]), sd.get("fc2.bias")
    if "bn.weight" in sd:
        w1, b1 = fold_batchnorm(w1, b1, batchnorm_params(sd, "bn."))
    out = {"fc.0.weight": w1, "fc.2.weight": w2}
    if b1 is not None or b2 is not None:
        out["fc.0.bias"] = b1 if b1 is not None else torch.zeros(w1.shape[0], dtype=w1.dtype)
        out["fc.2.bias"] = b2 if b2 is not None else torch.zeros(w2.shape[0], dtype=w2.dtype)
    return out


def _se_hyperparams(sd: dict) -> dict:
    from attn_export.modules.checkpoints import reduction_for

    hidden, channels = sd["fc.0.weight"].shape
    return {
        "channels": int(channels),
        "reduction": reduction_for(int(channels), int(hidden)),
        "bias": "fc.0.bias" in sd,
    }


# timm's ``add_maxpool`` variant leaves no trace in the weights and is not SE: it is not supported.
SOURCES = {"se": {"timm": _se_from_conv_layout, "cadene": _se_from_conv_layout}}
HYPERPARAMS = {"se": _se_hyperparams}
