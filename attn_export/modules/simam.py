"""SimAM: A Simple, Parameter-Free Attention Module for CNNs (Yang et al., ICML 2021).

Reference follows the seed ``channel-spatial-attention.md`` simam_module (= ZjjConan/SimAM): the
energy of each neuron from its squared distance to the channel mean, over the channel variance
``sum((x - mu)^2) / (H*W - 1)``, through a sigmoid gate. No parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from attn_export.errors import BlockConfigError
from attn_export.modules.base import AttentionBlock, pixel_count


def _check_lambda(e_lambda: float) -> float:
    if isinstance(e_lambda, bool) or not isinstance(e_lambda, (int, float)) or not e_lambda > 0:
        raise BlockConfigError(
            f"simam: e_lambda must be a positive number (it keeps constant maps finite), "
            f"got {e_lambda!r}; the published default is 1e-4"
        )
    return float(e_lambda)


class SimAMReference(AttentionBlock):
    """SimAM as published: the variance as a sum over H*W divided by ``n = H*W - 1``."""

    def __init__(self, channels: int, e_lambda: float = 1e-4) -> None:
        super().__init__(channels=channels, e_lambda=e_lambda)
        self.activaton = nn.Sigmoid()  # sic: the published attribute name
        self.e_lambda = _check_lambda(e_lambda)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.size()
        n = w * h - 1
        x_minus_mu_square = (x - x.mean(dim=[2, 3], keepdim=True)).pow(2)
        y = x_minus_mu_square / (
            4 * (x_minus_mu_square.sum(dim=[2, 3], keepdim=True) / n + self.e_lambda)
        ) + 0.5
        return x * self.activaton(y)


class SimAM(AttentionBlock):
    """FP16-safe, shape-free SimAM (F1).

    The published ``sum((x - mu)^2)`` over H*W passes float16's 65504 on ordinary activations
    (|x| ~ 10 on an 80x80 map sums to ~2e5), which turns the gate into a flat sigmoid(0.5). The
    same variance is ``mean((x - mu)^2) / (1 - 1/(H*W))``: the mean stays in range. H*W comes
    from the graph itself (``pixel_count``: a ReduceSum over a one-channel map of ones) rather
    than from ``x.size()`` (H11), so one graph serves every H, W with no Shape arithmetic. In
    float16 that count saturates (or stops growing at 2048 with a float16 accumulator), where
    ``1 - 1/(H*W)`` is 1 to float16 precision anyway. A 1x1 map has no variance (n = 0): both
    forms give NaN there, as the published code does.
    """

    def __init__(self, channels: int, e_lambda: float = 1e-4) -> None:
        super().__init__(channels=channels, e_lambda=e_lambda)
        self.e_lambda = _check_lambda(e_lambda)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = x - x.mean((2, 3), keepdim=True)
        d = d * d
        var = d.mean((2, 3), keepdim=True) / (1 - 1 / pixel_count(x))  # F1: mean, not sum
        y = d / (4 * (var + self.e_lambda)) + 0.5
        return x * torch.sigmoid(y)
