"""GSoP channel attention: Global Second-order Pooling Convolutional Networks (Gao et al., CVPR 2019,
arXiv:1811.12006).

Reference follows ZilinGao/Global-Second-order-Pooling-Convolutional-Networks
``torchvision/models/resnet.py`` ``Bottleneck`` with ``attention='1'`` (GSoP's default mode),
whose ``chan_att`` has no stand-alone upstream module: the attribute names (and so the
``state_dict`` keys) are the Bottleneck's, ``conv_for_DR``, ``bn_for_DR``, ``row_bn``,
``row_conv_group``, ``fc_adapt_channels``. ReLU, a 1x1 conv to ``att_dim`` channels (stride 2 when
the Bottleneck's ``planes = channels / 4`` is at most 64, as published; ``dr_stride`` overrides
it), BatchNorm, ReLU, the channel covariance (MPN-COV ``CovpoolLayer``), a row-wise BatchNorm, the
row-wise conv (a grouped ``(att_dim, 1)`` conv to ``4 * att_dim`` channels), a 1x1 conv back to
``channels`` and a sigmoid gate; the block returns ``x * gate`` as the Bottleneck does
(``out = pre_att * att``).

H6: the published ``Covpool`` is an ``autograd.Function`` (MPN-COV ``MPNCOV.py``) whose forward is
``X I_hat X^T`` with the (M, M) centring matrix ``I_hat = I / M - 1 / M^2`` for M = H*W, built
from ``x.data.shape`` at every call. Both our forms compute it with plain tensor ops, so autograd
gives the Function's hand-written gradient. The reference keeps the published product with the
(M, M) matrix (M^2 memory and a size baked into the exported graph); the deploy form centres the
map on its spatial mean and takes ``(Xc / sqrt(M)) (Xc / sqrt(M))^T``, algebraically the same
covariance without the (M, M) matrix, with M counted in the graph (``pixel_count``). F1: every
intermediate is then bounded by ``max x^2`` rather than ``M * max x^2``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from attn_export.errors import BlockConfigError, CheckpointError
from attn_export.modules.base import AttentionBlock, pixel_count


def published_dr_stride(channels: int) -> int:
    """The Bottleneck's ``DR_stride``: 1 when ``planes = channels / 4 > 64``, else 2."""
    return 1 if channels // 4 > 64 else 2


def _check_args(channels: int, att_dim: int, dr_stride: int | None) -> int:
    if channels < 1:
        raise BlockConfigError(f"gsop: channels must be >= 1, got {channels}")
    if not isinstance(att_dim, int) or isinstance(att_dim, bool) or att_dim < 1:
        raise BlockConfigError(f"gsop: att_dim must be a positive int (published 128), got {att_dim!r}")
    if dr_stride is None:
        return published_dr_stride(channels)
    if dr_stride not in (1, 2):
        raise BlockConfigError(f"gsop: dr_stride must be 1, 2 or None (published rule), got {dr_stride!r}")
    return dr_stride


class _GSoPLayers(AttentionBlock):
    """The layers both forms share, named as in the published Bottleneck."""

    def __init__(self, channels: int, att_dim: int = 128, dr_stride: int | None = None) -> None:
        stride = _check_args(channels, att_dim, dr_stride)
        super().__init__(channels=channels, att_dim=att_dim, dr_stride=dr_stride)
        self.ch_dim = att_dim
        self.relu = nn.ReLU(inplace=False)  # the published relu is in-place on a fresh tensor
        self.relu_normal = nn.ReLU(inplace=False)
        self.conv_for_DR = nn.Conv2d(channels, att_dim, kernel_size=1, stride=stride, bias=True)
        self.bn_for_DR = nn.BatchNorm2d(att_dim)
        self.row_bn = nn.BatchNorm2d(att_dim)
        # row-wise conv is realised by a group conv, as published
        self.row_conv_group = nn.Conv2d(att_dim, 4 * att_dim, kernel_size=(att_dim, 1),
                                        groups=att_dim, bias=True)
        self.fc_adapt_channels = nn.Conv2d(4 * att_dim, channels, kernel_size=1, groups=1, bias=True)
        self.sigmoid = nn.Sigmoid()

    def _reduced(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn_for_DR(self.conv_for_DR(self.relu_normal(x))))

    def _gate(self, cov: torch.Tensor) -> torch.Tensor:
        """(B, d, d) covariance -> (B, C, 1, 1) gate."""
        out = self.row_conv_group(self.row_bn(cov.unsqueeze(-1)))  # (B, 4d, 1, 1)
        return self.sigmoid(self.fc_adapt_channels(out))


def covpool_published(x: torch.Tensor) -> torch.Tensor:
    """MPN-COV ``Covpool.forward``: ``X I_hat X^T`` with the (M, M) centring matrix."""
    batch, dim, h, w = x.shape
    m = h * w
    x = x.reshape(batch, dim, m)
    i_hat = (-1.0 / m / m) * torch.ones(m, m, device=x.device) + (1.0 / m) * torch.eye(
        m, m, device=x.device)
    i_hat = i_hat.view(1, m, m).repeat(batch, 1, 1).type(x.dtype)
    return x.bmm(i_hat).bmm(x.transpose(1, 2))


def covpool_centred(x: torch.Tensor) -> torch.Tensor:
    """The same covariance as ``(Xc / sqrt(M)) (Xc / sqrt(M))^T``: no (M, M) matrix, no shape
    arithmetic (M is counted in the graph), bounded intermediates in FP16 (F1)."""
    centred = (x - x.mean((2, 3), keepdim=True)) * pixel_count(x).rsqrt()
    flat = centred.reshape(x.shape[0], x.shape[1], -1)  # batch passed through, -1 for H*W (H11)
    return flat @ flat.transpose(1, 2)


class GSoPReference(_GSoPLayers):
    """GSoP channel attention as published (``Bottleneck.chan_att``, then ``pre_att * att``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self._gate(covpool_published(self._reduced(x)))


class GSoP(_GSoPLayers):
    """Export-safe GSoP: the centred covariance (H6, F1), no (M, M) centring matrix."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self._gate(covpool_centred(self._reduced(x)))


def _hyperparams(sd: Mapping[str, Any]) -> dict[str, int]:
    att_dim, channels = tuple(int(s) for s in sd["conv_for_DR.weight"].shape[:2])
    if tuple(sd["row_conv_group.weight"].shape[:3]) != (4 * att_dim, 1, att_dim):
        raise CheckpointError(
            f"gsop: row_conv_group.weight has shape {tuple(sd['row_conv_group.weight'].shape)}, "
            f"expected ({4 * att_dim}, 1, {att_dim}, 1) for att_dim={att_dim}"
        )
    return {"channels": channels, "att_dim": att_dim}


HYPERPARAMS = {"gsop": _hyperparams}
