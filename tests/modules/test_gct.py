"""GCT: reference == seed, deploy == reference in every mode, and the deploy form survives FP16 (F1)
where the reference overflows."""

import pytest
import torch
from torch import nn

from attn_export.errors import BlockConfigError
from attn_export.modules.base import pixel_count
from attn_export.modules.checkpoints import load_pretrained
from attn_export.modules.gct import GCT, GCTReference
from attn_export.modules.registry import block_info
from tests.onnx_checks import export_and_compare

MODES = [("l2", False), ("l1", False), ("l1", True)]
MODE_IDS = ["l2", "l1", "l1-after_relu"]
SHAPES = [(1, 7, 9), (3, 13, 5), (3, 16, 16), (1, 1, 1)]


class SeedGCT(nn.Module):
    """The seed ``channel-attention.md`` GCT (= z-x-yang/GCT), as published (less ``sys.exit``)."""

    def __init__(self, num_channels, epsilon=1e-5, mode="l2", after_relu=False):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, num_channels, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, num_channels, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, num_channels, 1, 1))
        self.epsilon = epsilon
        self.mode = mode
        self.after_relu = after_relu

    def forward(self, x):
        if self.mode == "l2":
            embedding = (x.pow(2).sum((2, 3), keepdim=True) + self.epsilon).pow(0.5) * self.alpha
            norm = self.gamma / (embedding.pow(2).mean(dim=1, keepdim=True) + self.epsilon).pow(0.5)
        elif self.mode == "l1":
            if not self.after_relu:
                _x = torch.abs(x)
            else:
                _x = x
            embedding = _x.sum((2, 3), keepdim=True) * self.alpha
            norm = self.gamma / (torch.abs(embedding).mean(dim=1, keepdim=True) + self.epsilon)
        gate = 1.0 + torch.tanh(embedding * norm + self.beta)
        return x * gate


def _randomised(module: nn.Module, seed: int = 0) -> nn.Module:
    """Trained-looking parameters: at init gamma = 0 makes every gate exactly 1."""
    torch.manual_seed(seed)
    with torch.no_grad():
        module.alpha.uniform_(0.5, 1.5)
        module.gamma.uniform_(-2.0, 2.0)
        module.beta.uniform_(-1.0, 1.0)
    return module.eval()


def _input(shape, channels, after_relu, scale=1.0, seed=1):
    torch.manual_seed(seed)
    n, h, w = shape
    x = torch.randn(n, channels, h, w) * scale
    return x.clamp_min(0) if after_relu else x


def _pair(channels, mode, after_relu, seed=0):
    ref = _randomised(GCTReference(channels, mode=mode, after_relu=after_relu), seed)
    dep = GCT(channels, mode=mode, after_relu=after_relu).eval()
    dep.load_state_dict(ref.state_dict(), strict=True)
    return ref, dep


@pytest.mark.parametrize("mode,after_relu", MODES, ids=MODE_IDS)
@pytest.mark.parametrize("channels", [16, 48])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_deploy_equals_reference(mode, after_relu, channels, shape):
    ref, dep = _pair(channels, mode, after_relu)
    x = _input(shape, channels, after_relu)
    with torch.no_grad():
        torch.testing.assert_close(dep(x), ref(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode,after_relu", MODES, ids=MODE_IDS)
def test_seed_state_dict_loads_strictly_and_matches(mode, after_relu):
    seed = _randomised(SeedGCT(24, mode=mode, after_relu=after_relu))
    ref = GCTReference(24, mode=mode, after_relu=after_relu).eval()
    ref.load_state_dict(seed.state_dict(), strict=True)
    x = _input((2, 11, 7), 24, after_relu)
    with torch.no_grad():
        torch.testing.assert_close(ref(x), seed(x), atol=0, rtol=0)


@pytest.mark.parametrize(
    "mode,after_relu,hw",
    [("l2", False, (80, 80)), ("l1", False, (128, 128)), ("l1", True, (128, 128))],
    ids=["l2-80x80", "l1-128x128", "l1-after_relu-128x128"],
)
def test_fp16_reference_overflows_where_deploy_does_not(mode, after_relu, hw):
    # F1: |x| up to 10. l2 sums x^2 (80*80 * E[x^2] = 6400 * 33 ~ 2e5 > 65504); l1 sums |x|, which
    # needs a larger map to leave the range (128*128 * E|x| ~ 8e4 with |x| < 10).
    ref, dep = _pair(8, mode, after_relu)
    torch.manual_seed(2)
    x = torch.rand(1, 8, *hw) * 20 - 10
    x = x.abs() if after_relu else x  # a post-ReLU map: all of it in [0, 10)
    with torch.no_grad():
        expected = ref(x)  # FP32
        ref16 = ref.half()(x.half()).float()
        dep16 = dep.half()(x.half()).float()
    assert not torch.isfinite(ref16).all(), "the FP16 reference was expected to overflow"
    assert torch.isfinite(dep16).all()
    # FP16 keeps ~3 significant digits: outputs up to 20 carry ~1e-2 of rounding.
    torch.testing.assert_close(dep16, expected, atol=5e-2, rtol=1e-2)


@pytest.mark.parametrize("mode,after_relu", MODES, ids=MODE_IDS)
@pytest.mark.parametrize("fill", [0.0, 1e-3, 4.0], ids=["zero", "tiny", "const"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_finite_on_zero_and_constant_maps(mode, after_relu, fill, dtype):
    ref, dep = _pair(16, mode, after_relu)
    x = torch.full((2, 16, 9, 7), fill)
    with torch.no_grad():
        y = dep.to(dtype)(x.to(dtype)).float()
        expected = ref(x)
    assert torch.isfinite(y).all()
    tol = {"atol": 1e-5, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 2e-2, "rtol": 1e-2}
    torch.testing.assert_close(y, expected, **tol)


def test_pixel_count_follows_the_input():
    for h, w in ((1, 1), (7, 9), (80, 81)):
        x = torch.randn(3, 5, h, w)
        assert pixel_count(x).shape == (3, 1, 1, 1)
        assert torch.equal(pixel_count(x), torch.full((3, 1, 1, 1), float(h * w)))


def _ort_matches_torch(block, tmp_path, exporter, opset):
    c = block.init_args["channels"]
    # Inputs are (N, H, W): _input adds the channels; neither is the export shape.
    export_and_compare(block, tmp_path, (2, c, 16, 16), [(3, 9, 13), (1, 24, 20)],
                       make_input=lambda nhw: _input(nhw, c, block.after_relu),
                       exporter=exporter, opset=opset, filename="gct.onnx",
                       forbidden=block_info("gct").forbidden_ops)


@pytest.mark.parametrize(
    "after_relu,exporter,opset",
    [(False, "torchscript", 17), (False, "dynamo", 18), (True, "torchscript", 17)],
    ids=["l1-torchscript", "l1-dynamo", "l1-after_relu-torchscript"],
)
def test_l1_modes_export_with_dynamic_hw(tmp_path, after_relu, exporter, opset):
    # The registry matrix exports the default (l2) mode; the l1 branches are checked here.
    _, dep = _pair(16, "l1", after_relu)
    _ort_matches_torch(dep, tmp_path, exporter, opset)


def test_hyperparams_inferred_from_weights():
    seed = _randomised(SeedGCT(40, mode="l1"))
    block = load_pretrained("gct", seed.state_dict(), mode="l1")
    assert block.init_args == {"channels": 40, "epsilon": 1e-5, "mode": "l1", "after_relu": False}
    x = torch.randn(2, 40, 6, 5)
    with torch.no_grad():
        torch.testing.assert_close(block(x), seed(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cls", [GCTReference, GCT])
@pytest.mark.parametrize(
    "kwargs,match",
    [({"mode": "l3"}, "mode must be one of l2, l1"), ({"epsilon": -1e-5}, "epsilon must be >= 0"),
     ({"channels": 0}, "channels must be >= 1")],
    ids=["mode", "epsilon", "channels"],
)
def test_bad_args_raise(cls, kwargs, match):
    args = {"channels": 8, **kwargs}
    with pytest.raises(BlockConfigError, match=match):
        cls(**args)
