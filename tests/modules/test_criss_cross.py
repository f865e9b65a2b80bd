"""Criss-cross attention: reference == CCNet's pure-python code, deploy == reference, FP16-safe
mask, and the memory bound."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import Softmax

from attn_export.errors import BlockConfigError, ExportError, ShapeModeError
from attn_export.export.onnx_from_torch import onnx_from_torch
from attn_export.modules.criss_cross import CrissCrossAttention, CrissCrossAttentionReference
from attn_export.modules.factory import create_block
from attn_export.modules.registry import block_info
from attn_export.modules.swap import to_deploy
from tests.onnx_checks import export_and_compare
from tests.weights import randomize


def published_inf(B, H, W):
    # The published line ends ``.cuda().repeat(H)``: the one change, so it runs on this CPU.
    return -torch.diag(torch.tensor(float("inf")).repeat(H), 0).unsqueeze(0).repeat(B * W, 1, 1)


class PublishedCrissCross(nn.Module):
    """Test-only transcription of speedinghzl/CCNet@pure-python ``CrissCrossAttention``."""

    def __init__(self, in_dim):
        super().__init__()
        self.query_conv = nn.Conv2d(in_channels=in_dim, out_channels=in_dim // 8, kernel_size=1)
        self.key_conv = nn.Conv2d(in_channels=in_dim, out_channels=in_dim // 8, kernel_size=1)
        self.value_conv = nn.Conv2d(in_channels=in_dim, out_channels=in_dim, kernel_size=1)
        self.softmax = Softmax(dim=3)
        self.INF = published_inf
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        m_batchsize, _, height, width = x.size()
        proj_query = self.query_conv(x)
        proj_query_H = proj_query.permute(0, 3, 1, 2).contiguous().view(
            m_batchsize * width, -1, height).permute(0, 2, 1)
        proj_query_W = proj_query.permute(0, 2, 1, 3).contiguous().view(
            m_batchsize * height, -1, width).permute(0, 2, 1)
        proj_key = self.key_conv(x)
        proj_key_H = proj_key.permute(0, 3, 1, 2).contiguous().view(m_batchsize * width, -1, height)
        proj_key_W = proj_key.permute(0, 2, 1, 3).contiguous().view(m_batchsize * height, -1, width)
        proj_value = self.value_conv(x)
        proj_value_H = proj_value.permute(0, 3, 1, 2).contiguous().view(
            m_batchsize * width, -1, height)
        proj_value_W = proj_value.permute(0, 2, 1, 3).contiguous().view(
            m_batchsize * height, -1, width)
        energy_H = (torch.bmm(proj_query_H, proj_key_H) + self.INF(m_batchsize, height, width)) \
            .view(m_batchsize, width, height, height).permute(0, 2, 1, 3)
        energy_W = torch.bmm(proj_query_W, proj_key_W).view(m_batchsize, height, width, width)
        concate = self.softmax(torch.cat([energy_H, energy_W], 3))
        att_H = concate[:, :, :, 0:height].permute(0, 2, 1, 3).contiguous().view(
            m_batchsize * width, height, height)
        att_W = concate[:, :, :, height:height + width].contiguous().view(
            m_batchsize * height, width, width)
        out_H = torch.bmm(proj_value_H, att_H.permute(0, 2, 1)).view(
            m_batchsize, width, -1, height).permute(0, 2, 3, 1)
        out_W = torch.bmm(proj_value_W, att_W.permute(0, 2, 1)).view(
            m_batchsize, height, -1, width).permute(0, 2, 1, 3)
        return self.gamma * (out_H + out_W) + x


def _pair(channels=32):
    ref = randomize(CrissCrossAttentionReference(channels))
    dep = CrissCrossAttention(channels).eval()
    dep.load_state_dict(ref.state_dict(), strict=True)
    return ref, dep


def test_published_state_dict_loads_strictly_and_matches():
    published = randomize(PublishedCrissCross(64))
    ref = CrissCrossAttentionReference(64).eval()
    ref.load_state_dict(published.state_dict(), strict=True)
    x = torch.randn(2, 64, 9, 6)
    with torch.no_grad():
        torch.testing.assert_close(ref(x), published(x), atol=0, rtol=0)


@pytest.mark.parametrize("hw", [(9, 13), (16, 16), (1, 5), (6, 1), (20, 7)], ids=str)
@pytest.mark.parametrize("batch", [1, 3])
def test_deploy_equals_reference(hw, batch):
    ref, dep = _pair()
    x = torch.randn(batch, 32, *hw) * 3
    with torch.no_grad():
        torch.testing.assert_close(dep(x), ref(x), atol=1e-5, rtol=1e-4)


def test_deploy_stays_finite_where_the_energies_are_huge():
    """Energies of ~1e6: the published softmax holds; ours must too, with no inf/NaN anywhere."""
    ref, dep = _pair()
    x = torch.randn(2, 32, 7, 9) * 300
    with torch.no_grad():
        got = dep(x)
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got, ref(x), atol=1e-2, rtol=1e-4)


def test_memory_bound_refuses_and_can_be_raised():
    with pytest.raises(ShapeModeError, match=r"N\*H\*W\*\(H\+W\).*max_attention_mb=0.01"):
        create_block("criss_cross", 16, max_attention_mb=0.01)(torch.randn(1, 16, 40, 40))
    assert create_block("criss_cross", 16, max_attention_mb=1)(torch.randn(1, 16, 40, 40)).shape[2] == 40
    with pytest.raises(BlockConfigError, match="max_attention_mb must be a positive number"):
        create_block("criss_cross", 16, max_attention_mb=0)


def test_to_deploy_keeps_the_default_bound():
    ref, _ = _pair()
    assert to_deploy(ref).max_attention_mb == 1024


def test_published_form_cannot_export_but_ours_does(tmp_path):
    ref, dep = _pair()
    with pytest.raises(ExportError, match="aten::diag"):
        onnx_from_torch(ref, (1, 32, 8, 8), tmp_path / "ref.onnx", 17)


@pytest.mark.parametrize("opset", [13, 17])
def test_exports_with_dynamic_hw_and_no_inf_constant(tmp_path, opset):
    _, dep = _pair()
    export_and_compare(dep, tmp_path, (1, 32, 12, 10), [(1, 32, 12, 10), (3, 32, 7, 15)],
                       opset=opset, dynamic="all",
                       forbidden=block_info("criss_cross").forbidden_ops)
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(tmp_path / "block.onnx"))
    values = [numpy_helper.to_array(t) for t in model.graph.initializer]
    values += [numpy_helper.to_array(a.t) for n in model.graph.node for a in n.attribute
               if a.type == onnx.AttributeProto.TENSOR]
    assert all(np.isfinite(v).all() for v in values if v.dtype.kind == "f")


def test_list_states_the_attention_memory():
    from click.testing import CliRunner

    from attn_export.cli import main

    line = next(x for x in CliRunner().invoke(main, ["list"]).output.splitlines()
                if x.startswith("criss_cross"))
    assert "N*H*W*(H+W)" in line and "max_attention_mb" in line
