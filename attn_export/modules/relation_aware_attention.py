"""RGA: Relation-Aware Global Attention for Person Re-identification (Zhang et al., CVPR 2020,
arXiv:1904.02998).

Reference follows microsoft/Relation-Aware-Global-Attention-Networks
``reid/models/models_utils/rga_modules.py`` ``RGA_Module`` (defaults ``use_spatial=True,
use_channel=True, cha_ratio=8, spa_ratio=8, down_ratio=8``): spatial attention from each
position's pairwise relations to all others (the (N, N) affinity ``Gs`` of embedded positions, its
rows and columns stacked as channels), then channel attention built the same way over channels
(positions become the channels of 1x1 convs, so ``in_spatial = H*W`` is fixed at construction).
The published constructor's ``print`` is dropped; widths whose ``// ratio`` bottlenecks would be
empty are refused at construction, naming the kwarg.

``in_spatial`` stays the reference's size-fixing argument; ``input_size=(H, W)`` may be given
instead (then ``in_spatial = H*W``). The deploy form needs ``input_size`` (its reshapes use H and
W as constants, H11), so the graph holds one geometry: dynamic batch works, dynamic H/W cannot
(the channel branch's conv weights are as wide as H*W) and are refused with the reason.

Deploy form, per branch, algebraically equal in eval mode:

* spatial: ``gg_spatial`` over ``cat(Gs^T, Gs)`` is ``Wa Gs^T + Wb Gs`` with its weight split in
  two; with ``Gs = theta^T phi`` that is ``(Wa phi^T) theta + (Wb theta^T) phi``, so the (N, N)
  affinity is never formed: memory O(N * N/8) instead of O(N^2) (4 MiB instead of 64 MiB at
  64x64), and no (N, N) transpose or concat;
* channel: the 1x1 convs over positions are matmuls of the (B, C, N) map with the conv weights and
  the BatchNorms their eval-mode affine on the last axis, so the map is never permuted to
  (B, N, C, 1); ``cat(Gc^T, Gc)`` is split the same way; the gate is reshaped, not transposed.

In training mode the deploy form runs the published path (batch statistics).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from attn_export.errors import BlockConfigError, CheckpointError, ShapeModeError
from attn_export.modules.base import AttentionBlock


def _conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel_size=1, stride=1, padding=0, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU())


def _gate(cin: int, down_ratio: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cin // down_ratio, kernel_size=1, stride=1, padding=0, bias=False),
        nn.BatchNorm2d(cin // down_ratio), nn.ReLU(),
        nn.Conv2d(cin // down_ratio, 1, kernel_size=1, stride=1, padding=0, bias=False),
        nn.BatchNorm2d(1))


def _resolve_spatial(in_spatial: int | None, input_size) -> int:
    if input_size is not None:
        ok = (isinstance(input_size, (tuple, list)) and len(input_size) == 2
              and all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in input_size))
        if not ok:
            raise BlockConfigError(
                f"rga: input_size must be two positive integers (H, W), got {input_size!r}")
        hw = input_size[0] * input_size[1]
        if in_spatial is not None and in_spatial != hw:
            raise BlockConfigError(
                f"rga: in_spatial={in_spatial} disagrees with input_size={tuple(input_size)} "
                f"(H*W = {hw}); give one of them")
        return hw
    if in_spatial is None:
        raise BlockConfigError(
            "rga: the block is built for one map size: pass in_spatial=H*W (the published "
            "argument) or input_size=(H, W) (--input-shape on the command line)"
        )
    if not isinstance(in_spatial, int) or isinstance(in_spatial, bool) or in_spatial < 1:
        raise BlockConfigError(f"rga: in_spatial must be a positive int (H*W), got {in_spatial!r}")
    return in_spatial


def _check_widths(channels: int, in_spatial: int, cha_ratio: int, spa_ratio: int, down_ratio: int,
                  use_spatial: bool, use_channel: bool) -> None:
    for name, value in (("cha_ratio", cha_ratio), ("spa_ratio", spa_ratio), ("down_ratio", down_ratio)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise BlockConfigError(f"rga: {name} must be a positive int (published 8), got {value!r}")
    if not (use_spatial or use_channel):
        raise BlockConfigError("rga: use_spatial and use_channel are both False: nothing to attend")
    if channels // cha_ratio < 1 or in_spatial // spa_ratio < 1:
        raise BlockConfigError(
            f"rga: channels={channels} // cha_ratio={cha_ratio} or in_spatial={in_spatial} // "
            f"spa_ratio={spa_ratio} is 0; use more channels or a larger map, or smaller ratios"
        )
    if use_spatial and (1 + in_spatial // spa_ratio) // down_ratio < 1:
        raise BlockConfigError(
            f"rga: the spatial gate has (1 + in_spatial // spa_ratio) // down_ratio = 0 channels for "
            f"in_spatial={in_spatial}; needs H*W >= {spa_ratio * (down_ratio - 1)} or a smaller "
            "down_ratio (or use_spatial=False)"
        )
    if use_channel and (1 + channels // cha_ratio) // down_ratio < 1:
        raise BlockConfigError(
            f"rga: the channel gate has (1 + channels // cha_ratio) // down_ratio = 0 channels for "
            f"channels={channels}; needs channels >= {cha_ratio * (down_ratio - 1)} or a smaller "
            "down_ratio (or use_channel=False)"
        )


class _RGALayers(AttentionBlock):
    """The layers both forms share, with the published names (``theta_spatial`` ... ``W_channel``)."""

    def __init__(self, channels: int, in_spatial: int | None, use_spatial: bool, use_channel: bool,
                 cha_ratio: int, spa_ratio: int, down_ratio: int, input_size) -> None:
        spatial = _resolve_spatial(in_spatial, input_size)
        _check_widths(channels, spatial, cha_ratio, spa_ratio, down_ratio, use_spatial, use_channel)
        super().__init__(channels=channels, in_spatial=in_spatial, use_spatial=use_spatial,
                         use_channel=use_channel, cha_ratio=cha_ratio, spa_ratio=spa_ratio,
                         down_ratio=down_ratio, input_size=input_size)
        self.in_channel, self.in_spatial = channels, spatial
        self.use_spatial, self.use_channel = use_spatial, use_channel
        self.inter_channel = channels // cha_ratio
        self.inter_spatial = spatial // spa_ratio
        ic, isp = self.inter_channel, self.inter_spatial
        if use_spatial:
            self.theta_spatial = _conv_bn_relu(channels, ic)
            self.phi_spatial = _conv_bn_relu(channels, ic)
        if use_channel:
            self.theta_channel = _conv_bn_relu(spatial, isp)
            self.phi_channel = _conv_bn_relu(spatial, isp)
        if use_spatial:
            self.gx_spatial = _conv_bn_relu(channels, ic)
        if use_channel:
            self.gx_channel = _conv_bn_relu(spatial, isp)
        if use_spatial:
            self.gg_spatial = _conv_bn_relu(spatial * 2, isp)
        if use_channel:
            self.gg_channel = _conv_bn_relu(channels * 2, ic)
        if use_spatial:
            self.W_spatial = _gate(1 + isp, down_ratio)
        if use_channel:
            self.W_channel = _gate(1 + ic, down_ratio)


class RGAReference(_RGALayers):
    """``RGA_Module`` as published (views from ``x.size()``, permutes, (N, N) affinities)."""

    def __init__(self, channels: int, in_spatial: int | None = None, use_spatial: bool = True,
                 use_channel: bool = True, cha_ratio: int = 8, spa_ratio: int = 8,
                 down_ratio: int = 8, input_size: tuple[int, int] | None = None) -> None:
        super().__init__(channels, in_spatial, use_spatial, use_channel, cha_ratio, spa_ratio,
                         down_ratio, input_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.size()
        if self.use_spatial:
            theta_xs = self.theta_spatial(x).view(b, self.inter_channel, -1).permute(0, 2, 1)
            phi_xs = self.phi_spatial(x).view(b, self.inter_channel, -1)
            gs = torch.matmul(theta_xs, phi_xs)
            gs_joint = torch.cat((gs.permute(0, 2, 1).view(b, h * w, h, w), gs.view(b, h * w, h, w)), 1)
            gs_joint = self.gg_spatial(gs_joint)
            g_xs = torch.mean(self.gx_spatial(x), dim=1, keepdim=True)
            w_ys = self.W_spatial(torch.cat((g_xs, gs_joint), 1))
            x = torch.sigmoid(w_ys.expand_as(x)) * x
            if not self.use_channel:
                return x
        xc = x.view(b, c, -1).permute(0, 2, 1).unsqueeze(-1)
        theta_xc = self.theta_channel(xc).squeeze(-1).permute(0, 2, 1)
        phi_xc = self.phi_channel(xc).squeeze(-1)
        gc = torch.matmul(theta_xc, phi_xc)
        gc_joint = self.gg_channel(torch.cat((gc.permute(0, 2, 1).unsqueeze(-1), gc.unsqueeze(-1)), 1))
        g_xc = torch.mean(self.gx_channel(xc), dim=1, keepdim=True)
        w_yc = self.W_channel(torch.cat((g_xc, gc_joint), 1)).transpose(1, 2)
        return torch.sigmoid(w_yc) * x


def _affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def _weight(seq: nn.Sequential) -> torch.Tensor:
    conv = seq[0]
    return conv.weight.reshape(conv.out_channels, conv.in_channels)


def _rows(seq: nn.Sequential, pre: torch.Tensor) -> torch.Tensor:
    """conv-bn-relu applied to an already multiplied (B, C_out, L) tensor (BN over dim 1)."""
    scale, shift = _affine(seq[1])
    return torch.relu(pre * scale.reshape(-1, 1) + shift.reshape(-1, 1))


def _last(seq: nn.Sequential, t: torch.Tensor) -> torch.Tensor:
    """conv-bn-relu over the last axis of ``t`` (B, L, C_in) -> (B, L, C_out), no permute."""
    scale, shift = _affine(seq[1])
    return torch.relu(torch.matmul(t, _weight(seq).t()) * scale + shift)


class RGA(_RGALayers):
    """Export-safe RGA for one declared ``input_size=(H, W)``: no (N, N) affinity, no permute
    of the map, reshapes with module constants and -1 (H11)."""

    def __init__(self, channels: int, in_spatial: int | None = None, use_spatial: bool = True,
                 use_channel: bool = True, cha_ratio: int = 8, spa_ratio: int = 8,
                 down_ratio: int = 8, input_size: tuple[int, int] | None = None) -> None:
        if input_size is None:
            raise BlockConfigError(
                "rga: the deploy form needs the map geometry, because its channel branch is as "
                "wide as H*W and its reshapes use H and W: pass input_size=(H, W) "
                "(to_deploy(model, input_size=(H, W)) or --input-shape)"
            )
        super().__init__(channels, in_spatial, use_spatial, use_channel, cha_ratio, spa_ratio,
                         down_ratio, input_size)
        self.input_size = (int(input_size[0]), int(input_size[1]))

    def _spatial(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.input_size
        n, ic, isp = self.in_spatial, self.inter_channel, self.inter_spatial
        theta = self.theta_spatial(x).reshape(-1, ic, n)  # (B, ic, N)
        phi = self.phi_spatial(x).reshape(-1, ic, n)
        wg = _weight(self.gg_spatial)  # (isp, 2N): [Wa | Wb] acting on cat(Gs^T, Gs)
        wa, wb = wg[:, :n], wg[:, n:]
        # Wa Gs^T + Wb Gs with Gs = theta^T phi, reassociated: no (N, N) tensor
        pre = torch.matmul(torch.matmul(wa, phi.transpose(1, 2)), theta) \
            + torch.matmul(torch.matmul(wb, theta.transpose(1, 2)), phi)  # (B, isp, N)
        gs_joint = _rows(self.gg_spatial, pre).reshape(-1, isp, h, w)
        g_xs = self.gx_spatial(x).mean(1, keepdim=True)
        return torch.sigmoid(self.W_spatial(torch.cat((g_xs, gs_joint), 1))) * x

    def _channel(self, x: torch.Tensor) -> torch.Tensor:
        c, n = self.in_channel, self.in_spatial
        flat = x.reshape(-1, c, n)  # (B, C, N): positions last, as the channel convs read them
        theta = _last(self.theta_channel, flat)  # (B, C, isp) = published theta_xc
        phi = _last(self.phi_channel, flat)  # (B, C, isp) = published phi_xc^T
        gc = torch.matmul(theta, phi.transpose(1, 2))  # (B, C, C), small
        wg = _weight(self.gg_channel)  # (ic, 2C) on cat(Gc^T, Gc)
        pre = torch.matmul(wg[:, :c], gc.transpose(1, 2)) + torch.matmul(wg[:, c:], gc)  # (B, ic, C)
        gc_joint = _rows(self.gg_channel, pre)
        g_xc = _last(self.gx_channel, flat).mean(2).reshape(-1, 1, c)  # (B, 1, C)
        yc = torch.cat((g_xc, gc_joint), 1).unsqueeze(-1)  # (B, 1 + ic, C, 1)
        return torch.sigmoid(self.W_channel(yc)).reshape(-1, c, 1, 1) * x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (torch.jit.is_tracing() or torch.compiler.is_compiling()) \
                and tuple(x.shape[2:]) != self.input_size:
            raise ShapeModeError(
                f"rga: this deploy block was built for H, W = {self.input_size} and got "
                f"{tuple(x.shape[2:])}; rebuild it with input_size={tuple(x.shape[2:])} (its channel "
                "branch's weights are as wide as H*W), or use the reference form"
            )
        if self.training:
            return RGAReference.forward(self, x)
        if self.use_spatial:
            x = self._spatial(x)
        return self._channel(x) if self.use_channel else x


def _hyperparams(sd: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"use_spatial": "theta_spatial.0.weight" in sd,
                           "use_channel": "theta_channel.0.weight" in sd}
    if out["use_channel"]:
        out["in_spatial"] = int(sd["theta_channel.0.weight"].shape[1])
        out["channels"] = int(sd["gg_channel.0.weight"].shape[1]) // 2
    elif out["use_spatial"]:
        out["channels"] = int(sd["theta_spatial.0.weight"].shape[1])
        out["in_spatial"] = int(sd["gg_spatial.0.weight"].shape[1]) // 2
    else:
        raise CheckpointError("rga: the checkpoint has neither theta_spatial nor theta_channel")
    return out


HYPERPARAMS = {"rga": _hyperparams}
