"""External attention: reference == official EANet module, deploy == reference (also in FP16,
where the official 1e-9 vanishes), exports without reshapes."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attn_export.errors import BlockConfigError
from attn_export.modules.checkpoints import infer_hyperparams, load_pretrained
from attn_export.modules.external_attention import ExternalAttention, ExternalAttentionReference
from attn_export.modules.factory import create_block
from attn_export.modules.swap import to_deploy
from tests.conftest import exhaustive
from tests.onnx_checks import export_and_compare

SHAPES = [(1, 7, 9), (3, 13, 5), (3, 16, 16), (1, 1, 1)]
WIDTHS = [(16, 8), (32, 64)]


class OfficialExternalAttention(nn.Module):
    """MenghaoGuo/EANet ``model_torch.py`` External_attention as published (SynchronizedBatchNorm2d
    -> BatchNorm2d, the same parameters and eval maths), tied init included."""

    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 1)
        self.k = 64
        self.linear_0 = nn.Conv1d(c, self.k, 1, bias=False)
        self.linear_1 = nn.Conv1d(self.k, c, 1, bias=False)
        self.linear_1.weight.data = self.linear_0.weight.data.permute(1, 0, 2)
        self.conv2 = nn.Sequential(nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                m.weight.data.normal_(0, math.sqrt(2.0 / n))
            elif isinstance(m, nn.Conv1d):
                n = m.kernel_size[0] * m.out_channels
                m.weight.data.normal_(0, math.sqrt(2.0 / n))

    def forward(self, x):
        idn = x
        x = self.conv1(x)
        b, c, h, w = x.size()
        x = x.view(b, c, h * w)
        attn = self.linear_0(x)
        attn = F.softmax(attn, dim=-1)
        attn = attn / (1e-9 + attn.sum(dim=1, keepdim=True))
        x = self.linear_1(attn)
        x = x.view(b, c, h, w)
        x = self.conv2(x)
        x = x + idn
        return F.relu(x)


def _bn_stats(module):
    """Non-trivial BatchNorm statistics, so eval mode is actually exercised."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_(1, 0.2)
                m.bias.normal_(0, 0.2)
    return module.eval()


def _pair(channels, k):
    torch.manual_seed(channels + k)
    ref = _bn_stats(ExternalAttentionReference(channels, k=k))
    return ref, to_deploy(ref).eval()


@pytest.mark.parametrize("channels,k", WIDTHS, ids=lambda v: str(v))
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_deploy_equals_reference(channels, k, shape):
    ref, dep = _pair(channels, k)
    assert isinstance(dep, ExternalAttention)
    x = torch.randn(shape[0], channels, *shape[1:])
    with torch.no_grad():
        torch.testing.assert_close(dep(x), ref(x), atol=1e-5, rtol=1e-5)


def test_official_state_dict_loads_strictly_and_matches():
    torch.manual_seed(0)
    official = _bn_stats(OfficialExternalAttention(32))
    sd = official.state_dict()
    ref = ExternalAttentionReference(32).eval()
    ref.load_state_dict(sd, strict=True)
    x = torch.randn(2, 32, 9, 7)
    with torch.no_grad():
        torch.testing.assert_close(ref(x), official(x), atol=0, rtol=0)
        block = load_pretrained("external", sd)  # deploy, kwargs inferred
        torch.testing.assert_close(block(x), official(x), atol=1e-5, rtol=1e-5)
    assert block.init_args == {"channels": 32, "k": 64}


def test_an_untied_checkpoint_loads_exactly():
    # The official module ties linear_1 to a view of linear_0, so loading untied weights
    # overwrites linear_0; ours keeps both as given.
    ref = ExternalAttentionReference(16, k=8)
    sd = {k: torch.randn_like(v) if v.is_floating_point() else v
          for k, v in ref.state_dict().items()}
    ref.load_state_dict(sd)
    assert torch.equal(ref.linear_0.weight, sd["linear_0.weight"])
    assert torch.equal(ref.linear_1.weight, sd["linear_1.weight"])
    fresh = ExternalAttentionReference(16, k=8)  # tied init kept as a copy
    assert torch.equal(fresh.linear_1.weight, fresh.linear_0.weight.permute(1, 0, 2))


def test_hyperparams_from_weights():
    sd = ExternalAttentionReference(24, k=12).state_dict()
    assert infer_hyperparams("external", sd) == {"channels": 24, "k": 12}


def _peaky(channels=16, k=8):
    """Weights that make the softmax over H*W peaky: in FP16 whole positions underflow."""
    ref, dep = _pair(channels, k)
    with torch.no_grad():
        ref.linear_0.weight.mul_(40.0)
        dep.linear_0.weight.copy_(ref.linear_0.weight)
    return ref, dep


def test_fp16_deploy_stays_finite_where_the_official_form_divides_zero_by_zero():
    ref, dep = _peaky()
    x = torch.randn(2, 16, 32, 32)
    with torch.no_grad():
        expected = ref(x)
        official_fp16 = ref.half()(x.half()).float()
        got = dep.half()(x.half()).float()
    assert torch.isnan(official_fp16).any(), "the hazard did not show: make the logits peakier"
    assert torch.isfinite(expected).all() and torch.isfinite(got).all()
    torch.testing.assert_close(got, expected, atol=2e-2, rtol=2e-2)


def test_log_domain_normalisation_equals_the_official_one_in_fp32():
    from attn_export.modules.external_attention import _double_normalise

    logits = torch.randn(3, 8, 13, 5) * 6
    p = torch.softmax(logits.flatten(2), -1)
    expected = (p / (1e-9 + p.sum(1, keepdim=True))).reshape(logits.shape)
    torch.testing.assert_close(_double_normalise(logits, 8), expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("kwargs", [{"k": 0}, {"k": 2.5}, {"k": True}])
def test_bad_args_raise(kwargs):
    with pytest.raises(BlockConfigError, match="k"):
        create_block("external", 16, **kwargs)


@pytest.mark.parametrize("fill", [0.0, 3.0])
def test_finite_on_zero_and_constant_maps(fill):
    ref, dep = _pair(16, 8)
    x = torch.full((2, 16, 7, 9), fill)
    with torch.no_grad():
        for m in (ref, dep):
            assert torch.isfinite(m(x)).all()
        torch.testing.assert_close(dep(x), ref(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("exporter,opset",
                         exhaustive([("torchscript", 11), ("dynamo", 18)], unpack=True))
def test_exports_without_reshapes_and_runs_at_other_sizes(tmp_path, exporter, opset):
    _, dep = _pair(16, 8)
    export_and_compare(dep, tmp_path, (2, 16, 16, 16), [(3, 16, 9, 13), (3, 16, 24, 20)],
                       exporter=exporter, opset=opset, filename="ea.onnx",
                       forbidden={"Shape", "Reshape", "Softmax"}, atol=1e-5, rtol=1e-4)
