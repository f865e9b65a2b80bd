"""torchvision: ``SqueezeExcitation`` (``torchvision.ops.misc``), the SE of its EfficientNet
(SiLU + sigmoid), MobileNetV3 (ReLU + Hardsigmoid) and RegNet (ReLU + sigmoid).

ReLU + sigmoid -> ``se``; any other activation / gate -> ``PooledSE`` carrying the module's own
activation instances (the deploy form of its own that its activation arguments need).
"""

from __future__ import annotations

from torch import nn

from attn_export.modules.recognise._common import pooled_se
from attn_export.modules.recognise.base import Result

NAME = "torchvision"


def _squeeze_excitation(m: nn.Module) -> Result:
    return pooled_se(NAME, m.fc1, m.fc2, m.activation, m.scale_activation)


RECOGNISERS = {
    ("torchvision.ops.misc", "SqueezeExcitation"): _squeeze_excitation,
}
