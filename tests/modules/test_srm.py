"""SRM: reference == seed (eval and train), deploy == reference with explicit mean/variance (H10)."""

import pytest
import torch

from attn_export.errors import BlockConfigError
from attn_export.modules.checkpoints import load_pretrained
from attn_export.modules.srm import SRM, SRMReference
from tests.seed_listings import SRMLayer
from tests.weights import randomize

SHAPES = [(1, 7, 9), (3, 13, 5), (3, 16, 16), (2, 1, 2)]


# randomize()'s BatchNorm fill: trained-looking, as at init the BN is nearly the identity.
TRAINED_BN = {"weight": (0.5, 1.5), "bias": 0.5, "running_mean": 0.5}


def _pair(channels, seed=0):
    ref = randomize(SRMReference(channels), seed, std=1.0, bn=TRAINED_BN)
    dep = SRM(channels).eval()
    dep.load_state_dict(ref.state_dict(), strict=True)
    return ref, dep


@pytest.mark.parametrize("channels", [16, 48])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_deploy_equals_reference(channels, shape):
    ref, dep = _pair(channels)
    n, h, w = shape
    x = torch.randn(n, channels, h, w) * 2 + 0.5
    with torch.no_grad():
        torch.testing.assert_close(dep(x), ref(x), atol=1e-5, rtol=1e-5)


def test_train_mode_matches_too():
    # BatchNorm1d over (N, C) in the deploy form and over (N, C, 1) in the seed: same batch
    # statistics, same running-stat updates.
    ref, dep = _pair(16)
    ref.train()
    dep.train()
    x = torch.randn(4, 16, 7, 9)
    torch.testing.assert_close(dep(x), ref(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(dep.bn.running_mean, ref.bn.running_mean)
    torch.testing.assert_close(dep.bn.running_var, ref.bn.running_var)
    assert int(dep.bn.num_batches_tracked) == int(ref.bn.num_batches_tracked) == 1


def test_seed_state_dict_loads_strictly_and_matches():
    seed = randomize(SRMLayer(24), std=1.0, bn=TRAINED_BN)
    ref = SRMReference(24).eval()
    ref.load_state_dict(seed.state_dict(), strict=True)
    x = torch.randn(2, 24, 11, 7)
    with torch.no_grad():
        torch.testing.assert_close(ref(x), seed(x), atol=0, rtol=0)


def test_std_is_unbiased_like_torch_std():
    _, dep = _pair(8)
    with torch.no_grad():
        dep.cfc.weight.zero_()
        dep.cfc.weight[:, 0, 1] = 1.0  # z = std only
        dep.bn.running_mean.zero_()
        dep.bn.running_var.fill_(1.0 - dep.bn.eps)  # BN becomes weight * z + bias
        dep.bn.weight.fill_(1.0)
        dep.bn.bias.zero_()
    x = torch.randn(2, 8, 5, 3)
    gate = dep(x) / x
    expected = torch.sigmoid(x.flatten(2).std(-1))[:, :, None, None].expand_as(x)
    torch.testing.assert_close(gate, expected, atol=1e-5, rtol=1e-4)


def test_one_pixel_maps_give_nan_as_torch_std_does():
    # torch.std of one sample is NaN (n - 1 = 0); the deploy form keeps that semantics
    # rather than invent a value.
    ref, dep = _pair(8)
    x = torch.randn(2, 8, 1, 1)
    with torch.no_grad(), pytest.warns(UserWarning, match="degrees of freedom"):
        assert torch.isnan(ref(x)).all()
    assert torch.isnan(dep(x)).all()


@pytest.mark.parametrize("fill", [0.0, 3.0, -2.5], ids=["zero", "const+", "const-"])
def test_finite_on_zero_and_constant_maps(fill):
    ref, dep = _pair(16)
    x = torch.full((2, 16, 5, 7), fill)
    with torch.no_grad():
        y = dep(x)
        torch.testing.assert_close(y, ref(x), atol=1e-6, rtol=1e-6)
    assert torch.isfinite(y).all()


def test_fp16_stays_close_to_fp32():
    # Means, not sums (F1): an 80x80 map with |x| ~ 10 has sum((x - mean)^2) ~ 2e5 > 65504.
    ref, dep = _pair(8)
    x = torch.rand(1, 8, 80, 80) * 20 - 10
    with torch.no_grad():
        expected = ref(x)
        got = dep.half()(x.half()).float()
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, expected, atol=3e-2, rtol=1e-2)


def test_hyperparams_inferred_from_weights():
    seed = randomize(SRMLayer(40), std=1.0, bn=TRAINED_BN)
    block = load_pretrained("srm", seed.state_dict())
    assert isinstance(block, SRM) and block.init_args == {"channels": 40}
    x = torch.randn(2, 40, 6, 5)
    with torch.no_grad():
        torch.testing.assert_close(block(x), seed(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cls", [SRMReference, SRM])
def test_bad_channels_raise(cls):
    with pytest.raises(BlockConfigError, match="channels must be >= 1"):
        cls(0)
