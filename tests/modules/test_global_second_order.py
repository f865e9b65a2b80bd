"""GSoP channel attention: reference == the published Bottleneck's chan_att, deploy == reference,
no (M, M) centring matrix in the deploy graph (H6, F1)."""

import onnx
import pytest
import torch
from torch import nn
from torch.autograd import Function

from attn_export.modules.checkpoints import load_pretrained
from attn_export.modules.global_second_order import (
    GSoP,
    GSoPReference,
    covpool_centred,
    covpool_published,
)
from attn_export.modules.registry import block_info
from tests.onnx_checks import export_and_compare
from tests.weights import randomize

TRAINED_BN = {"weight": (0.7, 1.3), "running_mean": 0.2}


class Covpool(Function):
    """Test-only transcription of MPN-COV ``MPNCOV.py`` ``Covpool`` (forward)."""

    @staticmethod
    def forward(ctx, input):
        x = input
        batchSize, dim, h, w = x.data.shape
        M = h * w
        x = x.reshape(batchSize, dim, M)
        I_hat = (-1. / M / M) * torch.ones(M, M, device=x.device) + (1. / M) * torch.eye(
            M, M, device=x.device)
        I_hat = I_hat.view(1, M, M).repeat(batchSize, 1, 1).type(x.dtype)
        return x.bmm(I_hat).bmm(x.transpose(1, 2))


class GSoPBottleneckAttention(nn.Module):
    """Test-only transcription of the GSoP ``Bottleneck``'s attention='1' layers and ``chan_att``
    (ZilinGao/Global-Second-order-Pooling-Convolutional-Networks ``torchvision/models/resnet.py``),
    applied as its forward does (``pre_att * att``)."""

    def __init__(self, planes, att_dim=128, expansion=4):
        super().__init__()
        self.relu = nn.ReLU(inplace=True)
        self.relu_normal = nn.ReLU(inplace=False)
        DR_stride = 1 if planes > 64 else 2
        self.ch_dim = att_dim
        self.conv_for_DR = nn.Conv2d(planes * expansion, self.ch_dim, kernel_size=1,
                                     stride=DR_stride, bias=True)
        self.bn_for_DR = nn.BatchNorm2d(self.ch_dim)
        self.row_bn = nn.BatchNorm2d(self.ch_dim)
        self.row_conv_group = nn.Conv2d(self.ch_dim, 4 * self.ch_dim, kernel_size=(self.ch_dim, 1),
                                        groups=self.ch_dim, bias=True)
        self.fc_adapt_channels = nn.Conv2d(4 * self.ch_dim, planes * expansion, kernel_size=1,
                                           groups=1, bias=True)
        self.sigmoid = nn.Sigmoid()

    def chan_att(self, out):
        out = self.relu_normal(out)
        out = self.conv_for_DR(out)
        out = self.bn_for_DR(out)
        out = self.relu(out)
        out = Covpool.apply(out)
        out = out.view(out.size(0), out.size(1), out.size(2), 1).contiguous()
        out = self.row_bn(out)
        out = self.row_conv_group(out)
        out = self.fc_adapt_channels(out)
        return self.sigmoid(out)

    def forward(self, out):
        return out * self.chan_att(out)


@pytest.mark.parametrize("planes", [16, 80], ids=["stride2", "stride1"])
def test_published_state_dict_loads_strictly_and_matches(planes):
    theirs = randomize(GSoPBottleneckAttention(planes, att_dim=16), std=0.2, bn=TRAINED_BN)
    ref = GSoPReference(planes * 4, att_dim=16).eval()
    ref.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, planes * 4, 11, 7)
    with torch.no_grad():
        torch.testing.assert_close(ref(x), theirs(x), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("shape", [(1, 7, 9), (3, 13, 5), (3, 16, 16), (1, 2, 2)],
                         ids=lambda s: "x".join(map(str, s)))
def test_deploy_equals_reference(shape):
    ref = randomize(GSoPReference(32, att_dim=16), std=0.2, bn=TRAINED_BN)
    dep = GSoP(**ref.init_args).eval()
    dep.load_state_dict(ref.state_dict(), strict=True)
    n, h, w = shape
    x = torch.randn(n, 32, h, w)
    with torch.no_grad():
        torch.testing.assert_close(dep(x), ref(x), atol=1e-5, rtol=1e-4)


def test_centred_covariance_equals_the_centring_matrix_product():
    x = torch.randn(2, 6, 9, 5) * 3 + 1
    torch.testing.assert_close(covpool_centred(x), covpool_published(x), atol=1e-4, rtol=1e-4)


def test_centred_covariance_stays_finite_in_fp16():
    x = torch.randn(1, 4, 64, 64) * 8 + 40  # sum of x^2 over 4096 pixels ~ 7e6
    want = covpool_published(x)
    got = covpool_centred(x.half()).float()
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, want, atol=0.5, rtol=0.02)


def test_checkpoint_infers_channels_and_att_dim():
    theirs = randomize(GSoPBottleneckAttention(16, att_dim=24), std=0.2, bn=TRAINED_BN)
    block = load_pretrained("gsop", theirs.state_dict())
    assert block.init_args["channels"] == 64 and block.init_args["att_dim"] == 24


def test_deploy_graph_has_no_centring_matrix_and_follows_dynamic_hw(tmp_path):
    dep = randomize(GSoP(32, att_dim=16), std=0.2, bn=TRAINED_BN)
    export_and_compare(dep, tmp_path, (1, 32, 16, 16), [(3, 32, 9, 13), (1, 32, 21, 6)],
                       opset=13, forbidden=block_info("gsop").forbidden_ops,
                       atol=1e-5, rtol=1e-4)
    model = onnx.load(str(tmp_path / "block.onnx"))
    # 16x16 with the published stride 2 leaves M = 64 positions: the reference's I_hat is (64, 64)
    assert not [i.name for i in model.graph.initializer if tuple(i.dims[-2:]) == (64, 64)]
