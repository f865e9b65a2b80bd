"""SOCA: reference == the seed SOCA with MPN-COV's autograd Functions, deploy == reference."""

import pytest
import torch
from torch import nn
from torch.autograd import Function

from attn_export.errors import ShapeModeError
from attn_export.modules.checkpoints import load_pretrained
from attn_export.modules.registry import block_info
from attn_export.modules.second_order_channel_attention import SOCA, SOCAReference
from tests.onnx_checks import export_and_compare
from tests.weights import randomize


class Covpool(Function):
    """Test-only transcription of daitao/SAN ``MPNCOV.py`` Covpool (forward)."""

    @staticmethod
    def forward(ctx, input):
        x = input
        batchSize, dim, h, w = x.data.shape  # noqa: N806
        M = h * w  # noqa: N806
        x = x.reshape(batchSize, dim, M)
        I_hat = torch.empty(M, M, device=x.device).fill_(-1. / M / M)  # noqa: N806
        I_hat_diag = I_hat.diagonal()  # noqa: N806
        I_hat_diag += (1. / M)
        return x @ I_hat @ x.transpose(1, 2)


class Sqrtm(Function):
    """Test-only transcription of ``MPNCOV.py`` Sqrtm (forward)."""

    @staticmethod
    def forward(ctx, input, iterN):  # noqa: N803
        x = input
        batchSize = x.data.shape[0]  # noqa: N806
        dim = x.data.shape[1]
        dtype = x.dtype
        I3 = 3.0 * torch.eye(dim, dim, device=x.device).view(1, dim, dim).repeat(batchSize, 1, 1).type(dtype)  # noqa: N806,E501
        normA = (1.0 / 3.0) * x.mul(I3).sum(dim=1).sum(dim=1)  # noqa: N806
        A = x.div(normA.view(batchSize, 1, 1).expand_as(x))  # noqa: N806
        Y = torch.zeros(batchSize, iterN, dim, dim, requires_grad=False, device=x.device)  # noqa: N806
        Z = torch.eye(dim, dim, device=x.device).view(1, dim, dim).repeat(batchSize, iterN, 1, 1)  # noqa: N806
        if iterN < 2:
            ZY = 0.5 * (I3 - A)  # noqa: N806
            Y[:, 0, :, :] = A.bmm(ZY)
        else:
            ZY = 0.5 * (I3 - A)  # noqa: N806
            Y[:, 0, :, :] = A.bmm(ZY)
            Z[:, 0, :, :] = ZY
            for i in range(1, iterN - 1):
                ZY = 0.5 * (I3 - Z[:, i - 1, :, :].bmm(Y[:, i - 1, :, :]))  # noqa: N806
                Y[:, i, :, :] = Y[:, i - 1, :, :].bmm(ZY)
                Z[:, i, :, :] = ZY.bmm(Z[:, i - 1, :, :])
            ZY = 0.5 * Y[:, iterN - 2, :, :].bmm(I3 - Z[:, iterN - 2, :, :].bmm(Y[:, iterN - 2, :, :]))  # noqa: N806,E501
        return ZY * torch.sqrt(normA).view(batchSize, 1, 1).expand_as(x)


class PublishedSOCA(nn.Module):
    """Test-only transcription of the seed ``SOCA`` (the crop branches included)."""

    def __init__(self, channel, reduction=8):
        super().__init__()
        self.max_pool = nn.MaxPool2d(kernel_size=2)
        self.conv_du = nn.Sequential(
            nn.Conv2d(channel, channel // reduction, 1, padding=0, bias=True),
            nn.ReLU(inplace=True),
            nn.Conv2d(channel // reduction, channel, 1, padding=0, bias=True),
            nn.Sigmoid())

    def forward(self, x):
        batch_size, C, h, w = x.shape  # noqa: N806
        h1, w1 = 1000, 1000
        if h < h1 and w < w1:
            x_sub = x
        elif h < h1 and w > w1:
            W = (w - w1) // 2  # noqa: N806
            x_sub = x[:, :, :, W:(W + w1)]
        elif w < w1 and h > h1:
            H = (h - h1) // 2  # noqa: N806
            x_sub = x[:, :, H:H + h1, :]
        else:
            H = (h - h1) // 2  # noqa: N806
            W = (w - w1) // 2  # noqa: N806
            x_sub = x[:, :, H:(H + h1), W:(W + w1)]
        cov_mat = Covpool.apply(x_sub)
        cov_mat_sqrt = Sqrtm.apply(cov_mat, 5)
        cov_mat_sum = torch.mean(cov_mat_sqrt, 1)
        cov_mat_sum = cov_mat_sum.view(batch_size, C, 1, 1)
        y_cov = self.conv_du(cov_mat_sum)
        return y_cov * x


def _pair(channels=32, reduction=8):
    ref = randomize(SOCAReference(channels, reduction))
    dep = SOCA(channels, reduction).eval()
    dep.load_state_dict(ref.state_dict(), strict=True)
    return ref, dep


@pytest.mark.parametrize("hw", [(9, 13), (1002, 3)], ids=str)
def test_published_checkpoint_loads_strictly_and_matches(hw):
    published = randomize(PublishedSOCA(32, 4))
    ref = load_pretrained("soca", published.state_dict(), variant="reference")
    assert ref.init_args["reduction"] == 4
    x = torch.randn(2, 32, *hw)
    with torch.no_grad():
        torch.testing.assert_close(ref(x), published(x), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("hw", [(9, 13), (16, 16), (2, 5), (20, 7)], ids=str)
@pytest.mark.parametrize("batch", [1, 3])
def test_deploy_equals_reference(hw, batch):
    ref, dep = _pair()
    x = torch.randn(batch, 32, *hw) * 3
    with torch.no_grad():
        torch.testing.assert_close(dep(x), ref(x), atol=1e-5, rtol=1e-4)


def test_zero_covariance_gives_the_limit_not_nan():
    ref, dep = _pair()
    x = torch.zeros(1, 32, 5, 5)
    with torch.no_grad():
        assert torch.isnan(ref(x)).any()  # published: 0 / 0
        assert torch.isfinite(dep(x)).all()


def test_maps_the_published_code_crops_are_refused():
    _, dep = _pair()
    with pytest.raises(ShapeModeError, match="centre-crops maps with H or W >= 1000"):
        dep(torch.randn(1, 32, 4, 1000))


@pytest.mark.parametrize("opset", [13, 17])
def test_exports_with_dynamic_hw(tmp_path, opset):
    _, dep = _pair()
    export_and_compare(dep, tmp_path, (1, 32, 12, 10), [(1, 32, 12, 10), (3, 32, 7, 15)],
                       opset=opset, dynamic="all", atol=1e-4, rtol=1e-4,
                       forbidden=block_info("soca").forbidden_ops)
