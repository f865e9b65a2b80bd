"""DANet's position and channel attention modules: Dual Attention Network for Scene Segmentation
(Fu et al., CVPR 2019, arXiv:1809.02983).

Reference follows junfu1115/DANet ``encoding/nn/da_att.py`` ``PAM_Module`` and ``CAM_Module``
(``gamma`` starts at 0, so a fresh block is the identity): PAM is SAGAN-style self-attention over
the H*W positions with in_dim/8-channel query and key convs; CAM attends over channels with
``softmax(max(E) - E)`` for the channel Gram matrix ``E = X X^T``. mmseg's ``DAHead`` ships both
under other keys (``query_project``/``key_project``/``value_project``, ``gamma.scale``): the
``mmseg`` converters map them.

Deploy forms:

* PAM (H11): reshapes keep the batch from the map and use -1 for H*W, ``reshape_as(x)`` restores
  the map; the published form transposes the (N, N) attention for its second bmm, the deploy form
  computes ``K^T Q`` (keys first) and softmaxes over the key axis as explicit reductions (an ONNX
  Softmax over a non-last axis needs a Transpose before opset 13), so only the small key map is
  transposed and ``V @ A`` lands in the reference's channel order.
* PAM memory: the (N, N) attention costs ``4 * (H*W)^2`` bytes per image in FP32 (64 MiB at 64x64,
  1 GiB at 128x128) and twice that while the softmax runs. Both forms refuse maps with more than
  ``max_positions`` positions (default 16384 = 128x128) when run eagerly (the export runs the
  block eagerly at every validation size first); raise it when the memory is there. A graph
  exported with dynamic H/W cannot enforce it: the bound then applies to what you feed it.
* CAM (F1, H5): ``E`` sums ``x^2`` over H*W, which leaves the FP16 range on ordinary maps (64x64
  with ``|x|`` around 4 already sums to 65536). Softmax is shift-invariant per row, so
  ``softmax(max E - E) = softmax(min E - E)``, and with ``E' = E / n`` (the Gram matrix of
  ``X / sqrt(n)``, bounded by ``max x^2``) the logits are ``(min E' - E') * n <= 0``: where that
  product overflows FP16 it goes to ``-inf``, whose ``exp`` is 0, the right limit, and each row's
  minimum gives exactly 0, so the softmax never divides by 0. ``n`` is counted in the graph
  (``pixel_count``), not read from the shape; in FP16 that count saturates above 65504 positions
  (256x256), so FP16 CAM graphs hold maps up to that size. The published ``torch.max(...)[0].expand_as``
  (ReduceMax + ArgMax + Expand, H5) becomes one ``amin`` that broadcasts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from attn_export.errors import BlockConfigError, CheckpointError, ShapeModeError
from attn_export.modules.base import AttentionBlock, pixel_count

DEFAULT_MAX_POSITIONS = 16384
"""128 x 128 positions: a 1 GiB (N, N) FP32 attention per image."""


def _check_max_positions(max_positions: int) -> int:
    if not isinstance(max_positions, int) or isinstance(max_positions, bool) or max_positions < 1:
        raise BlockConfigError(
            f"pam: max_positions must be a positive int (H*W bound), got {max_positions!r}"
        )
    return max_positions


def attention_bytes(height: int, width: int, batch: int = 1, itemsize: int = 4) -> int:
    """Bytes of PAM's (H*W, H*W) attention matrix for ``batch`` images."""
    n = height * width
    return batch * n * n * itemsize


def _is_exporting() -> bool:
    return torch.jit.is_tracing() or torch.compiler.is_compiling()


class _PAMLayers(AttentionBlock):
    """The convs and scale both forms share (keys ``query_conv``, ``key_conv``, ``value_conv``,
    ``gamma``)."""

    def __init__(self, channels: int, max_positions: int = DEFAULT_MAX_POSITIONS) -> None:
        if channels < 8:
            raise BlockConfigError(
                f"pam: channels={channels} leaves in_dim // 8 = {channels // 8} query/key channels; "
                "PAM needs channels >= 8"
            )
        super().__init__(channels=channels, max_positions=max_positions)
        self.chanel_in = channels  # sic, the published attribute name
        self.inter = channels // 8
        self.max_positions = _check_max_positions(max_positions)
        self.query_conv = nn.Conv2d(channels, self.inter, kernel_size=1)
        self.key_conv = nn.Conv2d(channels, self.inter, kernel_size=1)
        self.value_conv = nn.Conv2d(channels, channels, kernel_size=1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def _check_memory(self, x: torch.Tensor) -> None:
        if _is_exporting():
            return
        h, w = int(x.shape[2]), int(x.shape[3])
        if h * w > self.max_positions:
            mib = attention_bytes(h, w, int(x.shape[0])) / 2**20
            raise ShapeModeError(
                f"pam: a {h}x{w} map has {h * w} positions; its (H*W, H*W) attention needs "
                f"{mib:.0f} MiB for a batch of {x.shape[0]} in FP32, above max_positions="
                f"{self.max_positions}; pass max_positions={h * w} (--set max_positions={h * w}) "
                "if the memory is there, or attend on a smaller map"
            )


class PAMReference(_PAMLayers):
    """``PAM_Module`` as published (bmm, softmax over the last axis, permuted attention)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_memory(x)
        m_batchsize, C, height, width = x.size()
        proj_query = self.query_conv(x).view(m_batchsize, -1, width * height).permute(0, 2, 1)
        proj_key = self.key_conv(x).view(m_batchsize, -1, width * height)
        attention = torch.softmax(torch.bmm(proj_query, proj_key), dim=-1)
        proj_value = self.value_conv(x).view(m_batchsize, -1, width * height)
        out = torch.bmm(proj_value, attention.permute(0, 2, 1)).view(m_batchsize, C, height, width)
        return self.gamma * out + x


class PAM(_PAMLayers):
    """Export-safe PAM: keys-first logits, explicit softmax over the key axis, no (N, N)
    transpose, reshapes from module constants and -1 (H11)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_memory(x)
        b = x.shape[0]  # passed through, never computed with (H11)
        q = self.query_conv(x).reshape(b, self.inter, -1)  # (B, C', N)
        k = self.key_conv(x).reshape(b, self.inter, -1)
        v = self.value_conv(x).reshape(b, self.chanel_in, -1)  # (B, C, N)
        logits = k.transpose(1, 2) @ q  # (B, N_keys, N_queries): the published energy, transposed
        e = torch.exp(logits - logits.amax(1, keepdim=True))
        attention = e / e.sum(1, keepdim=True)  # softmax over the keys
        return self.gamma * (v @ attention).reshape_as(x) + x


class CAMReference(AttentionBlock):
    """``CAM_Module`` as published: Gram matrix over H*W, ``softmax(max E - E)`` (FP32 only, F1)."""

    def __init__(self, channels: int) -> None:
        if channels < 1:
            raise BlockConfigError(f"cam: channels must be >= 1, got {channels}")
        super().__init__(channels=channels)
        self.chanel_in = channels
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m_batchsize, C, height, width = x.size()
        proj_query = x.view(m_batchsize, C, -1)
        proj_key = x.view(m_batchsize, C, -1).permute(0, 2, 1)
        energy = torch.bmm(proj_query, proj_key)
        energy_new = torch.max(energy, -1, keepdim=True)[0].expand_as(energy) - energy
        attention = torch.softmax(energy_new, dim=-1)
        proj_value = x.view(m_batchsize, C, -1)
        out = torch.bmm(attention, proj_value).view(m_batchsize, C, height, width)
        return self.gamma * out + x


class CAM(CAMReference):
    """Export-safe, FP16-safe CAM: mean-scaled Gram matrix, ``(min E' - E') * n`` logits."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        n = pixel_count(x)  # (B, 1, 1, 1), counted in the graph
        flat = x.reshape(b, self.chanel_in, -1)
        scaled = (x * n.rsqrt()).reshape(b, self.chanel_in, -1)  # X / sqrt(n)
        energy = scaled @ scaled.transpose(1, 2)  # E / n: bounded by max x^2 (F1)
        # softmax(max E - E) == softmax(min E - E): the logits are <= 0, overflow goes to -inf.
        logits = (energy.amin(-1, keepdim=True) - energy) * n.squeeze(-1)
        attention = torch.softmax(logits, dim=-1)
        return self.gamma * (attention @ flat).reshape_as(x) + x


# ----------------------------------------------------------------------------------------------
# Checkpoint layouts (see attn_export/modules/checkpoints.py).


def _pam_from_mmseg(sd: Mapping[str, Any]) -> dict[str, Any]:
    """mmseg ``da_head.PAM``: ``*_project`` 1x1 convs with bias, ``gamma.scale`` (mmcv Scale)."""
    out = {"gamma": sd["gamma.scale"].reshape(1)}
    for ours, theirs in (("query_conv", "query_project"), ("key_conv", "key_project"),
                         ("value_conv", "value_project")):
        out[f"{ours}.weight"] = sd[f"{theirs}.weight"]
        out[f"{ours}.bias"] = sd[f"{theirs}.bias"]
    return out


def _cam_from_mmseg(sd: Mapping[str, Any]) -> dict[str, Any]:
    """mmseg ``da_head.CAM``: the one scale is ``gamma.scale``."""
    return {"gamma": sd["gamma.scale"].reshape(1)}


def _pam_hyperparams(sd: Mapping[str, Any]) -> dict[str, int]:
    channels = int(sd["value_conv.weight"].shape[0])
    inter = int(sd["query_conv.weight"].shape[0])
    if inter != channels // 8:
        raise CheckpointError(
            f"pam: query_conv maps {channels} channels to {inter}; DANet's PAM uses in_dim // 8 = "
            f"{channels // 8} (an mmseg DAHead with pam_channels != channels // 8 does not fit)"
        )
    return {"channels": channels}


SOURCES = {"pam": {"mmseg": _pam_from_mmseg}, "cam": {"mmseg": _cam_from_mmseg}}
HYPERPARAMS = {"pam": _pam_hyperparams}
