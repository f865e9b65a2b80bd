"""Criss-Cross Attention (Huang et al., "CCNet: Criss-Cross Attention for Semantic Segmentation",
ICCV 2019 / TPAMI 2020, arXiv:1811.11721).

Reference follows speedinghzl/CCNet, branch ``pure-python``, ``cc_attention/functions.py``
``CrissCrossAttention(in_dim)``: 1x1 query/key convs (``in_dim // 8``) and a value conv, energies of
each pixel against its column (``energy_H``, the pixel itself masked by ``INF``, a ``-inf``
diagonal) and its row (``energy_W``), one softmax over the H + W candidates, the two weighted sums
and ``gamma * (out_H + out_W) + x`` (``gamma`` starts at 0). The master branch's CUDA kernels
(``ca_weight``/``ca_map``, compiled ``_ext``) compute the same values; the pure-python branch is
the readable statement of them. H12: ``INF`` builds its mask with ``.cuda()``; the reference here
builds it on ``x.device``, so it runs on CPU too (same values).

Deploy form, the same ``state_dict`` (``query_conv.*``, ``key_conv.*``, ``value_conv.*``, ``gamma``):

- H11: the published code folds W (or H) into the batch with ``view(m_batchsize * width, ...)``;
  here the energies are batched matmuls over ``(N, W, H, C')`` / ``(N, H, W, C')`` permutations,
  and every permutation is a constant Transpose: no Reshape, no Shape, every shape mode.
- The ``-inf`` mask is not FP16-safe (``-inf - -inf`` and ``0 * inf`` give NaN in fused kernels,
  and a float16 engine may fold it to -65504 plus a large energy), so the softmax is written out:
  ``exp(e - m)`` with ``m`` the row-and-column maximum, the diagonal of the column part multiplied
  by 0, and one division by the sum. The pixel's own energy is also in the row part, so ``m`` is
  unchanged by the mask and the sum is at least 1: no overflow, no division by a vanishing sum.
  The 0/1 mask comes from the map itself (a cumulative sum of ones gives row numbers), so it
  follows dynamic H without shape arithmetic.
- Memory: the energies hold ``N * H * W * (H + W)`` weights; the deploy form refuses maps above
  ``max_attention_mb`` (see ``attention_memory``) instead of exhausting memory.
"""

from __future__ import annotations

import torch
from torch import nn

from attn_export.modules.attention_memory import (
    DEFAULT_MAX_ATTENTION_MB,
    check_max_attention_mb,
    refuse_large_attention,
)
from attn_export.modules.base import AttentionBlock, reduced_channels

MEMORY = "N*H*W*(H+W) attention weights (H+W-1 per pixel): 33 M per image at 256x256"


def INF(B: int, H: int, W: int, device: torch.device) -> torch.Tensor:  # noqa: N802 (published)
    """The published ``-inf`` diagonal, on ``device`` instead of ``.cuda()`` (H12)."""
    return -torch.diag(torch.tensor(float("inf"), device=device).repeat(H), 0).unsqueeze(0) \
        .repeat(B * W, 1, 1)


class _CCLayers(AttentionBlock):
    def __init__(self, channels: int, **extra) -> None:
        super().__init__(channels=channels, **extra)
        inner = reduced_channels(channels, 8, "criss_cross")
        self.query_conv = nn.Conv2d(channels, inner, kernel_size=1)
        self.key_conv = nn.Conv2d(channels, inner, kernel_size=1)
        self.value_conv = nn.Conv2d(channels, channels, kernel_size=1)
        self.gamma = nn.Parameter(torch.zeros(1))


class CrissCrossAttentionReference(_CCLayers):
    """``CrissCrossAttention`` of CCNet's pure-python branch."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels)
        self.softmax = nn.Softmax(dim=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.size()
        q = self.query_conv(x)
        q_h = q.permute(0, 3, 1, 2).contiguous().view(b * w, -1, h).permute(0, 2, 1)
        q_w = q.permute(0, 2, 1, 3).contiguous().view(b * h, -1, w).permute(0, 2, 1)
        k = self.key_conv(x)
        k_h = k.permute(0, 3, 1, 2).contiguous().view(b * w, -1, h)
        k_w = k.permute(0, 2, 1, 3).contiguous().view(b * h, -1, w)
        v = self.value_conv(x)
        v_h = v.permute(0, 3, 1, 2).contiguous().view(b * w, -1, h)
        v_w = v.permute(0, 2, 1, 3).contiguous().view(b * h, -1, w)
        energy_h = (torch.bmm(q_h, k_h) + INF(b, h, w, x.device)).view(b, w, h, h) \
            .permute(0, 2, 1, 3)
        energy_w = torch.bmm(q_w, k_w).view(b, h, w, w)
        concate = self.softmax(torch.cat([energy_h, energy_w], 3))
        att_h = concate[:, :, :, 0:h].permute(0, 2, 1, 3).contiguous().view(b * w, h, h)
        att_w = concate[:, :, :, h:h + w].contiguous().view(b * h, w, w)
        out_h = torch.bmm(v_h, att_h.permute(0, 2, 1)).view(b, w, -1, h).permute(0, 2, 3, 1)
        out_w = torch.bmm(v_w, att_w.permute(0, 2, 1)).view(b, h, -1, w).permute(0, 2, 1, 3)
        return self.gamma * (out_h + out_w) + x


def off_diagonal(x: torch.Tensor) -> torch.Tensor:
    """``(N, H, 1, H)`` with 0 where the two row numbers agree and 1 elsewhere, from ``x``'s H.

    Row numbers are a cumulative sum of ones (exact integers), so ``min(|r - r'|, 1)`` is an
    exact 0/1 mask that follows a dynamic H with no Shape/Range arithmetic.
    """
    rows = (x[:, :1, :, :1] * 0.0 + 1.0).cumsum(2)  # (N, 1, H, 1): 1..H
    return (rows.permute(0, 2, 3, 1) - rows.permute(0, 3, 1, 2)).abs().clamp(max=1.0)


class CrissCrossAttention(_CCLayers):
    """Export-safe criss-cross attention with an FP16-safe masked softmax (see module doc)."""

    def __init__(self, channels: int, max_attention_mb: float = DEFAULT_MAX_ATTENTION_MB) -> None:
        super().__init__(channels, max_attention_mb=max_attention_mb)
        self.max_attention_mb = check_max_attention_mb("criss_cross", max_attention_mb)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        refuse_large_attention("criss_cross", n * h * w * (h + w), tuple(x.shape),
                               "N*H*W*(H+W)", self.max_attention_mb)
        q, k, v = self.query_conv(x), self.key_conv(x), self.value_conv(x)
        # (N, H, W, H'): pixel (h, w) against (h', w); (N, H, W, W'): against (h, w').
        energy_h = torch.matmul(q.permute(0, 3, 2, 1), k.permute(0, 3, 1, 2)).permute(0, 2, 1, 3)
        energy_w = torch.matmul(q.permute(0, 2, 3, 1), k.permute(0, 2, 1, 3))
        peak = torch.maximum(energy_h.amax(3, keepdim=True), energy_w.amax(3, keepdim=True))
        p_h = torch.exp(energy_h - peak) * off_diagonal(x)
        p_w = torch.exp(energy_w - peak)
        total = p_h.sum(3, keepdim=True) + p_w.sum(3, keepdim=True)  # >= 1: the pixel itself
        out_h = torch.matmul(v.permute(0, 3, 1, 2), p_h.permute(0, 2, 3, 1)).permute(0, 2, 3, 1)
        out_w = torch.matmul(v.permute(0, 2, 1, 3), p_w.transpose(2, 3)).permute(0, 2, 1, 3)
        return self.gamma * (out_h + out_w) / total.permute(0, 3, 1, 2) + x

