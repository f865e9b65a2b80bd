"""CoordAtt: reference == official code, deploy == reference (eval and train), dynamic H/W."""

import pytest
import torch

from attn_export.errors import BlockConfigError, CheckpointError
from attn_export.modules.checkpoints import load_pretrained
from attn_export.modules.coordinate_attention import CoordAtt, CoordAttReference, h_swish
from attn_export.modules.registry import block_info
from tests.onnx_checks import export_and_compare
from tests.seed_listings import CoordAtt as SeedCoordAtt
from tests.weights import randomize

SHAPES = [(1, 7, 9), (3, 13, 5), (3, 16, 16), (1, 1, 1)]


# randomize: trained-looking BN statistics (an identity BN would hide a per-strip mistake).
def _pair(channels, reduction):
    ref = randomize(CoordAttReference(channels, reduction=reduction), stats_last=True)
    dep = CoordAtt(channels, reduction=reduction).eval()
    dep.load_state_dict(ref.state_dict(), strict=True)
    return ref, dep


@pytest.mark.parametrize("channels,reduction", [(16, 32), (64, 4)], ids=["mip8", "mip16"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_deploy_equals_reference(channels, reduction, shape):
    ref, dep = _pair(channels, reduction)
    x = torch.randn(shape[0], channels, *shape[1:])
    with torch.no_grad():
        torch.testing.assert_close(dep(x), ref(x), atol=1e-5, rtol=1e-5)


def test_training_mode_matches_including_batch_statistics():
    # BN batch statistics span both strips at once; the deploy form must not update them twice.
    ref, dep = _pair(32, 4)
    ref.train()
    dep.train()
    x = torch.randn(4, 32, 11, 6)
    torch.testing.assert_close(dep(x), ref(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(dep.bn1.running_mean, ref.bn1.running_mean)
    torch.testing.assert_close(dep.bn1.running_var, ref.bn1.running_var)
    assert dep.bn1.num_batches_tracked == ref.bn1.num_batches_tracked == 1


def test_seed_state_dict_loads_strictly_and_matches():
    seed = randomize(SeedCoordAtt(48, 48, reduction=4), stats_last=True)
    ref = CoordAttReference(48, reduction=4).eval()
    ref.load_state_dict(seed.state_dict(), strict=True)
    x = torch.randn(2, 48, 9, 7)
    with torch.no_grad():
        torch.testing.assert_close(ref(x), seed(x), atol=0, rtol=0)


@pytest.mark.parametrize("channels,reduction", [(48, 4), (64, 32), (200, 3)])
def test_hyperparams_rebuild_the_widths(channels, reduction):
    seed = randomize(SeedCoordAtt(channels, channels, reduction=reduction), stats_last=True)
    block = load_pretrained("coordatt", seed.state_dict())
    assert block.init_args["channels"] == channels
    assert block.conv1.out_channels == seed.conv1.out_channels
    x = torch.randn(2, channels, 5, 6)
    with torch.no_grad():
        torch.testing.assert_close(block(x), seed(x), atol=1e-5, rtol=1e-5)


def test_mismatched_gate_width_in_checkpoint_is_refused():
    sd = randomize(SeedCoordAtt(32, 16), stats_last=True).state_dict()
    with pytest.raises(CheckpointError, match="must match"):
        load_pretrained("coordatt", sd)


@pytest.mark.parametrize("cls", [CoordAttReference, CoordAtt])
@pytest.mark.parametrize(
    "kwargs,match",
    [({"oup": 8}, "oup must equal channels"), ({"reduction": 0}, "reduction must be"),
     ({"reduction": 2.5}, "reduction must be"), ({"channels": 0}, "channels must be")],
    ids=["oup", "reduction0", "reduction-float", "channels"],
)
def test_bad_args_raise(cls, kwargs, match):
    args = {"channels": 16, **kwargs}
    with pytest.raises(BlockConfigError, match=match):
        cls(**args)


def test_oup_equal_to_channels_is_accepted():
    assert CoordAtt(16, oup=16).conv_h.out_channels == 16


def test_h_swish_matches_its_definition():
    x = torch.linspace(-5, 5, 101)
    torch.testing.assert_close(h_swish()(x), x * torch.clamp(x + 3, 0, 6) / 6)


@pytest.mark.parametrize("fill", [0.0, 2.0])
def test_finite_on_zero_and_constant_maps(fill):
    _, dep = _pair(16, 32)
    with torch.no_grad():
        assert torch.isfinite(dep(torch.full((2, 16, 7, 5), fill))).all()


def test_export_with_dynamic_hw_matches_at_other_sizes(tmp_path):
    # H2: the seed's AdaptiveAvgPool2d((None, 1)) bakes the export size into the graph. (The
    # registry matrix in tests/export runs the dynamo exporter and the other opsets.)
    _, dep = _pair(32, 4)
    export_and_compare(dep, tmp_path, (2, 32, 16, 16), [(3, 32, 9, 13), (1, 32, 24, 20)],
                       exporter="torchscript", opset=11, filename="ca.onnx",
                       forbidden=block_info("coordatt").forbidden_ops)
