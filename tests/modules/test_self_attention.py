"""Multi-head self-attention: reference == timm Attention2d, deploy == reference (also in FP16 at
magnitudes where the unscaled q.k overflows), the timm / ViT / torch layouts convert."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attn_export.errors import BlockConfigError, CheckpointError
from attn_export.modules.checkpoints import convert_state_dict, infer_hyperparams, load_pretrained
from attn_export.modules.factory import create_block
from attn_export.modules.self_attention import MHSA, MHSAReference
from attn_export.modules.swap import to_deploy
from tests.conftest import exhaustive
from tests.onnx_checks import export_and_compare

SHAPES = [(1, 7, 9), (3, 13, 5), (3, 16, 16), (1, 1, 1)]
WIDTHS = [(16, 4, True), (32, 8, False)]


class TimmAttention2d(nn.Module):
    """timm ``layers/attention2d.py`` Attention2d (head_first=False), both of its paths."""

    def __init__(self, dim, num_heads=32, bias=True, fused=True):
        super().__init__()
        self.num_heads = num_heads
        self.dim_head = dim // num_heads
        self.fused_attn = fused
        self.qkv = nn.Conv2d(dim, dim * 3, 1, bias=bias)
        self.proj = nn.Conv2d(dim, dim, 1, bias=bias)

    def forward(self, x):
        B, C, H, W = x.shape
        q, k, v = self.qkv(x).reshape(B, 3, self.num_heads, self.dim_head, -1).unbind(1)
        if self.fused_attn:
            x = F.scaled_dot_product_attention(
                q.transpose(-1, -2).contiguous(), k.transpose(-1, -2).contiguous(),
                v.transpose(-1, -2).contiguous(),
            ).transpose(-1, -2).reshape(B, -1, H, W)
        else:
            q = q.transpose(-1, -2)
            v = v.transpose(-1, -2)
            attn = q @ k * q.size(-1) ** -0.5
            attn = attn.softmax(dim=-1)
            x = (attn @ v).transpose(-1, -2).reshape(B, -1, H, W)
        return self.proj(x)


class TimmVitAttention(nn.Module):
    """timm ``vision_transformer.py`` Attention on (B, N, C) tokens (qk_norm off)."""

    def __init__(self, dim, num_heads=8, qkv_bias=False):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


def _on_tokens(module, x):
    """Run a token module over the flattened positions of a map and fold the result back."""
    B, C, H, W = x.shape
    tokens = x.flatten(2).transpose(1, 2)
    out = module(tokens)
    out = out[0] if isinstance(out, tuple) else out
    return out.transpose(1, 2).reshape(B, C, H, W)


def _pair(channels, heads, qkv_bias):
    torch.manual_seed(channels + heads)
    ref = MHSAReference(channels, num_heads=heads, qkv_bias=qkv_bias).eval()
    return ref, to_deploy(ref).eval()


@pytest.mark.parametrize("channels,heads,qkv_bias", WIDTHS, ids=lambda v: str(v))
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_deploy_equals_reference(channels, heads, qkv_bias, shape):
    ref, dep = _pair(channels, heads, qkv_bias)
    assert isinstance(dep, MHSA)
    x = torch.randn(shape[0], channels, *shape[1:])
    with torch.no_grad():
        torch.testing.assert_close(dep(x), ref(x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("fused", [True, False], ids=["sdpa", "unfused"])
def test_timm_attention2d_with_biases_loads_as_reference(fused):
    torch.manual_seed(0)
    timm = TimmAttention2d(32, num_heads=4, bias=True, fused=fused).eval()
    ref = MHSAReference(32, num_heads=4, qkv_bias=True).eval()
    ref.load_state_dict(timm.state_dict(), strict=True)
    x = torch.randn(2, 32, 7, 9)
    with torch.no_grad():
        torch.testing.assert_close(ref(x), timm(x), atol=1e-5, rtol=1e-5)


def test_timm_attention2d_without_biases_gets_a_zero_proj_bias():
    torch.manual_seed(1)
    timm = TimmAttention2d(32, num_heads=8, bias=False).eval()
    sd = convert_state_dict("mhsa", timm.state_dict(), "timm")
    assert torch.equal(sd["proj.bias"], torch.zeros(32))
    block = load_pretrained("mhsa", timm.state_dict(), source="timm", num_heads=8)
    assert block.init_args == {"channels": 32, "num_heads": 8, "qkv_bias": False}
    x = torch.randn(2, 32, 5, 6)
    with torch.no_grad():
        torch.testing.assert_close(block(x), timm(x), atol=1e-5, rtol=1e-4)


def test_timm_vit_attention_converts():
    torch.manual_seed(2)
    vit = TimmVitAttention(32, num_heads=4, qkv_bias=True).eval()
    block = load_pretrained("mhsa", vit.state_dict(), source="timm_vit", num_heads=4)
    x = torch.randn(2, 32, 6, 5)
    with torch.no_grad():
        torch.testing.assert_close(block(x), _on_tokens(vit, x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("bias", [True, False])
def test_torch_multihead_attention_converts(bias):
    torch.manual_seed(3)
    mha = nn.MultiheadAttention(32, 4, bias=bias, batch_first=True).eval()
    block = load_pretrained("mhsa", mha.state_dict(), source="torch", num_heads=4)
    assert block.init_args["qkv_bias"] is bias
    x = torch.randn(2, 32, 4, 7)

    def attend(t):
        return mha(t, t, t, need_weights=False)

    with torch.no_grad():
        torch.testing.assert_close(block(x), _on_tokens(attend, x), atol=1e-5, rtol=1e-4)


def test_unsupported_foreign_variants_are_refused():
    mha = nn.MultiheadAttention(16, 2, add_bias_kv=True)
    with pytest.raises(CheckpointError, match="bias_k"):
        convert_state_dict("mhsa", mha.state_dict(), "torch")
    vit = TimmVitAttention(16, 2).state_dict()
    vit["q_norm.weight"] = torch.ones(8)
    with pytest.raises(CheckpointError, match="q_norm"):
        convert_state_dict("mhsa", vit, "timm_vit")


def test_hyperparams_cannot_give_num_heads():
    sd = MHSAReference(48, num_heads=6, qkv_bias=True).state_dict()
    assert infer_hyperparams("mhsa", sd) == {"channels": 48, "qkv_bias": True}
    block = load_pretrained("mhsa", sd, num_heads=6)
    assert block.init_args["num_heads"] == 6


def _identity_attention(channels, v_scale):
    """q = k = x (so the diagonal logit is |x|^2 / sqrt(d)), v = x * v_scale, proj = identity."""
    ref = MHSAReference(channels, num_heads=1).eval()
    eye = torch.eye(channels)[:, :, None, None]
    with torch.no_grad():
        ref.qkv.weight.copy_(torch.cat([eye, eye, eye * v_scale]))
        ref.proj.weight.copy_(eye)
        ref.proj.bias.zero_()
    return ref


def test_fp16_logits_stay_in_range_where_the_unscaled_product_overflows():
    # Activations of std 40 over 64 channels (an un-normalised CNN neck): |q.k| ~ 1e5 > 65504,
    # the scaled logits ~ 1.3e4 are fine. timm's unfused path multiplies after the matmul.
    ref = _identity_attention(64, v_scale=1 / 40)
    dep = to_deploy(ref).eval()
    timm_unfused = TimmAttention2d(64, num_heads=1, bias=True, fused=False).eval()
    timm_unfused.load_state_dict({**ref.state_dict(), "qkv.bias": torch.zeros(192)})
    x = torch.randn(2, 64, 6, 7) * 40
    with torch.no_grad():
        expected = ref(x)
        naive = timm_unfused.half()(x.half()).float()
        got = dep.half()(x.half()).float()
    assert not torch.isfinite(naive).all(), "the hazard did not show: raise the magnitudes"
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, expected, atol=2e-3, rtol=2e-2)


def test_fp16_deploy_at_ordinary_magnitudes():
    ref, dep = _pair(64, 8, True)
    x = torch.randn(2, 64, 9, 11) * 4
    with torch.no_grad():
        torch.testing.assert_close(dep.half()(x.half()).float(), ref(x), atol=1e-2, rtol=2e-2)


@pytest.mark.parametrize("kwargs", [{"num_heads": 3}, {"num_heads": 0}, {"num_heads": 2.0}])
def test_bad_args_raise(kwargs):
    with pytest.raises(BlockConfigError, match="num_heads"):
        create_block("mhsa", 16, **kwargs)


@pytest.mark.parametrize("fill", [0.0, 3.0])
def test_finite_on_zero_and_constant_maps(fill):
    ref, dep = _pair(16, 4, True)
    x = torch.full((2, 16, 7, 9), fill)
    with torch.no_grad():
        assert torch.isfinite(dep(x)).all()
        torch.testing.assert_close(dep(x), ref(x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("exporter,opset",
                         exhaustive([("torchscript", 11), ("dynamo", 18)], unpack=True))
def test_exports_explicit_attention_and_runs_at_other_sizes(tmp_path, exporter, opset):
    _, dep = _pair(16, 4, True)
    ops = export_and_compare(dep, tmp_path, (2, 16, 16, 16), [(3, 16, 9, 13), (1, 16, 24, 20)],
                             exporter=exporter, opset=opset, filename="mhsa.onnx",
                             forbidden={"Einsum", "Attention"}, atol=1e-5, rtol=1e-4)
    assert ops.get("MatMul", 0) == 2, ops
    # q, v and the output are transposed: (N x dim_head) operands, never the (N x N) attention
    assert ops.get("Transpose", 0) <= 3 and ops.get("Softmax", 0) == 1, ops
