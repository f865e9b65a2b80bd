"""SimAM: reference == seed, deploy == reference, and the deploy form survives FP16 (F1)."""

import pytest
import torch

from attn_export.errors import BlockConfigError
from attn_export.modules.registry import block_info
from attn_export.modules.simam import SimAM, SimAMReference
from tests.onnx_checks import export_and_compare
from tests.seed_listings import simam_module as SeedSimAM

SHAPES = [(1, 7, 9), (3, 13, 5), (3, 16, 16), (2, 1, 6)]


@pytest.mark.parametrize("e_lambda", [1e-4, 0.1])
@pytest.mark.parametrize("channels", [16, 48])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_deploy_equals_reference(e_lambda, channels, shape):
    x = torch.randn(shape[0], channels, *shape[1:]) * 3
    ref = SimAMReference(channels, e_lambda=e_lambda)
    dep = SimAM(channels, e_lambda=e_lambda)
    torch.testing.assert_close(dep(x), ref(x), atol=1e-5, rtol=1e-5)


def test_seed_matches_and_state_dict_is_empty():
    x = torch.randn(2, 24, 9, 7)
    ref = SimAMReference(24)
    assert ref.state_dict() == {} and SimAM(24).state_dict() == {}
    ref.load_state_dict(SeedSimAM(24).state_dict(), strict=True)
    torch.testing.assert_close(ref(x), SeedSimAM(24)(x), atol=0, rtol=0)


@pytest.mark.parametrize("hw", [(80, 80), (160, 120)], ids=["80x80", "160x120"])
def test_fp16_reference_overflows_where_deploy_does_not(hw):
    # F1: |x| up to 10, so sum((x - mu)^2) ~ H*W * 33 > 65504 in FP16; the variance is then inf
    # and every gate collapses to sigmoid(0.5).
    torch.manual_seed(2)
    x = torch.rand(1, 8, *hw) * 20 - 10
    expected = SimAMReference(8)(x)  # FP32
    d16 = (x.half() - x.half().mean((2, 3), keepdim=True)).pow(2)
    assert torch.isinf(d16.sum((2, 3))).all(), "the FP16 sum of squares was expected to overflow"
    ref16 = SimAMReference(8)(x.half()).float()
    dep16 = SimAM(8)(x.half()).float()
    assert (ref16 - expected).abs().max() > 1.0  # the flattened gate
    assert torch.isfinite(dep16).all()
    # FP16 keeps ~3 significant digits: outputs up to 10 carry ~1e-2 of rounding.
    torch.testing.assert_close(dep16, expected, atol=3e-2, rtol=1e-2)


@pytest.mark.parametrize("fill", [0.0, 1e-3, 4.0], ids=["zero", "tiny", "const"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_finite_on_zero_and_constant_maps(fill, dtype):
    # Zero variance: y = 0 / (4 * e_lambda) + 0.5, finite thanks to e_lambda.
    x = torch.full((2, 16, 9, 7), fill)
    y = SimAM(16)(x.to(dtype)).float()
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y, SimAMReference(16)(x), atol=1e-3, rtol=1e-3)


def test_single_pixel_map_has_no_variance_in_either_form():
    # n = H*W - 1 = 0: the published code divides 0 by 0; the deploy form must not hide it.
    x = torch.randn(2, 4, 1, 1)
    assert torch.isnan(SimAMReference(4)(x)).all() and torch.isnan(SimAM(4)(x)).all()


@pytest.mark.parametrize("cls", [SimAMReference, SimAM])
@pytest.mark.parametrize("e_lambda", [0, -1e-4, "1e-4", None, True])
def test_bad_lambda_raises(cls, e_lambda):
    with pytest.raises(BlockConfigError, match="e_lambda must be a positive number"):
        cls(16, e_lambda=e_lambda)


def test_export_with_dynamic_hw_matches_at_other_sizes(tmp_path):
    # The registry matrix in tests/export runs the dynamo exporter and the other opsets.
    dep = SimAM(16)
    export_and_compare(dep, tmp_path, (2, 16, 16, 16),
                       [(3, 16, 9, 13), (1, 16, 24, 20)],  # H*W-1 must follow the runtime size
                       make_input=lambda shape: torch.randn(shape) * 3,
                       exporter="torchscript", opset=13, filename="simam.onnx",
                       forbidden=block_info("simam").forbidden_ops)
