"""Helpers the codebase recognisers share: reading activations and building an SE form."""

from __future__ import annotations

import torch
from torch import nn

from attn_export.modules.recognise.base import Match, catalog_build


def kind(module: nn.Module | None) -> str:
    """``relu``, ``sigmoid``, ``identity``, ...: an activation layer's class name, lowercased."""
    return "identity" if module is None else type(module).__name__.lower()


def state(module: nn.Module) -> dict:
    return dict(module.state_dict())


def fold_bn(conv_w: torch.Tensor, conv_b: torch.Tensor | None, bn: nn.Module):
    """An eval-mode BatchNorm after a 1x1 conv folded into the conv's weight and bias."""
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    bias = conv_b if conv_b is not None else torch.zeros_like(bn.running_mean)
    return conv_w * scale[:, None, None, None], (bias - bn.running_mean) * scale + bn.bias.detach()


def pooled_se(recogniser: str, fc1: nn.Conv2d, fc2: nn.Conv2d, act: nn.Module | None,
              gate: nn.Module | None, bn: nn.Module | None = None) -> Match:
    """An SE of 1x1 convs: our ``se`` where it is ReLU + sigmoid, else ``PooledSE`` carrying the
    module's own activation and gate (torchvision with SiLU / Hardsigmoid, EfficientNet)."""
    w1, b1 = fc1.weight.detach(), None if fc1.bias is None else fc1.bias.detach()
    if bn is not None and not isinstance(bn, nn.Identity):
        w1, b1 = fold_bn(w1, b1, bn)
    w2, b2 = fc2.weight.detach(), None if fc2.bias is None else fc2.bias.detach()
    channels, hidden = int(w1.shape[1]), int(w1.shape[0])
    if kind(act) == "relu" and kind(gate) == "sigmoid":
        sd = {"fc1.weight": w1, "fc2.weight": w2}
        if b1 is not None:
            sd["fc1.bias"] = b1
        if b2 is not None:
            sd["fc2.bias"] = b2
        return Match(recogniser, "se", channels, catalog_build("se", sd, "timm"))

    def build(_channels: int = 0) -> nn.Module:
        from attn_export.modules.recognise.forms import PooledSE

        bias = b1 is not None or b2 is not None
        form = PooledSE(channels, hidden, bias=bias, act=act, gate=gate)
        sd = {"fc1.weight": w1, "fc2.weight": w2}
        if bias:
            sd["fc1.bias"] = b1 if b1 is not None else torch.zeros(hidden)
            sd["fc2.bias"] = b2 if b2 is not None else torch.zeros(channels)
        form.load_state_dict(sd, strict=False)
        return form.eval()

    return Match(recogniser, f"pooled_se({kind(act)}, {kind(gate)})", channels, build)
