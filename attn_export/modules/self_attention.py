"""Multi-head self-attention over the positions of a feature map: Attention Is All You Need
(Vaswani et al., NeurIPS 2017, arXiv:1706.03762), in the 2D form of timm ``layers/attention2d.py``
``Attention2d``.

Reference follows ``Attention2d`` (``head_first=False``, fused path): a 1x1 conv ``qkv`` to 3C
channels split as (3, heads, C/heads), scaled dot-product attention over the H*W positions with
``F.scaled_dot_product_attention``, a 1x1 conv ``proj``. Our kwargs are ViT's: ``qkv_bias``
(default False) for the qkv conv, and the output projection always has a bias; a timm
``Attention2d(bias=False)`` checkpoint gets a zero ``proj.bias`` on conversion (exact).
``Attention2d`` has no LayerNorm (the host network normalises before it, if at all), so H9 does
not arise inside this block.

The deploy form (H8) writes the attention out as matmul, softmax, matmul: no fused SDPA, no einsum.
It scales ``q`` before the first matmul, which is algebraically the same as scaling the logits but
keeps the FP16 intermediate ``q . k`` a factor sqrt(C/heads) smaller: ``q @ k * scale`` (timm's
unfused path) overflows 65504 long before the scaled logits do. The softmax is one Softmax node
over the last (key) axis of ``q^T k``; only the (N x C/heads) operands are transposed.
Reshaping (B, C, H, W) to (B, heads, C/heads, H*W) has two unknown dims (B and H*W) that module
constants and a single -1 cannot express, so the deploy form passes the batch size through from
the map (and restores (B, C, H, W) with ``reshape_as(x)``): Shape -> Reshape with no arithmetic on
sizes (H11); the graph therefore holds Shape ops, unlike the other blocks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attn_export.errors import BlockConfigError
from attn_export.modules.base import AttentionBlock


def _head_dim(channels: int, num_heads: int) -> int:
    if not isinstance(num_heads, int) or isinstance(num_heads, bool) or num_heads < 1:
        raise BlockConfigError(f"mhsa: num_heads must be a positive int, got {num_heads!r}")
    if channels % num_heads:
        fits = ", ".join(str(h) for h in (1, 2, 4, 8, 16) if channels % h == 0)
        raise BlockConfigError(
            f"mhsa: channels={channels} is not divisible by num_heads={num_heads}; pick a head "
            f"count that divides it (e.g. {fits})"
        )
    return channels // num_heads


class _Modules(AttentionBlock):
    """The submodules both forms share (keys ``qkv.*``, ``proj.*``)."""

    def __init__(self, channels: int, num_heads: int, qkv_bias: bool) -> None:
        head_dim = _head_dim(channels, num_heads)
        super().__init__(channels=channels, num_heads=num_heads, qkv_bias=qkv_bias)
        self.num_heads = num_heads
        self.dim_head = head_dim
        self.scale = head_dim**-0.5
        self.qkv = nn.Conv2d(channels, channels * 3, 1, bias=qkv_bias)
        self.proj = nn.Conv2d(channels, channels, 1)


class MHSAReference(_Modules):
    """timm ``Attention2d``-style attention with the fused ``scaled_dot_product_attention``."""

    def __init__(self, channels: int, num_heads: int = 8, qkv_bias: bool = False) -> None:
        super().__init__(channels, num_heads, qkv_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        q, k, v = self.qkv(x).reshape(B, 3, self.num_heads, self.dim_head, -1).unbind(1)
        x = F.scaled_dot_product_attention(
            q.transpose(-1, -2).contiguous(),
            k.transpose(-1, -2).contiguous(),
            v.transpose(-1, -2).contiguous(),
        ).transpose(-1, -2).reshape(B, -1, H, W)
        return self.proj(x)


class MHSA(_Modules):
    """Export-safe attention: explicit matmul/softmax/matmul, q pre-scaled for FP16."""

    def __init__(self, channels: int, num_heads: int = 8, qkv_bias: bool = False) -> None:
        super().__init__(channels, num_heads, qkv_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, 3C, H, W) -> (B, 3 * heads, dim_head, H*W): the batch is passed through from x and
        # H*W is the -1; no arithmetic on sizes (H11). unflatten would need opset >= 13.
        qkv = self.qkv(x).reshape(x.shape[0], 3 * self.num_heads, self.dim_head, -1)
        h = self.num_heads  # constant slices: chunk() would export shape arithmetic
        q, k, v = qkv[:, :h], qkv[:, h : 2 * h], qkv[:, 2 * h :]  # each (B, heads, dim_head, N)
        # Speed (tuned on ONNX Runtime CPU 1.32): the softmax runs over the last axis as one
        # Softmax node, valid in every opset (opsets < 13 flatten from `axis` on, which over the
        # last axis is the same). The form before, explicit Max/Sub/Exp/Sum/Div over the key axis
        # -2 of k^T q, made five full passes over the (N x N) logits with ORT's slow non-trailing
        # reductions: 2.1x the published graph at 1x256x28x28, 3.8x at 1x64x40x40. The three
        # transposes act on (N x dim_head) operands only, and ORT folds them into its MatMuls.
        qt = (q * self.scale).transpose(-1, -2)  # FP16: scale before the matmul, never q . k
        attn = torch.softmax(qt @ k, dim=-1)  # H8: (B, heads, N_queries, N_keys), no SDPA/einsum
        out = (attn @ v.transpose(-1, -2)).transpose(-1, -2)  # (B, heads, dim_head, N_queries)
        return self.proj(out.reshape_as(x))


# ----------------------------------------------------------------------------------------------
# Checkpoint layouts (see attn_export/modules/checkpoints.py). Every layout below orders the 3C
# qkv outputs as (q|k|v, head, dim) like ours; timm's ``head_first=True`` orders them (head, q|k|v,
# dim), which needs num_heads to undo and has no converter.


def _with_proj_bias(out: dict) -> dict:
    if "proj.bias" not in out:
        out["proj.bias"] = torch.zeros(out["proj.weight"].shape[0], dtype=out["proj.weight"].dtype)
    return out


def _mhsa_from_timm(sd: dict) -> dict:
    """timm ``Attention2d`` (``head_first=False``): same keys; ``bias=False`` lacks proj.bias."""
    out = {"qkv.weight": sd["qkv.weight"], "proj.weight": sd["proj.weight"]}
    for key in ("qkv.bias", "proj.bias"):
        if key in sd:
            out[key] = sd[key]
    return _with_proj_bias(out)


def _mhsa_from_timm_vit(sd: dict) -> dict:
    """timm ViT ``Attention`` (tokens = flattened positions): Linear qkv/proj as 1x1 convs."""
    from attn_export.errors import CheckpointError
    from attn_export.modules.checkpoints import conv1x1_from_linear

    norms = sorted(k for k in sd if k.startswith(("q_norm.", "k_norm.", "norm.")))
    if norms:
        raise CheckpointError(
            f"mhsa: the timm Attention has qk_norm / scale_norm layers ({', '.join(norms)}), "
            "which mhsa does not have; only the plain ViT Attention converts"
        )
    out = {"qkv.weight": conv1x1_from_linear(sd["qkv.weight"]),
           "proj.weight": conv1x1_from_linear(sd["proj.weight"])}
    for key in ("qkv.bias", "proj.bias"):
        if key in sd:
            out[key] = sd[key]
    return _with_proj_bias(out)


def _mhsa_from_torch(sd: dict) -> dict:
    """``torch.nn.MultiheadAttention`` (packed in_proj, same q|k|v, head order) as mhsa."""
    from attn_export.errors import CheckpointError
    from attn_export.modules.checkpoints import conv1x1_from_linear

    extra = sorted(k for k in sd if k in ("bias_k", "bias_v", "q_proj_weight"))
    if extra:
        raise CheckpointError(
            f"mhsa: the MultiheadAttention has {', '.join(extra)} (add_bias_kv or kdim/vdim != "
            "embed_dim), which self-attention over one map does not have"
        )
    out = {"qkv.weight": conv1x1_from_linear(sd["in_proj_weight"]),
           "proj.weight": conv1x1_from_linear(sd["out_proj.weight"])}
    if "in_proj_bias" in sd:
        out["qkv.bias"] = sd["in_proj_bias"]
    if "out_proj.bias" in sd:
        out["proj.bias"] = sd["out_proj.bias"]
    return _with_proj_bias(out)


def _mhsa_hyperparams(sd: dict) -> dict:
    """channels and qkv_bias; num_heads leaves no trace in the weights (pass it, default 8)."""
    from attn_export.errors import CheckpointError

    channels = int(sd["proj.weight"].shape[0])
    if tuple(sd["qkv.weight"].shape[:2]) != (3 * channels, channels):
        raise CheckpointError(
            f"mhsa: qkv.weight has shape {tuple(sd['qkv.weight'].shape)}, expected "
            f"({3 * channels}, {channels}, 1, 1) for proj.weight's {channels} channels"
        )
    return {"channels": channels, "qkv_bias": "qkv.bias" in sd}


SOURCES = {"mhsa": {"timm": _mhsa_from_timm, "timm_vit": _mhsa_from_timm_vit,
                    "torch": _mhsa_from_torch}}
HYPERPARAMS = {"mhsa": _mhsa_hyperparams}
