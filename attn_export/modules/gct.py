"""Gated Channel Transformation (Yang et al., "Gated Channel Transformation for Visual
Recognition", CVPR 2020, arXiv:1909.11519).

Reference follows the seed ``channel-attention.md`` GCT (= z-x-yang/GCT ``PyTorch/GCT.py``): a
per-channel l2 (or l1) embedding of the map scaled by ``alpha``, a channel normalisation, then
``x * (1 + tanh(gamma * norm_embedding + beta))``. The published code ends an unknown ``mode`` with
``print`` and ``sys.exit()`` (and never imports ``sys``); both forms refuse it at construction.

Deploy form (F1): the reference sums ``x**2`` (or ``|x|``) over H*W, which leaves the FP16 range
(65504) on ordinary maps: 80x80 with ``|x|`` around 10 already sums to ~2e5, the embedding becomes
``inf`` and the gate ``NaN``. With n = H*W,
``sqrt(sum x^2 + eps) = sqrt(n) * sqrt(mean x^2 + eps/n)``, and the ``sqrt(n)`` cancels between the
embedding and its channel norm (likewise ``n`` in l1 mode), so the deploy form works with spatial
means and ``eps / n`` only: algebraically the same gate, every intermediate bounded by ``max x^2``
instead of ``n * max x^2`` (FP16 then holds ``|x| < 256``, where ``x * x`` stays below 65504; the
reference overflows from ``n * mean x^2 > 65504``). n is counted in the graph from the input (a
ReduceSum over a one-channel map of ones), not read from ``x.shape``, so dynamic H/W exports need
no shape arithmetic.

As in the published code, ``after_relu`` only matters in l1 mode (it skips the ``abs``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from attn_export.errors import BlockConfigError
from attn_export.modules.base import AttentionBlock, pixel_count

MODES = ("l2", "l1")


def _check_args(channels: int, epsilon: float, mode: str) -> None:
    if channels < 1:
        raise BlockConfigError(f"gct: channels must be >= 1, got {channels}")
    if mode not in MODES:
        raise BlockConfigError(f"gct: mode must be one of {', '.join(MODES)}, got {mode!r}")
    if epsilon < 0:
        raise BlockConfigError(f"gct: epsilon must be >= 0, got {epsilon}")


class _GCTParams(AttentionBlock):
    """The three ``(1, C, 1, 1)`` parameters and the settings both forms share."""

    def __init__(
        self, channels: int, epsilon: float = 1e-5, mode: str = "l2", after_relu: bool = False
    ) -> None:
        _check_args(channels, epsilon, mode)
        super().__init__(channels=channels, epsilon=epsilon, mode=mode, after_relu=after_relu)
        self.alpha = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.epsilon = epsilon
        self.mode = mode
        self.after_relu = after_relu


class GCTReference(_GCTParams):
    """GCT as published: spatial sums, FP32 only in practice (F1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "l2":
            embedding = (x.pow(2).sum((2, 3), keepdim=True) + self.epsilon).pow(0.5) * self.alpha
            norm = self.gamma / (embedding.pow(2).mean(dim=1, keepdim=True) + self.epsilon).pow(0.5)
        else:
            _x = x if self.after_relu else torch.abs(x)
            embedding = _x.sum((2, 3), keepdim=True) * self.alpha
            norm = self.gamma / (torch.abs(embedding).mean(dim=1, keepdim=True) + self.epsilon)
        gate = 1.0 + torch.tanh(embedding * norm + self.beta)
        return x * gate


def _nonzero(d: torch.Tensor) -> torch.Tensor:
    # d >= eps / n > 0 in FP32; in FP16 eps / n underflows to 0 and an all-zero map would give 0/0.
    # 1 where d == 0 keeps the gate finite there (x * gate is 0 whatever the gate). A Where rather
    # than adding a cast boolean: bool -> float casts are what older TensorRT parsers lack.
    return torch.where(d > 0, d, 1.0)


class GCT(_GCTParams):
    """Export-safe GCT: mean-based, FP16-safe (F1), equal to the reference in FP32."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        eps_n = self.epsilon / pixel_count(x)  # eps / n, (N, 1, 1, 1)
        if self.mode == "l2":
            # F1: reference embedding = sqrt(n) * m,
            # norm = gamma / (sqrt(n) * sqrt(mean_c m^2 + eps/n)); sqrt(n) cancels.
            # x * x, not x.pow(2): ONNX Runtime's CPU Pow kernel costs ~2.5 passes over the map
            # against ~1 for a Mul, and the square is most of this block's time.
            m = ((x * x).mean((2, 3), keepdim=True) + eps_n).sqrt() * self.alpha
            z = m / _nonzero(m.pow(2).mean(dim=1, keepdim=True) + eps_n).sqrt() * self.gamma
        else:
            # F1: reference embedding = n * a; norm = gamma / (n * (mean_c |a| + eps/n))
            a = (x if self.after_relu else x.abs()).mean((2, 3), keepdim=True) * self.alpha
            z = a / _nonzero(a.abs().mean(dim=1, keepdim=True) + eps_n) * self.gamma
        # Divide before scaling by gamma: |m| / sqrt(mean_c m^2) <= sqrt(C), |a| / mean_c |a| <= C,
        # whereas gamma / d overflows FP16 once d is tiny (eps / n on near-zero maps).
        return x * (1.0 + torch.tanh(z + self.beta))


def _hyperparams(sd: Mapping[str, Any]) -> dict[str, int]:
    return {"channels": int(sd["alpha"].shape[1])}


HYPERPARAMS = {"gct": _hyperparams}
