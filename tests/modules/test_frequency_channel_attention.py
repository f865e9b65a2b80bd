"""FcaNet: reference == cfzd/FcaNet MultiSpectralAttentionLayer, deploy == reference at its
declared geometry (H1, H12), refusals name the kwarg."""

import math

import pytest
import torch
from torch import nn

from attn_export.errors import BlockConfigError, ShapeModeError
from attn_export.modules.checkpoints import load_pretrained
from attn_export.modules.factory import create_block
from attn_export.modules.frequency_channel_attention import FCA, FCAReference
from attn_export.modules.registry import block_info
from tests.onnx_checks import export_and_compare
from tests.weights import randomize

TOP_X = [0, 0, 6, 0, 0, 1, 1, 4, 5, 1, 3, 0, 0, 0, 3, 2, 4, 6, 3, 5, 5, 2, 6, 5, 5, 3, 3, 4, 2, 2, 6, 1]
TOP_Y = [0, 1, 0, 5, 2, 0, 2, 0, 0, 6, 0, 4, 6, 3, 5, 2, 6, 3, 3, 3, 5, 1, 1, 2, 4, 2, 1, 1, 3, 0, 5, 3]


class PublishedDCTLayer(nn.Module):
    """Test-only transcription of cfzd/FcaNet ``model/layer.py`` ``MultiSpectralDCTLayer``."""

    def __init__(self, height, width, mapper_x, mapper_y, channel):
        super().__init__()
        assert len(mapper_x) == len(mapper_y)
        assert channel % len(mapper_x) == 0
        self.num_freq = len(mapper_x)
        self.register_buffer("weight", self.get_dct_filter(height, width, mapper_x, mapper_y,
                                                           channel))

    def forward(self, x):
        return torch.sum(x * self.weight, dim=[2, 3])

    def build_filter(self, pos, freq, POS):
        result = math.cos(math.pi * freq * (pos + 0.5) / POS) / math.sqrt(POS)
        return result if freq == 0 else result * math.sqrt(2)

    def get_dct_filter(self, tile_size_x, tile_size_y, mapper_x, mapper_y, channel):
        dct_filter = torch.zeros(channel, tile_size_x, tile_size_y)
        c_part = channel // len(mapper_x)
        for i, (u_x, v_y) in enumerate(zip(mapper_x, mapper_y)):
            for t_x in range(tile_size_x):
                for t_y in range(tile_size_y):
                    dct_filter[i * c_part: (i + 1) * c_part, t_x, t_y] = self.build_filter(
                        t_x, u_x, tile_size_x) * self.build_filter(t_y, v_y, tile_size_y)
        return dct_filter


class PublishedFCA(nn.Module):
    """Test-only transcription of cfzd/FcaNet ``MultiSpectralAttentionLayer`` ('top' methods)."""

    def __init__(self, channel, dct_h, dct_w, reduction=16, num_freq=16):
        super().__init__()
        self.dct_h, self.dct_w = dct_h, dct_w
        mapper_x = [u * (dct_h // 7) for u in TOP_X[:num_freq]]
        mapper_y = [v * (dct_w // 7) for v in TOP_Y[:num_freq]]
        self.dct_layer = PublishedDCTLayer(dct_h, dct_w, mapper_x, mapper_y, channel)
        self.fc = nn.Sequential(nn.Linear(channel, channel // reduction, bias=False),
                                nn.ReLU(inplace=True),
                                nn.Linear(channel // reduction, channel, bias=False), nn.Sigmoid())

    def forward(self, x):
        n, c, h, w = x.shape
        x_pooled = x
        if h != self.dct_h or w != self.dct_w:
            x_pooled = torch.nn.functional.adaptive_avg_pool2d(x, (self.dct_h, self.dct_w))
        y = self.dct_layer(x_pooled)
        y = self.fc(y).view(n, c, 1, 1)
        return x * y.expand_as(x)


@pytest.mark.parametrize("dct,hw", [(7, (7, 7)), (7, (11, 9)), (14, (14, 14)), (14, (20, 31))],
                         ids=["7-at-7", "7-at-11x9", "14-at-14", "14-at-20x31"])
def test_published_state_dict_loads_strictly_and_matches(dct, hw):
    theirs = randomize(PublishedFCA(32, dct, dct, reduction=4), std=0.5)
    ref = FCAReference(32, dct, dct, reduction=4).eval()
    ref.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 32, *hw)
    with torch.no_grad():
        torch.testing.assert_close(ref(x), theirs(x), atol=0, rtol=0)


# 7x7: no pool; 14x14 and 21x35: avg_pool2d; 9x13, 16x16: averaging matrices; 5x3: repeated bins
GEOMETRIES = [(7, 7), (14, 14), (21, 35), (9, 13), (16, 16), (5, 3)]


@pytest.mark.parametrize("hw", GEOMETRIES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("batch", [1, 3])
def test_deploy_equals_reference(hw, batch):
    ref = randomize(FCAReference(32, reduction=4), std=0.5)
    dep = FCA(**ref.init_args, input_size=hw).eval()
    dep.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(batch, 32, *hw)
    with torch.no_grad():
        torch.testing.assert_close(dep(x), ref(x), atol=1e-5, rtol=1e-5)


def test_checkpoint_infers_width_reduction_and_dct_grid():
    theirs = randomize(PublishedFCA(64, 14, 14, reduction=8), std=0.5)
    block = load_pretrained("fca", theirs.state_dict(), input_size=(28, 20))
    assert {k: block.init_args[k] for k in ("channels", "reduction", "dct_h", "dct_w")} == {
        "channels": 64, "reduction": 8, "dct_h": 14, "dct_w": 14}
    x = torch.randn(2, 64, 28, 20)
    with torch.no_grad():
        torch.testing.assert_close(block(x), theirs(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kwargs,match", [
    ({"channels": 24}, "not divisible by the 16 frequencies of freq_sel_method"),
    ({"freq_sel_method": "top3"}, "freq_sel_method must be one of"),
    ({"channels": 16}, "bottleneck of 1|bottleneck of 0"),
    ({"input_size": None}, r"input_size=\(H, W\)"),
], ids=["width", "method", "bottleneck", "geometry"])
def test_bad_arguments_are_refused_naming_the_kwarg(kwargs, match):
    args = {"channels": 64, "input_size": (7, 7), **kwargs}
    if args["channels"] == 16:
        args["reduction"] = 32
    with pytest.raises(BlockConfigError, match=match):
        FCA(**args)


def test_deploy_refuses_another_size_in_eager_mode():
    with pytest.raises(ShapeModeError, match=r"built for H, W = \(9, 9\).*input_size=\(8, 9\)"):
        create_block("fca", 32, reduction=4, input_size=(9, 9))(torch.randn(1, 32, 8, 9))


@pytest.mark.parametrize("hw", [(16, 16), (14, 28)], ids=["matrices", "avg_pool"])
def test_export_opset13_dynamic_batch(tmp_path, hw):
    ref = randomize(FCAReference(32, reduction=4), std=0.5)
    dep = FCA(**ref.init_args, input_size=hw).eval()
    dep.load_state_dict(ref.state_dict())
    ops = export_and_compare(dep, tmp_path, (2, 32, *hw), [(1, 32, *hw), (3, 32, *hw)], opset=13,
                             dynamic="batch", forbidden=block_info("fca").forbidden_ops)
    assert ("AveragePool" in ops) == (hw == (14, 28))
