"""segmentation_models_pytorch (``segmentation_models_pytorch.base.modules``): ``SCSEModule``,
the attention of its U-Net / U-Net++ / MA-Net decoders (``decoder_attention_type="scse"``).

Its layout is our ``scse`` reference layout (``cSE.1``, ``cSE.3``, ``sSE.0``; additive fusion).
"""

from __future__ import annotations

from torch import nn

from attn_export.modules.recognise._common import state
from attn_export.modules.recognise.base import Match, Result, catalog_build

NAME = "smp"


def _scse(m: nn.Module) -> Result:
    channels = int(m.cSE[1].weight.shape[1])
    return Match(NAME, "scse", channels, catalog_build("scse", state(m), fusion="add"))


RECOGNISERS = {
    ("segmentation_models_pytorch.base.modules", "SCSEModule"): _scse,
}
