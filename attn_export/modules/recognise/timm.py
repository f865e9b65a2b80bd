"""timm (``timm.layers``, ``timm.models``): the attention modules its ResNets, EfficientNets,
RegNets and MobileNets are built with.

SEModule (= SqueezeExcite) -> ``se`` (ReLU + sigmoid; BatchNorm folded) or ``PooledSE`` (other
activation / gate); EfficientNet ``SqueezeExcite`` -> the same; EcaModule -> ``eca``; CbamModule
-> ``cbam`` (spatial ConvNormAct folded); SelectiveKernel -> ``sk`` (our sk follows timm's layout);
GlobalContext -> ``gc`` (LayerNorm2d over the context vector as our LayerNorm, eps carried as
found: the proof decides). Refused with a reason: SE with ``add_maxpool``, ECA in ``use_mlp``
mode, CecaModule (circular padding), the Light* CBAM variants, GatherExcite, EffectiveSEModule.
"""

from __future__ import annotations

from torch import nn

from attn_export.modules.recognise._common import kind, pooled_se, state
from attn_export.modules.recognise.base import Match, Refusal, Result, catalog_build

NAME = "timm"


def _se(m: nn.Module) -> Result:
    if getattr(m, "add_maxpool", False):
        return Refusal(NAME, "SEModule(add_maxpool=True) pools 0.5*(mean+max): no block computes "
                       "it")
    return pooled_se(NAME, m.fc1, m.fc2, m.act, m.gate, getattr(m, "bn", None))


def _effnet_se(m: nn.Module) -> Result:
    return pooled_se(NAME, m.conv_reduce, m.conv_expand, m.act1, m.gate)


def _eca(m: nn.Module) -> Result:
    if getattr(m, "conv2", None) is not None:
        return Refusal(NAME, "EcaModule(use_mlp=True) is a timm experiment: no block computes it")
    if kind(m.gate) != "sigmoid":
        return Refusal(NAME, f"EcaModule with a {kind(m.gate)} gate: our eca gates with sigmoid")
    return Match(NAME, "eca", 0, catalog_build("eca", state(m), "timm"))


def _cbam(m: nn.Module) -> Result:
    if kind(m.channel.gate) != "sigmoid" or kind(m.spatial.gate) != "sigmoid" or \
            kind(m.channel.act) != "relu":
        return Refusal(NAME, "CbamModule with a non-default activation or gate: our cbam is "
                       "ReLU + sigmoid")
    channels = int(m.channel.fc1.weight.shape[1])
    return Match(NAME, "cbam", channels, catalog_build("cbam", state(m), "timm"))


def _sk(m: nn.Module) -> Result:
    conv = m.paths[0].conv
    out = int(m.attn.fc_select.weight.shape[0]) // len(m.paths)
    if conv.stride != (1, 1):
        return Refusal(NAME, f"SelectiveKernel with stride {conv.stride[0]} (a downsampling SK "
                       "conv): our sk keeps the resolution")
    if int(m.in_channels) != out:
        return Refusal(NAME, f"SelectiveKernel from {m.in_channels} to {out} channels: our sk "
                       "keeps the width")
    return Match(NAME, "sk", 0, catalog_build("sk", state(m), "reference"))


def _gc(m: nn.Module) -> Result:
    if getattr(m, "conv_attn", None) is None:
        return Refusal(NAME, "GlobalContext(use_attn=False) pools by average: gc with "
                       "pooling='avg' has no conv_mask, map it with --map if you need it")
    sd = state(m)
    out = {"conv_mask.weight": sd["conv_attn.weight"], "conv_mask.bias": sd["conv_attn.bias"]}
    for theirs, ours in (("mlp_add", "channel_add_conv"), ("mlp_scale", "channel_mul_conv")):
        if f"{theirs}.fc1.weight" in sd:
            planes = sd[f"{theirs}.fc1.weight"].shape[0]
            out[f"{ours}.0.weight"] = sd[f"{theirs}.fc1.weight"]
            out[f"{ours}.0.bias"] = sd[f"{theirs}.fc1.bias"]
            out[f"{ours}.1.weight"] = sd[f"{theirs}.norm.weight"].reshape(planes, 1, 1)
            out[f"{ours}.1.bias"] = sd[f"{theirs}.norm.bias"].reshape(planes, 1, 1)
            out[f"{ours}.3.weight"] = sd[f"{theirs}.fc2.weight"]
            out[f"{ours}.3.bias"] = sd[f"{theirs}.fc2.bias"]
    build = catalog_build("gc", out)

    def with_timm_eps(channels: int = 0) -> nn.Module:
        """Our gc with timm's LayerNorm2d epsilon (1e-6; mmcv's LayerNorm, ours: 1e-5)."""
        block = build(channels)
        for theirs, ours in (("mlp_add", "channel_add_conv"), ("mlp_scale", "channel_mul_conv")):
            if getattr(m, theirs, None) is not None and getattr(block, ours, None) is not None:
                getattr(block, ours)[1].eps_sqrt = float(getattr(m, theirs).norm.eps) ** 0.5
        return block

    return Match(NAME, "gc", int(sd["conv_attn.weight"].shape[1]), with_timm_eps)


def _refuse(reason: str):
    return lambda _m: Refusal(NAME, reason)


RECOGNISERS = {
    ("timm.layers.squeeze_excite", "SEModule"): _se,
    ("timm.models._efficientnet_blocks", "SqueezeExcite"): _effnet_se,
    ("timm.layers.eca", "EcaModule"): _eca,
    ("timm.layers.cbam", "CbamModule"): _cbam,
    ("timm.layers.selective_kernel", "SelectiveKernel"): _sk,
    ("timm.layers.global_context", "GlobalContext"): _gc,
    ("timm.layers.eca", "CecaModule"): _refuse(
        "CecaModule pads its 1D conv circularly: no block computes it"),
    ("timm.layers.cbam", "LightCbamModule"): _refuse(
        "LightCbamModule (0.5*(mean+max) channel pool, 1-channel spatial input) is a timm "
        "experiment: no block computes it"),
    ("timm.layers.squeeze_excite", "EffectiveSEModule"): _refuse(
        "EffectiveSEModule (one full-width conv, hard sigmoid) has no block of ours"),
    ("timm.layers.gather_excite", "GatherExcite"): _refuse(
        "GatherExcite has no block of ours"),
}
