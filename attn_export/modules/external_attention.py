"""External attention: Beyond Self-attention: External Attention using Two Linear Layers for Visual
Tasks (Guo et al., IEEE TPAMI 2022, arXiv:2105.02358).

Reference follows MenghaoGuo/EANet ``model_torch.py`` ``External_attention``: a 1x1 conv, a
``Conv1d`` memory unit ``linear_0`` (C -> k keys), double normalisation (softmax over the H*W
positions, then division by the sum over the k memory slots plus 1e-9), the ``linear_1`` memory
(k -> C), a 1x1 conv + BatchNorm (``conv2``), the identity shortcut and a ReLU.

One deliberate departure, invisible in a checkpoint: the official ``__init__`` sets
``linear_1.weight.data`` to a permuted *view* of ``linear_0``'s storage, so the two stay tied
through training and ``load_state_dict`` writes one through the other (loading an untied
checkpoint corrupts ``linear_0``). We copy instead (same initial values, separate storages) and
keep PyTorch's default init otherwise, so loading a checkpoint gives exactly its tensors.

The deploy form never reshapes the map (H11): ``linear_0``/``linear_1`` run as 1x1 convolutions
on (B, C, H, W) with the same ``(k, C, 1)`` weights, the softmax over H*W is a pair of reductions
over (2, 3), and the double normalisation runs in the log domain so FP16 cannot underflow it (see
``_double_normalise``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from attn_export.errors import BlockConfigError
from attn_export.modules.base import AttentionBlock
from attn_export.modules.cbam import channel_mean

_EPS = 1e-9  # the official eps of the second normalisation
_LOG_EPS = math.log(_EPS)  # -20.72: representable in FP16, unlike 1e-9 itself


def _check_args(channels: int, k: int) -> None:
    if channels < 1:
        raise BlockConfigError(f"external: channels must be >= 1, got {channels}")
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise BlockConfigError(f"external: k (memory slots) must be a positive int, got {k!r}")


class _Modules(AttentionBlock):
    """The submodules both forms share, named as in the official code (so the keys are equal)."""

    def __init__(self, channels: int, k: int) -> None:
        _check_args(channels, k)
        super().__init__(channels=channels, k=k)
        self.k = k
        self.conv1 = nn.Conv2d(channels, channels, 1)
        self.linear_0 = nn.Conv1d(channels, k, 1, bias=False)
        self.linear_1 = nn.Conv1d(k, channels, 1, bias=False)
        with torch.no_grad():  # the official tied init, as a copy (see the module docstring)
            self.linear_1.weight.copy_(self.linear_0.weight.permute(1, 0, 2))
        self.conv2 = nn.Sequential(nn.Conv2d(channels, channels, 1, bias=False),
                                   nn.BatchNorm2d(channels))


class ExternalAttentionReference(_Modules):
    """``External_attention`` as published: views computed from ``x.size()``."""

    def __init__(self, channels: int, k: int = 64) -> None:
        super().__init__(channels, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idn = x
        x = self.conv1(x)
        b, c, h, w = x.size()
        x = x.view(b, c, h * w)
        attn = self.linear_0(x)
        attn = F.softmax(attn, dim=-1)
        attn = attn / (1e-9 + attn.sum(dim=1, keepdim=True))
        x = self.linear_1(attn)
        x = x.view(b, c, h, w)
        x = self.conv2(x)
        return F.relu(x + idn)


def _double_normalise(logits: torch.Tensor, k: int) -> torch.Tensor:
    """``p / (1e-9 + p.sum(1))`` with ``p = softmax over H*W``, computed FP16-safely.

    With ``l = log_softmax(logits)`` over (2, 3) and ``M = max_k l``, the official expression equals
    ``exp(l - M) / (sum_k exp(l - M) + exp(log(1e-9) - M))`` exactly (numerator and denominator
    multiplied by ``exp(-M)``). Every term is now in range: ``exp(l - M) <= 1``, the sum is >= 1,
    and ``log(1e-9)`` is an ordinary FP16 number. The direct form fails in FP16 twice over: 1e-9
    rounds to 0, and at large H*W or peaky logits every ``p`` of a position underflows, giving
    0 / 0 = NaN where the FP32 model gives a proper distribution. Valid for H*W <= 65504 in FP16
    (the softmax denominator is a sum of at most H*W terms <= 1).
    """
    z = logits - logits.amax((2, 3), keepdim=True)
    log_p = z - torch.log(torch.exp(z).sum((2, 3), keepdim=True))  # log-softmax over H*W
    # the sum over the k memories as CBAM's channel mean (a 1x1 conv, k times): ONNX Runtime CPU
    # reduces over axis 1 slowly, and INT8 keeps such a mean conv float. The max stays a ReduceMax:
    # CBAM's Split + Max tree would need opset 18's Split under dynamo.
    top = log_p.amax(1, keepdim=True)
    e = torch.exp(log_p - top)
    return e / (channel_mean(e, k) * k + torch.exp(_LOG_EPS - top))


class ExternalAttention(_Modules):
    """Export-safe external attention: no reshapes at all, FP16-safe double normalisation."""

    def __init__(self, channels: int, k: int = 64) -> None:
        super().__init__(channels, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idn = x
        x = self.conv1(x)
        # H11: the Conv1d memories act on (B, C, H*W); as 1x1 convs on the map they need no view.
        attn = _double_normalise(F.conv2d(x, self.linear_0.weight.unsqueeze(-1)), self.k)
        x = F.conv2d(attn, self.linear_1.weight.unsqueeze(-1))
        return F.relu(self.conv2(x) + idn)


# ----------------------------------------------------------------------------------------------
# Checkpoint layouts (see attn_export/modules/checkpoints.py). The official layout is ours;
# External-Attention-pytorch's ``ExternalAttention`` is a different module (tokens in, no conv1,
# conv2/BN or shortcut), so it has no converter.


def _external_hyperparams(sd: dict) -> dict:
    return {"channels": int(sd["conv1.weight"].shape[0]), "k": int(sd["linear_0.weight"].shape[0])}


HYPERPARAMS = {"external": _external_hyperparams}
