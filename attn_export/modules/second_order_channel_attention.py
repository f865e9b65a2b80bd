"""Second-order Channel Attention (Dai et al., "Second-order Attention Network for Single Image
Super-Resolution", CVPR 2019; no arXiv version).

Reference follows the seed ``channel-attention.md`` ``SOCA(channel, reduction=8)`` with
daitao/SAN ``MPNCOV.py``: global covariance pooling (``CovpoolLayer``), its matrix square root by
5 Newton-Schulz steps (``SqrtmLayer(cov, 5)``), the row means of the root as the channel
descriptor, then ``conv_du`` (1x1 conv, ReLU, 1x1 conv, sigmoid) gating ``x``. Maps with H or W of
1000 or more are centre-cropped to 1000 before pooling, with the published branches (including
their odd case H or W exactly 1000).

H6: MPN-COV's ``Covpool`` and ``Sqrtm`` are custom ``autograd.Function``s (pytorch/pytorch#41179:
the exporter cannot see through them, and their backward is hand-written); both forms compute
their forward with plain tensor ops, so autograd differentiates it and the exporter traces it.
The reference keeps the published arithmetic: the (M x M) centring matrix ``I_hat`` and the
float32 ``Y``/``Z`` buffers of ``Sqrtm``. H12: the crop is Python control flow on shapes.

Deploy form, the same ``state_dict`` (``conv_du.0.*``, ``conv_du.2.*``):

- Covariance as ``mean_H(A_h A_h^T) / W`` over the ``(N, H, C, W)`` view of the centred map: no
  (M x M) matrix (16.7 M entries at 64x64), no reshape of H*W, every shape mode. Each product is
  scaled by ``1/sqrt(W)`` first, so no sum of W terms leaves the FP16 range (F1).
- Newton-Schulz unrolled with constant ``3 I`` (H6); the buffers follow ``x.dtype``.
- A map with zero covariance (a constant map) has trace 0: the published code divides 0 by 0 and
  returns NaN; the deploy form divides by 1 there instead (the iteration then returns the exact
  root, 0). Everywhere the reference is finite the two are equal.
- H12: the crop is not in the graph. Eager calls refuse H or W >= 1000 (``ShapeModeError``); an
  exported graph is exact for maps under 1000 x 1000 (attention on larger ones is not cropped).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from attn_export.errors import ShapeModeError
from attn_export.modules.base import AttentionBlock, reduced_channels

ITER_N = 5
CROP = 1000


class _SOCALayers(AttentionBlock):
    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__(channels=channels, reduction=reduction)
        hidden = reduced_channels(channels, reduction, "soca")
        self.channels = channels
        self.max_pool = nn.MaxPool2d(kernel_size=2)  # built and unused, as published
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, padding=0, bias=True), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1, padding=0, bias=True), nn.Sigmoid())


def covpool(x: torch.Tensor) -> torch.Tensor:
    """MPN-COV ``Covpool.forward``: ``x I_hat x^T`` with the published (M x M) ``I_hat``."""
    b, c, h, w = x.shape
    m = h * w
    x = x.reshape(b, c, m)
    i_hat = torch.full((m, m), -1.0 / m / m, device=x.device) + torch.eye(m, device=x.device) / m
    return x @ i_hat @ x.transpose(1, 2)


def sqrtm(x: torch.Tensor, iter_n: int) -> torch.Tensor:
    """MPN-COV ``Sqrtm.forward`` (Newton-Schulz), its float32 ``Y``/``Z`` buffers included."""
    b, dim = x.shape[0], x.shape[1]
    i3 = 3.0 * torch.eye(dim, dim, device=x.device).view(1, dim, dim).repeat(b, 1, 1).type(x.dtype)
    norm_a = (1.0 / 3.0) * x.mul(i3).sum(dim=1).sum(dim=1)
    a = x.div(norm_a.view(b, 1, 1).expand_as(x))
    y = torch.zeros(b, iter_n, dim, dim, device=x.device)
    z = torch.eye(dim, dim, device=x.device).view(1, dim, dim).repeat(b, iter_n, 1, 1)
    zy = 0.5 * (i3 - a)
    if iter_n < 2:
        y[:, 0] = a.bmm(zy)
    else:
        y[:, 0] = a.bmm(zy)
        z[:, 0] = zy
        for i in range(1, iter_n - 1):
            zy = 0.5 * (i3 - z[:, i - 1].bmm(y[:, i - 1]))
            y[:, i] = y[:, i - 1].bmm(zy)
            z[:, i] = zy.bmm(z[:, i - 1])
        zy = 0.5 * y[:, iter_n - 2].bmm(i3 - z[:, iter_n - 2].bmm(y[:, iter_n - 2]))
    return zy * torch.sqrt(norm_a).view(b, 1, 1).expand_as(x)


def published_crop(x: torch.Tensor) -> torch.Tensor:
    """SOCA's centre crop to 1000 px, with its four branches as published."""
    h, w = x.shape[2:]
    if h < CROP and w < CROP:
        return x
    if h < CROP and w > CROP:
        left = (w - CROP) // 2
        return x[:, :, :, left:left + CROP]
    if w < CROP and h > CROP:
        top = (h - CROP) // 2
        return x[:, :, top:top + CROP, :]
    top, left = (h - CROP) // 2, (w - CROP) // 2
    return x[:, :, top:top + CROP, left:left + CROP]


class SOCAReference(_SOCALayers):
    """``SOCA`` as published (MPN-COV forward as plain ops, H6)."""

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__(channels, reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch_size, c = x.shape[:2]
        cov_mat_sqrt = sqrtm(covpool(published_crop(x)), ITER_N)
        cov_mat_sum = torch.mean(cov_mat_sqrt, 1).view(batch_size, c, 1, 1)
        return self.conv_du(cov_mat_sum) * x


class SOCA(_SOCALayers):
    """Export-safe SOCA (see the module doc)."""

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__(channels, reduction)
        self.register_buffer("i3", 3.0 * torch.eye(channels).unsqueeze(0), persistent=False)

    def _check_size(self, x: torch.Tensor) -> None:
        if torch.jit.is_tracing() or torch.compiler.is_compiling():
            return
        if max(x.shape[2:]) >= CROP:
            raise ShapeModeError(
                f"soca: the published block centre-crops maps with H or W >= {CROP} before its "
                f"covariance (got {tuple(x.shape[2:])}); the deploy graph does not crop: crop "
                "the map yourself or use the reference form"
            )

    def _covariance(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - x.mean((2, 3), keepdim=True)
        width = (x[:, :1, :1, :] * 0.0 + 1.0).sum(3, keepdim=True)  # (N, 1, 1, 1): W, in-graph
        rows = (centred * torch.rsqrt(width)).permute(0, 2, 1, 3)  # (N, H, C, W), F1-scaled
        return torch.matmul(rows, rows.transpose(2, 3)).mean(1)  # (N, C, C)

    def _sqrtm(self, cov: torch.Tensor) -> torch.Tensor:
        i3 = self.i3.to(cov.dtype)
        trace = (cov * i3).sum((1, 2), keepdim=True) / 3.0
        norm_a = trace + (trace == 0).to(trace.dtype)  # 1 where the published divides 0 by 0
        a = cov / norm_a
        zy = 0.5 * (i3 - a)
        y, z = torch.matmul(a, zy), zy
        for _ in range(1, ITER_N - 1):  # H6: a constant loop, unrolled by the tracer
            zy = 0.5 * (i3 - torch.matmul(z, y))
            y, z = torch.matmul(y, zy), torch.matmul(zy, z)
        zy = 0.5 * torch.matmul(y, i3 - torch.matmul(z, y))
        return zy * torch.sqrt(norm_a)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_size(x)
        root = self._sqrtm(self._covariance(x))
        return self.conv_du(root.mean(1).reshape(-1, self.channels, 1, 1)) * x


def _soca_hyperparams(sd: Mapping[str, Any]) -> dict[str, Any]:
    hidden, channels = tuple(sd["conv_du.0.weight"].shape[:2])
    from attn_export.modules.checkpoints import reduction_for

    return {"channels": int(channels), "reduction": reduction_for(int(channels), int(hidden))}


HYPERPARAMS = {"soca": _soca_hyperparams}
