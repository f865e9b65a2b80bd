"""Ultralytics (``ultralytics.nn.modules.conv``): ``CBAM``, ``ChannelAttention``,
``SpatialAttention``, the attention a YOLO yaml names.

Ultralytics' CBAM is not the paper's: its channel gate is RTMDet's (one biased 1x1 conv on the
global average, no max branch, no bottleneck) and its spatial gate reads [mean, max]. Each class
gets the deploy form of its own in ``forms`` (mean reduction instead of AdaptiveAvgPool2d, our
CBAM's channel pooling for the spatial statistics). Not covered: the multi-head ``Attention`` of
PSA / C2PSA and the area attention of YOLO12 (no block of ours; ``scan`` lists them).
"""

from __future__ import annotations

from torch import nn

from attn_export.modules.recognise.base import Match, Result

NAME = "ultralytics"
SPATIAL_PROOF_CHANNELS = 16
"""A lone SpatialAttention's weights do not say its width: it is proven on 16 channels, and its
deploy form uses the plain channel reductions, which any width accepts."""


def _loaded(form: nn.Module, module: nn.Module) -> nn.Module:
    form.load_state_dict(_renamed(module.state_dict()), strict=True)
    return form.eval()


def _renamed(sd: dict) -> dict:
    """Ultralytics names (``cv1``) -> the forms' (``gate.conv1``)."""
    out = {}
    for key, value in sd.items():
        key = key.replace("cv1.weight", "gate.conv1.weight")
        out[key] = value.detach().float()
    return out


def _channel(m: nn.Module) -> Result:
    from attn_export.modules.recognise.forms import ChannelGateRTM

    channels = int(m.fc.weight.shape[0])
    return Match(NAME, "rtm_channel_gate", channels, lambda _c=0: _loaded(ChannelGateRTM(channels), m))


def _spatial(m: nn.Module) -> Result:
    from attn_export.modules.recognise.forms import SpatialGateMeanMax

    k = int(m.cv1.weight.shape[-1])
    return Match(NAME, "mean_max_spatial_gate", SPATIAL_PROOF_CHANNELS,
                 lambda _c=0: _loaded(SpatialGateMeanMax(0, k), m))


def _cbam(m: nn.Module) -> Result:
    from attn_export.modules.recognise.forms import UltralyticsCBAM

    channels = int(m.channel_attention.fc.weight.shape[0])
    k = int(m.spatial_attention.cv1.weight.shape[-1])
    return Match(NAME, "ultralytics_cbam", channels,
                 lambda _c=0: _loaded(UltralyticsCBAM(channels, k), m))


RECOGNISERS = {
    ("ultralytics.nn.modules.conv", "CBAM"): _cbam,
    ("ultralytics.nn.modules.conv", "ChannelAttention"): _channel,
    ("ultralytics.nn.modules.conv", "SpatialAttention"): _spatial,
}
