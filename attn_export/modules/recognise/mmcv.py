"""mmcv / mmdet: ``ContextBlock`` (``mmcv.cnn.bricks.context_block``, GCNet's plugin), mmdet's
``SELayer`` (``mmdet.models.layers.se_layer``, ConvModule-built SE) and ``ChannelAttention``
(the same file, RTMDet's channel gate with a hard sigmoid).

ContextBlock's layout is our ``gc`` reference layout (GCNet's code is mmcv's). SELayer becomes
``se`` (ReLU + sigmoid) or ``PooledSE`` with its own activations (mmdet's default HSigmoid gate);
ChannelAttention the RTMDet channel gate form with its own gate. Not covered:
``GeneralizedAttention`` and ``NonLocal2d`` (no block of ours), the DCN/DyHead plugins (compiled
ops). mmcv needs a compiled build, so these are tested on transcriptions of the classes under
their module paths.
"""

from __future__ import annotations

from torch import nn

from attn_export.modules.recognise._common import pooled_se, state
from attn_export.modules.recognise.base import Match, Result, catalog_build

NAME = "mmcv"


def _context_block(m: nn.Module) -> Result:
    sd = state(m)
    fusion = tuple(getattr(m, "fusion_types", ("channel_add",)))
    channels = int(getattr(m, "in_channels", getattr(m, "inplanes", 0)))
    return Match(NAME, "gc", channels, catalog_build(
        "gc", sd, pooling=getattr(m, "pooling_type", "att"), fusion=fusion))


def _se_layer(m: nn.Module) -> Result:
    return pooled_se(NAME, m.conv1.conv, m.conv2.conv, getattr(m.conv1, "activate", None),
                     getattr(m.conv2, "activate", None))


def _channel_attention(m: nn.Module) -> Result:
    from attn_export.modules.recognise.forms import ChannelGateRTM

    channels = int(m.fc.weight.shape[0])

    def build(_channels: int = 0) -> nn.Module:
        form = ChannelGateRTM(channels, gate=m.act)
        form.load_state_dict({k: v.detach().float() for k, v in m.state_dict().items()})
        return form.eval()

    return Match(NAME, "rtm_channel_gate", channels, build)


RECOGNISERS = {
    ("mmcv.cnn.bricks.context_block", "ContextBlock"): _context_block,
    ("mmdet.models.layers.se_layer", "SELayer"): _se_layer,
    ("mmdet.models.layers.se_layer", "ChannelAttention"): _channel_attention,
}
