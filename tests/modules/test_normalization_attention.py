"""NAM: reference == Christian-lyc/NAM Channel_Att, deploy == reference, no Transpose in the graph."""

import pytest
import torch
from torch import nn

from attn_export.modules.checkpoints import load_pretrained
from attn_export.modules.normalization_attention import NAM, NAMReference
from attn_export.modules.registry import block_info
from tests.onnx_checks import export_and_compare
from tests.weights import randomize

SHAPES = [(1, 7, 9), (3, 13, 5), (3, 16, 16), (1, 1, 1)]


class ChannelAtt(nn.Module):
    """Test-only transcription of Christian-lyc/NAM ``MODELS/attention.py`` ``Channel_Att``."""

    def __init__(self, channels, t=16):
        super().__init__()
        self.channels = channels
        self.bn2 = nn.BatchNorm2d(self.channels, affine=True)

    def forward(self, x):
        residual = x
        x = self.bn2(x)
        weight_bn = self.bn2.weight.data.abs() / torch.sum(self.bn2.weight.data.abs())
        x = x.permute(0, 2, 3, 1).contiguous()
        x = torch.mul(weight_bn, x)
        x = x.permute(0, 3, 1, 2).contiguous()
        return torch.sigmoid(x) * residual


def test_published_state_dict_loads_strictly_and_matches():
    theirs = randomize(ChannelAtt(24))
    ref = NAMReference(24).eval()
    ref.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 24, 11, 7)
    with torch.no_grad():
        torch.testing.assert_close(ref(x), theirs(x), atol=0, rtol=0)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_deploy_equals_reference(shape):
    ref = randomize(NAMReference(16))
    dep = NAM(16).eval()
    dep.load_state_dict(ref.state_dict(), strict=True)
    n, h, w = shape
    x = torch.randn(n, 16, h, w) * 3
    with torch.no_grad():
        torch.testing.assert_close(dep(x), ref(x), atol=1e-6, rtol=1e-5)


def test_checkpoint_infers_channels():
    block = load_pretrained("nam", randomize(ChannelAtt(40)).state_dict())
    assert isinstance(block, NAM) and block.init_args["channels"] == 40


def test_export_opset13_dynamic_hw_has_no_transpose(tmp_path):
    dep = randomize(NAM(16))
    export_and_compare(dep, tmp_path, (1, 16, 8, 8), [(3, 16, 9, 13), (1, 16, 5, 5)], opset=13,
                       forbidden=block_info("nam").forbidden_ops)
