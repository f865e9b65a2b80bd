"""DANet PAM and CAM: reference == published da_att.py, deploy == reference, mmseg layouts,
PAM's memory bound, CAM's FP16-safe form (F1)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attn_export.errors import CheckpointError, ShapeModeError
from attn_export.modules.checkpoints import guess_source, load_pretrained
from attn_export.modules.dual_attention import CAM, PAM, CAMReference, PAMReference
from attn_export.modules.registry import block_info
from tests.onnx_checks import export_and_compare
from tests.weights import randomize

SHAPES = [(1, 7, 9), (3, 13, 5), (3, 16, 16), (1, 1, 1)]


class PAMModule(nn.Module):
    """Test-only transcription of junfu1115/DANet ``encoding/nn/da_att.py`` ``PAM_Module``."""

    def __init__(self, in_dim):
        super().__init__()
        self.chanel_in = in_dim
        self.query_conv = nn.Conv2d(in_channels=in_dim, out_channels=in_dim // 8, kernel_size=1)
        self.key_conv = nn.Conv2d(in_channels=in_dim, out_channels=in_dim // 8, kernel_size=1)
        self.value_conv = nn.Conv2d(in_channels=in_dim, out_channels=in_dim, kernel_size=1)
        self.gamma = nn.Parameter(torch.zeros(1))
        self.softmax = nn.Softmax(dim=-1)

    def forward(self, x):
        m_batchsize, C, height, width = x.size()
        proj_query = self.query_conv(x).view(m_batchsize, -1, width * height).permute(0, 2, 1)
        proj_key = self.key_conv(x).view(m_batchsize, -1, width * height)
        energy = torch.bmm(proj_query, proj_key)
        attention = self.softmax(energy)
        proj_value = self.value_conv(x).view(m_batchsize, -1, width * height)
        out = torch.bmm(proj_value, attention.permute(0, 2, 1))
        out = out.view(m_batchsize, C, height, width)
        return self.gamma * out + x


class CAMModule(nn.Module):
    """Test-only transcription of junfu1115/DANet ``da_att.py`` ``CAM_Module``."""

    def __init__(self, in_dim):
        super().__init__()
        self.chanel_in = in_dim
        self.gamma = nn.Parameter(torch.zeros(1))
        self.softmax = nn.Softmax(dim=-1)

    def forward(self, x):
        m_batchsize, C, height, width = x.size()
        proj_query = x.view(m_batchsize, C, -1)
        proj_key = x.view(m_batchsize, C, -1).permute(0, 2, 1)
        energy = torch.bmm(proj_query, proj_key)
        energy_new = torch.max(energy, -1, keepdim=True)[0].expand_as(energy) - energy
        attention = self.softmax(energy_new)
        proj_value = x.view(m_batchsize, C, -1)
        out = torch.bmm(attention, proj_value)
        out = out.view(m_batchsize, C, height, width)
        return self.gamma * out + x


class Scale(nn.Module):
    """mmcv ``Scale``: one learnable factor named ``scale``."""

    def __init__(self, scale=1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(scale, dtype=torch.float))

    def forward(self, x):
        return x * self.scale


class MmsegPAM(nn.Module):
    """Test-only transcription of mmseg ``da_head.PAM`` (its SelfAttentionBlock with DANet's
    settings: plain 1x1 convs, no matmul_norm, no out projection)."""

    def __init__(self, in_channels, channels):
        super().__init__()
        self.key_project = nn.Conv2d(in_channels, channels, 1)
        self.query_project = nn.Conv2d(in_channels, channels, 1)
        self.value_project = nn.Conv2d(in_channels, in_channels, 1)
        self.gamma = Scale(0)

    def forward(self, x):
        batch_size = x.size(0)
        query = self.query_project(x)
        query = query.reshape(*query.shape[:2], -1).permute(0, 2, 1).contiguous()
        key = self.key_project(x)
        value = self.value_project(x)
        key = key.reshape(*key.shape[:2], -1)
        value = value.reshape(*value.shape[:2], -1).permute(0, 2, 1).contiguous()
        sim_map = F.softmax(torch.matmul(query, key), dim=-1)
        context = torch.matmul(sim_map, value).permute(0, 2, 1).contiguous()
        context = context.reshape(batch_size, -1, *x.shape[2:])
        return self.gamma(context) + x


class MmsegCAM(nn.Module):
    """Test-only transcription of mmseg ``da_head.CAM``."""

    def __init__(self):
        super().__init__()
        self.gamma = Scale(0)

    def forward(self, x):
        batch_size, channels, height, width = x.size()
        proj_query = x.view(batch_size, channels, -1)
        proj_key = x.view(batch_size, channels, -1).permute(0, 2, 1)
        energy = torch.bmm(proj_query, proj_key)
        energy_new = torch.max(energy, -1, keepdim=True)[0].expand_as(energy) - energy
        attention = F.softmax(energy_new, dim=-1)
        proj_value = x.view(batch_size, channels, -1)
        out = torch.bmm(attention, proj_value).view(batch_size, channels, height, width)
        return self.gamma(out) + x


def _pam_pair(channels=16):
    ref = randomize(PAMReference(channels), std=0.3)
    dep = PAM(channels).eval()
    dep.load_state_dict(ref.state_dict(), strict=True)
    return ref, dep


def _cam_pair(channels=16):
    ref = randomize(CAMReference(channels))
    dep = CAM(channels).eval()
    dep.load_state_dict(ref.state_dict(), strict=True)
    return ref, dep


@pytest.mark.parametrize("published,ours", [(PAMModule, PAMReference), (CAMModule, CAMReference)],
                         ids=["pam", "cam"])
def test_published_state_dict_loads_strictly_and_matches(published, ours):
    theirs = randomize(published(32), std=0.3)
    ref = ours(32).eval()
    ref.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 32, 11, 7)
    with torch.no_grad():
        torch.testing.assert_close(ref(x), theirs(x), atol=0, rtol=0)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("pair", [_pam_pair, _cam_pair], ids=["pam", "cam"])
def test_deploy_equals_reference(pair, shape):
    ref, dep = pair()
    n, h, w = shape
    x = torch.randn(n, 16, h, w)
    with torch.no_grad():
        torch.testing.assert_close(dep(x), ref(x), atol=2e-5, rtol=1e-4)


def test_mmseg_pam_converts_and_matches():
    theirs = randomize(MmsegPAM(32, 4), std=0.3)
    assert guess_source("pam", theirs.state_dict()) == "mmseg"
    block = load_pretrained("pam", theirs.state_dict(), source="mmseg")
    x = torch.randn(2, 32, 9, 6)
    with torch.no_grad():
        torch.testing.assert_close(block(x), theirs(x), atol=2e-5, rtol=1e-4)


def test_mmseg_pam_with_other_pam_channels_is_refused():
    with pytest.raises(CheckpointError, match="in_dim // 8"):
        load_pretrained("pam", MmsegPAM(32, 16).state_dict(), source="mmseg")


def test_mmseg_cam_converts_and_matches():
    theirs = randomize(MmsegCAM())
    block = load_pretrained("cam", theirs.state_dict(), source="mmseg", channels=24)
    x = torch.randn(2, 24, 5, 8)
    with torch.no_grad():
        torch.testing.assert_close(block(x), theirs(x), atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("cls", [PAM, PAMReference])
def test_pam_refuses_maps_above_the_memory_bound_and_the_bound_can_be_raised(cls):
    x = torch.randn(1, 16, 9, 8)
    with pytest.raises(ShapeModeError, match="72 positions.*max_positions=72"):
        cls(16, max_positions=64)(x)
    assert cls(16, max_positions=72)(x).shape == x.shape


def test_cam_deploy_stays_finite_in_fp16_where_the_reference_overflows():
    ref, dep = _cam_pair(8)
    x = torch.randn(1, 8, 64, 64) * 4  # sum of x^2 over 4096 pixels ~ 65536 > FP16 max
    with torch.no_grad():
        want = ref(x)
        got = dep.half()(x.half()).float()
        assert not torch.isfinite(ref.half()(x.half())).all()
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, want, atol=0.05, rtol=0.01)


@pytest.mark.parametrize("pair,name", [(_pam_pair, "pam"), (_cam_pair, "cam")], ids=["pam", "cam"])
def test_export_opset13_dynamic_hw(tmp_path, pair, name):
    _, dep = pair()
    ops = export_and_compare(dep, tmp_path, (1, 16, 8, 8), [(3, 16, 9, 13), (1, 16, 5, 5)],
                             opset=13, forbidden=block_info(name).forbidden_ops,
                             atol=2e-5, rtol=1e-4)
    assert ops.get("Transpose", 0) == 1  # PAM: the small key map only; CAM: X^T
