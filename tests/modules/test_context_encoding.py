"""EncNet EncModule: reference == the published module (compiled scaled_l2/aggregate written from
their documented formulas), deploy == reference, SE-loss head optional, FP16-safe encodings."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attn_export.errors import BlockConfigError
from attn_export.modules.checkpoints import load_pretrained
from attn_export.modules.context_encoding import EncNet, EncNetReference
from attn_export.modules.registry import block_info
from tests.onnx_checks import export_and_compare
from tests.weights import randomize

TRAINED_BN = {"weight": (0.7, 1.3), "running_mean": 0.2}


def scaled_l2(X, C, S):
    """``sl_ik = s_k |x_i - c_k|^2`` (PyTorch-Encoding ``functions/encoding.py`` docstring)."""
    return S.view(1, 1, -1) * (X.unsqueeze(2) - C.view(1, 1, *C.shape)).pow(2).sum(3)


def aggregate(A, X, C):
    """``e_k = sum_i a_ik (x_i - d_k)`` (PyTorch-Encoding ``functions/encoding.py`` docstring)."""
    return (A.unsqueeze(3) * (X.unsqueeze(2) - C.view(1, 1, *C.shape))).sum(1)


class PublishedEncoding(nn.Module):
    """Test-only transcription of PyTorch-Encoding ``encoding/nn/encoding.py`` ``Encoding``."""

    def __init__(self, D, K):
        super().__init__()
        self.D, self.K = D, K
        self.codewords = nn.Parameter(torch.Tensor(K, D), requires_grad=True)
        self.scale = nn.Parameter(torch.Tensor(K), requires_grad=True)
        std1 = 1. / ((self.K * self.D) ** (1 / 2))
        self.codewords.data.uniform_(-std1, std1)
        self.scale.data.uniform_(-1, 0)

    def forward(self, X):
        assert X.size(1) == self.D
        B, D = X.size(0), self.D
        X = X.view(B, D, -1).transpose(1, 2).contiguous()
        A = F.softmax(scaled_l2(X, self.codewords, self.scale), dim=2)
        return aggregate(A, X, self.codewords)


class Mean(nn.Module):
    def __init__(self, dim, keep_dim=False):
        super().__init__()
        self.dim, self.keep_dim = dim, keep_dim

    def forward(self, input):
        return input.mean(self.dim, self.keep_dim)


def norm_layer(n):
    """PyTorch-Encoding's SyncBatchNorm takes (B, C, H, W) and (B, K, D) alike."""
    return nn.BatchNorm1d(n) if n == 8 else nn.BatchNorm2d(n)


class PublishedEncModule(nn.Module):
    """Test-only transcription of the seed ``channel-attention.md`` ``EncModule``."""

    def __init__(self, in_channels, nclass, ncodes=32, se_loss=True, norm_layer=None):
        super().__init__()
        self.se_loss = se_loss
        self.encoding = nn.Sequential(
            nn.Conv2d(in_channels, in_channels, 1, bias=False), norm_layer(in_channels),
            nn.ReLU(inplace=True), PublishedEncoding(D=in_channels, K=ncodes),
            norm_layer(ncodes), nn.ReLU(inplace=True), Mean(dim=1))
        self.fc = nn.Sequential(nn.Linear(in_channels, in_channels), nn.Sigmoid())
        if self.se_loss:
            self.selayer = nn.Linear(in_channels, nclass)

    def forward(self, x):
        en = self.encoding(x)
        b, c, _, _ = x.size()
        gamma = self.fc(en)
        y = gamma.view(b, c, 1, 1)
        outputs = [F.relu_(x + x * y)]
        if self.se_loss:
            outputs.append(self.selayer(en))
        return tuple(outputs)


def test_published_state_dict_loads_strictly_and_matches_with_se_logits():
    theirs = randomize(PublishedEncModule(16, 5, ncodes=8, norm_layer=norm_layer), std=0.3,
                       bn=TRAINED_BN)
    ref = EncNetReference(16, nclass=5, ncodes=8, return_se_logits=True).eval()
    ref.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 16, 11, 7)
    with torch.no_grad():
        (want, want_logits), (got, logits) = theirs(x), ref(x)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(logits, want_logits, atol=1e-6, rtol=1e-5)


def test_checkpoint_infers_widths_and_keeps_the_head_out_of_the_output():
    theirs = randomize(PublishedEncModule(16, 5, ncodes=8, norm_layer=norm_layer), std=0.3,
                       bn=TRAINED_BN)
    block = load_pretrained("encnet", theirs.state_dict())
    assert {k: block.init_args[k] for k in ("channels", "ncodes", "nclass")} == {
        "channels": 16, "ncodes": 8, "nclass": 5}
    x = torch.randn(1, 16, 6, 9)
    with torch.no_grad():
        out = block(x)  # the export default: the map only, the SE-loss logits dropped
        assert isinstance(out, torch.Tensor)
        torch.testing.assert_close(out, theirs(x)[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shape", [(1, 7, 9), (3, 13, 5), (3, 16, 16), (1, 1, 1)],
                         ids=lambda s: "x".join(map(str, s)))
def test_deploy_equals_reference(shape):
    ref = randomize(EncNetReference(16, ncodes=8), std=0.3, bn=TRAINED_BN)
    dep = EncNet(**ref.init_args).eval()
    dep.load_state_dict(ref.state_dict(), strict=True)
    n, h, w = shape
    x = torch.randn(n, 16, h, w)
    with torch.no_grad():
        torch.testing.assert_close(dep(x), ref(x), atol=1e-5, rtol=1e-4)


def test_deploy_encodings_stay_finite_in_fp16_on_a_large_map():
    ref = randomize(EncNetReference(8, ncodes=4), std=0.3, bn=TRAINED_BN)
    with torch.no_grad():  # trained statistics for a 96x96 map: |e_k| ~ 1e4..1e5
        ref.encoding[4].running_var.fill_(4e8)
        ref.encoding[4].running_mean.fill_(100.0)
    dep = EncNet(**ref.init_args).eval()
    dep.load_state_dict(ref.state_dict())
    x = torch.randn(1, 8, 96, 96) * 3 + 2
    with torch.no_grad():
        want = ref(x)
        got = dep.half()(x.half()).float()
    assert torch.isfinite(got).all()
    # FP16 end to end on CPU (the converter would keep the reductions in FP32): ~1% of the map
    torch.testing.assert_close(got, want, atol=0.02 * float(want.abs().max()), rtol=0.03)


def test_se_logits_need_the_head():
    with pytest.raises(BlockConfigError, match="se_loss=True and nclass=N"):
        EncNet(16, return_se_logits=True)


def test_export_opset13_dynamic_hw(tmp_path):
    dep = randomize(EncNet(16, nclass=5, ncodes=8), std=0.3, bn=TRAINED_BN)
    export_and_compare(dep, tmp_path, (1, 16, 8, 8), [(3, 16, 9, 13), (1, 16, 5, 5)], opset=13,
                       forbidden=block_info("encnet").forbidden_ops, atol=1e-5, rtol=1e-4)


class MmsegConvModule(nn.Module):
    """mmcv ``ConvModule`` with BN and ReLU: ``conv`` (no bias next to a norm), ``bn``."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.activate = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.activate(self.bn(self.conv(x)))


class MmsegEncoding(nn.Module):
    """Test-only transcription of mmseg ``ops/encoding.py`` ``Encoding`` (pure torch)."""

    def __init__(self, channels, num_codes):
        super().__init__()
        std = 1. / ((num_codes * channels) ** 0.5)
        self.codewords = nn.Parameter(torch.empty(num_codes, channels).uniform_(-std, std))
        self.scale = nn.Parameter(torch.empty(num_codes).uniform_(-1, 0))

    def forward(self, x):
        batch_size, channels = x.size(0), self.codewords.size(1)
        x = x.view(batch_size, channels, -1).transpose(1, 2).contiguous()
        num_codes = self.codewords.size(0)
        expanded_x = x.unsqueeze(2).expand((batch_size, x.size(1), num_codes, channels))
        reshaped_codewords = self.codewords.view((1, 1, num_codes, channels))
        reshaped_scale = self.scale.view((1, 1, num_codes))
        weights = F.softmax(reshaped_scale * (expanded_x - reshaped_codewords).pow(2).sum(dim=3),
                            dim=2)
        return (weights.unsqueeze(3) * (expanded_x - reshaped_codewords)).sum(1)


class MmsegEncModule(nn.Module):
    """Test-only transcription of mmseg ``decode_heads/enc_head.py`` ``EncModule``."""

    def __init__(self, in_channels, num_codes):
        super().__init__()
        self.encoding_project = MmsegConvModule(in_channels, in_channels)
        self.encoding = nn.Sequential(MmsegEncoding(in_channels, num_codes),
                                      nn.BatchNorm1d(num_codes), nn.ReLU(inplace=True))
        self.fc = nn.Sequential(nn.Linear(in_channels, in_channels), nn.Sigmoid())

    def forward(self, x):
        encoding_feat = self.encoding(self.encoding_project(x)).mean(dim=1)
        batch_size, channels, _, _ = x.size()
        y = self.fc(encoding_feat).view(batch_size, channels, 1, 1)
        return encoding_feat, F.relu_(x + x * y)


def test_mmseg_layout_converts_and_matches():
    theirs = randomize(MmsegEncModule(16, 8), std=0.3, bn=TRAINED_BN)
    block = load_pretrained("encnet", theirs.state_dict(), source="mmseg")
    assert block.init_args["ncodes"] == 8 and "selayer.weight" not in block.state_dict()
    x = torch.randn(2, 16, 7, 10)
    with torch.no_grad():
        torch.testing.assert_close(block(x), theirs(x)[1], atol=1e-5, rtol=1e-4)
