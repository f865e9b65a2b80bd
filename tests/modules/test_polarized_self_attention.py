"""Polarized Self-Attention: reference == DeLightCMU/PSA's PSA_p / PSA_s, deploy == reference."""

import pytest
import torch
from torch import nn

from attn_export.errors import BlockConfigError
from attn_export.modules.checkpoints import load_pretrained
from attn_export.modules.factory import create_block
from attn_export.modules.polarized_self_attention import PSAP, PSAS, PSAPReference, PSASReference
from attn_export.modules.registry import block_info
from tests.onnx_checks import export_and_compare
from tests.weights import randomize


class PublishedPSA(nn.Module):
    """Test-only transcription of ``semantic-segmentation/network/PSA.py`` PSA_p (sequential=False)
    and PSA_s (sequential=True); the kaiming init is left out (random weights are loaded)."""

    def __init__(self, inplanes, planes, kernel_size=1, stride=1, sequential=False):
        super().__init__()
        self.inplanes, self.inter_planes, self.planes = inplanes, planes // 2, planes
        self.sequential = sequential
        ratio = 4
        self.conv_q_right = nn.Conv2d(self.inplanes, 1, kernel_size=1, stride=stride, padding=0,
                                      bias=False)
        self.conv_v_right = nn.Conv2d(self.inplanes, self.inter_planes, kernel_size=1,
                                      stride=stride, padding=0, bias=False)
        if sequential:
            self.conv_up = nn.Sequential(
                nn.Conv2d(self.inter_planes, self.inter_planes // ratio, kernel_size=1),
                nn.LayerNorm([self.inter_planes // ratio, 1, 1]),
                nn.ReLU(inplace=True),
                nn.Conv2d(self.inter_planes // ratio, self.planes, kernel_size=1))
        else:
            self.conv_up = nn.Conv2d(self.inter_planes, self.planes, kernel_size=1, stride=1,
                                     padding=0, bias=False)
        self.softmax_right = nn.Softmax(dim=2)
        self.sigmoid = nn.Sigmoid()
        self.conv_q_left = nn.Conv2d(self.inplanes, self.inter_planes, kernel_size=1,
                                     stride=stride, padding=0, bias=False)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_v_left = nn.Conv2d(self.inplanes, self.inter_planes, kernel_size=1,
                                     stride=stride, padding=0, bias=False)
        self.softmax_left = nn.Softmax(dim=2)

    def spatial_pool(self, x):
        input_x = self.conv_v_right(x)
        batch, channel, height, width = input_x.size()
        input_x = input_x.view(batch, channel, height * width)
        context_mask = self.conv_q_right(x)
        context_mask = context_mask.view(batch, 1, height * width)
        context_mask = self.softmax_right(context_mask)
        context = torch.matmul(input_x, context_mask.transpose(1, 2))
        context = context.unsqueeze(-1)
        context = self.conv_up(context)
        mask_ch = self.sigmoid(context)
        return x * mask_ch

    def channel_pool(self, x):
        g_x = self.conv_q_left(x)
        batch, channel, height, width = g_x.size()
        avg_x = self.avg_pool(g_x)
        batch, channel, avg_x_h, avg_x_w = avg_x.size()
        avg_x = avg_x.view(batch, channel, avg_x_h * avg_x_w).permute(0, 2, 1)
        theta_x = self.conv_v_left(x).view(batch, self.inter_planes, height * width)
        if self.sequential:
            theta_x = self.softmax_left(theta_x)
            context = torch.matmul(avg_x, theta_x)
        else:
            context = torch.matmul(avg_x, theta_x)
            context = self.softmax_left(context)
        context = context.view(batch, 1, height, width)
        mask_sp = self.sigmoid(context)
        return x * mask_sp

    def forward(self, x):
        if self.sequential:
            return self.channel_pool(self.spatial_pool(x))
        return self.channel_pool(x) + self.spatial_pool(x)


FORMS = {"psa_p": (PSAPReference, PSAP, False), "psa_s": (PSASReference, PSAS, True)}


def _pair(name, channels=32):
    ref_cls, dep_cls, _ = FORMS[name]
    ref = randomize(ref_cls(channels))
    dep = dep_cls(channels).eval()
    dep.load_state_dict(ref.state_dict(), strict=True)
    return ref, dep


@pytest.mark.parametrize("name", FORMS)
def test_published_checkpoint_loads_strictly_and_matches(name):
    published = randomize(PublishedPSA(64, 64, sequential=FORMS[name][2]))
    ref = load_pretrained(name, published.state_dict(), variant="reference")
    x = torch.randn(2, 64, 9, 6)
    with torch.no_grad():
        torch.testing.assert_close(ref(x), published(x), atol=0, rtol=0)


@pytest.mark.parametrize("hw", [(9, 13), (16, 16), (1, 5), (20, 7)], ids=str)
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("name", FORMS)
def test_deploy_equals_reference(name, hw, batch):
    ref, dep = _pair(name)
    x = torch.randn(batch, 32, *hw) * 3
    with torch.no_grad():
        torch.testing.assert_close(dep(x), ref(x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("kwargs,match", [({"planes": 16}, "must equal channels"),
                                          ({"stride": 2}, "stride=2 is refused")])
@pytest.mark.parametrize("name", FORMS)
def test_arguments_that_cannot_gate_the_input_are_refused(name, kwargs, match):
    with pytest.raises(BlockConfigError, match=match):
        create_block(name, 32, **kwargs)


def test_psa_s_bottleneck_needs_eight_channels():
    with pytest.raises(BlockConfigError, match="too narrow"):
        create_block("psa_s", 6)


@pytest.mark.parametrize("opset", [13, 17])
@pytest.mark.parametrize("name", FORMS)
def test_exports_with_dynamic_hw(tmp_path, name, opset):
    _, dep = _pair(name)
    ops = export_and_compare(dep, tmp_path, (1, 32, 12, 10), [(1, 32, 12, 10), (3, 32, 7, 15)],
                             opset=opset, dynamic="all", atol=1e-4, rtol=1e-4,
                             forbidden=block_info(name).forbidden_ops)
    assert ("LayerNormalization" in ops) == (name == "psa_s" and opset >= 17)  # H9
