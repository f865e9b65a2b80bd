"""EncNet's context encoding module: Context Encoding for Semantic Segmentation (Zhang et al.,
CVPR 2018, arXiv:1803.08904).

Reference follows the seed ``channel-attention.md`` ``EncModule`` (= zhanghang1989/PyTorch-Encoding
``encoding/models/sseg/encnet.py``) with the ``Encoding`` layer of ``encoding/nn/encoding.py``
(``ncodes=32`` codewords ``codewords`` (K, D) and smoothing factors ``scale`` (K,)): a 1x1 conv,
BatchNorm and ReLU, soft-assignment of every position to the codewords
(``softmax_k(-s_k |x_i - c_k|^2)`` with ``s_k`` learned, usually negative), the aggregated
residuals ``e_k = sum_i a_ik (x_i - c_k)``, BatchNorm over the K codes, ReLU, the mean over codes,
then a Linear + sigmoid channel gate applied as ``relu(x + x * gate)``.

H7: the published ``scaled_l2`` and ``aggregate`` are compiled CPU/CUDA extension ops
(``encoding.cpu`` / ``encoding.gpu``), so the module cannot run, let alone export, without
building that extension. Both our forms compute the same values with plain tensor ops: the
reference literally (a (B, N, K, D) residual tensor), the deploy form by expanding
``|x - c|^2 = |x|^2 - 2 x.c + |c|^2`` and ``e_k = sum_i a_ik x_i - (sum_i a_ik) c_k`` into matmuls
(no N x K x D tensor), with the softmax over codes written as explicit reductions over axis 1.

The published code normalises the (B, K, D) encodings with its ``SyncBatchNorm``, which accepts
3D input; ``nn.BatchNorm2d`` does not, so the code norm here is ``nn.BatchNorm1d(ncodes)``: the
same statistics over dim 1 and the same keys (``encoding.4.*``).

SE-loss head: with ``se_loss=True`` (published default) and ``nclass`` given, the block builds
``selayer`` (keys ``selayer.*``) so EncNet checkpoints load strictly. It returns only the
recalibrated map unless ``return_se_logits=True``, in which case it returns ``(map, logits)`` as
the published module does; the export path builds blocks with the default, so the SE-loss output
is dropped from exported graphs.

Checkpoint layouts: the published one (PyTorch-Encoding) is the reference; mmseg's ``EncHead``
ships the module as ``enc_module`` (``encoding_project.conv``/``.bn``, ``encoding.0`` codewords,
``encoding.1`` the code norm) with ``se_layer`` on the head: ``source="mmseg"`` maps it.

F1: ``e_k`` sums over all H*W positions (its magnitude grows with the map), then the code
BatchNorm scales it back. The deploy form averages instead of summing and folds ``n`` into the
eval-mode BatchNorm's scale (``bn(n * mean) = mean * (n * w / sigma) + shift``), so no FP16
intermediate grows with H*W.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from attn_export.errors import BlockConfigError
from attn_export.modules.base import AttentionBlock, pixel_count


class Encoding(nn.Module):
    """The Encoding layer's parameters (``codewords`` (K, D), ``scale`` (K,)), published init."""

    def __init__(self, D: int, K: int) -> None:  # noqa: N803 - the published argument names
        super().__init__()
        self.D, self.K = D, K
        self.codewords = nn.Parameter(torch.empty(K, D))
        self.scale = nn.Parameter(torch.empty(K))
        std1 = 1.0 / ((K * D) ** 0.5)
        with torch.no_grad():
            self.codewords.uniform_(-std1, std1)
            self.scale.uniform_(-1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Published forward with pure-torch ``scaled_l2`` and ``aggregate`` (H7)."""
        b = x.size(0)
        x = x.view(b, self.D, -1).transpose(1, 2).contiguous()  # B x N x D
        residual = x.unsqueeze(2) - self.codewords  # B x N x K x D
        scaled_l2 = self.scale * residual.pow(2).sum(3)  # B x N x K
        assignment = F.softmax(scaled_l2, dim=2)
        return (assignment.unsqueeze(3) * residual).sum(1)  # B x K x D


class Mean(nn.Module):
    """PyTorch-Encoding ``Mean(dim)``."""

    def __init__(self, dim: int, keep_dim: bool = False) -> None:
        super().__init__()
        self.dim, self.keep_dim = dim, keep_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(self.dim, self.keep_dim)


def _check_args(channels: int, nclass: int | None, ncodes: int, se_loss: bool,
                return_se_logits: bool) -> None:
    if channels < 1:
        raise BlockConfigError(f"encnet: channels must be >= 1, got {channels}")
    if not isinstance(ncodes, int) or isinstance(ncodes, bool) or ncodes < 1:
        raise BlockConfigError(f"encnet: ncodes must be a positive int (published 32), got {ncodes!r}")
    if nclass is not None and (not isinstance(nclass, int) or isinstance(nclass, bool) or nclass < 1):
        raise BlockConfigError(f"encnet: nclass must be a positive int or None, got {nclass!r}")
    if return_se_logits and not (se_loss and nclass):
        raise BlockConfigError(
            "encnet: return_se_logits=True needs the SE-loss head: pass se_loss=True and nclass=N"
        )


class _EncLayers(AttentionBlock):
    """The layers both forms share (keys ``encoding.0/1/3/4.*``, ``fc.0.*``, ``selayer.*``)."""

    def __init__(self, channels: int, nclass: int | None = None, ncodes: int = 32,
                 se_loss: bool = True, norm_layer: type[nn.Module] = nn.BatchNorm2d,
                 return_se_logits: bool = False) -> None:
        _check_args(channels, nclass, ncodes, se_loss, return_se_logits)
        super().__init__(channels=channels, nclass=nclass, ncodes=ncodes, se_loss=se_loss,
                         norm_layer=norm_layer, return_se_logits=return_se_logits)
        self.channels, self.ncodes = channels, ncodes
        self.se_loss = bool(se_loss and nclass)
        self.return_se_logits = return_se_logits
        self.encoding = nn.Sequential(
            nn.Conv2d(channels, channels, 1, bias=False), norm_layer(channels), nn.ReLU(inplace=True),
            Encoding(D=channels, K=ncodes), nn.BatchNorm1d(ncodes), nn.ReLU(inplace=True),
            Mean(dim=1))
        self.fc = nn.Sequential(nn.Linear(channels, channels), nn.Sigmoid())
        if self.se_loss:
            self.selayer = nn.Linear(channels, nclass)

    def _outputs(self, x: torch.Tensor, en: torch.Tensor, gamma: torch.Tensor):
        out = F.relu(x + x * gamma)
        if self.return_se_logits:
            return out, self.selayer(en)
        return out


class EncNetReference(_EncLayers):
    """``EncModule`` as published, compiled ops replaced by their plain-torch values (H7)."""

    def forward(self, x: torch.Tensor):
        en = self.encoding(x)
        b, c, _, _ = x.size()
        gamma = self.fc(en).view(b, c, 1, 1)
        return self._outputs(x, en, gamma)


class EncNet(_EncLayers):
    """Export-safe EncModule: matmul form of scaled_l2/aggregate, mean-based encodings (F1)."""

    def _encode_mean(self, feat: torch.Tensor) -> torch.Tensor:
        """(B, K, D) encodings divided by n = H*W."""
        enc = self.encoding[3]
        flat = feat.reshape(feat.shape[0], self.channels, -1)  # (B, D, N), batch passed through
        xc = torch.matmul(enc.codewords, flat)  # (B, K, N)
        xx = (flat * flat).sum(1, keepdim=True)  # (B, 1, N): a sum over D, not over H*W
        cc = (enc.codewords * enc.codewords).sum(1).reshape(self.ncodes, 1)
        logits = enc.scale.reshape(self.ncodes, 1) * (xx - 2.0 * xc + cc)
        e = torch.exp(logits - logits.amax(1, keepdim=True))
        assignment = e / e.sum(1, keepdim=True)  # softmax over the codes (axis 1)
        weighted = torch.matmul(assignment, flat.transpose(1, 2))  # (B, K, D) = sum_i a_ik x_i
        n_inv = pixel_count(feat).reshape(-1, 1, 1).reciprocal()
        return weighted * n_inv - assignment.mean(2, keepdim=True) * enc.codewords

    def _code_norm(self, mean_enc: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        """Eval-mode ``BatchNorm1d(ncodes)`` of ``n * mean_enc`` with n folded into its scale."""
        bn = self.encoding[4]
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        shift = bn.bias - bn.running_mean * scale
        return mean_enc * (n * scale.reshape(self.ncodes, 1)) + shift.reshape(self.ncodes, 1)

    def forward(self, x: torch.Tensor):
        if self.training:  # batch statistics: the published path is the training path
            return EncNetReference.forward(self, x)
        feat = self.encoding[2](self.encoding[1](self.encoding[0](x)))
        n = pixel_count(feat).reshape(-1, 1, 1)
        en = F.relu(self._code_norm(self._encode_mean(feat), n)).mean(1)  # (B, D)
        gamma = self.fc(en).reshape(-1, self.channels, 1, 1)
        return self._outputs(x, en, gamma)


MMSEG_PREFIXES = (("encoding_project.conv.", "encoding.0."), ("encoding_project.bn.", "encoding.1."),
                  ("encoding.0.", "encoding.3."), ("encoding.1.", "encoding.4."), ("fc.", "fc."),
                  ("se_layer.", "selayer."))
"""mmseg ``enc_head.EncModule`` (ConvModule ``encoding_project``, its pure-torch ``Encoding`` and
``BatchNorm1d`` in ``encoding``) -> ours; ``EncHead.se_layer`` comes along when it is in the dict."""


def _encnet_from_mmseg(sd: Mapping[str, Any]) -> dict[str, Any]:
    sd["encoding.0.codewords"]  # noqa: B018 - a KeyError here names the layout's telltale key
    out = {}
    for key, value in sd.items():
        for theirs, ours in MMSEG_PREFIXES:
            if key.startswith(theirs):
                out[ours + key[len(theirs):]] = value
                break
        else:
            raise KeyError(key)
    return out


def _hyperparams(sd: Mapping[str, Any]) -> dict[str, Any]:
    ncodes, channels = (int(s) for s in sd["encoding.3.codewords"].shape)
    out: dict[str, Any] = {"channels": channels, "ncodes": ncodes, "se_loss": "selayer.weight" in sd}
    if "selayer.weight" in sd:
        out["nclass"] = int(sd["selayer.weight"].shape[0])
    return out


SOURCES = {"encnet": {"mmseg": _encnet_from_mmseg}}
HYPERPARAMS = {"encnet": _hyperparams}
