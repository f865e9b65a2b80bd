"""ECA: reference == seed code, deploy == reference, timm's layout loads, k is read from weights."""

import math

import pytest
import torch
from torch import nn

from attn_export.errors import BlockConfigError, CheckpointError
from attn_export.modules.checkpoints import convert_state_dict, load_pretrained
from attn_export.modules.eca import ECA, ECAReference, adaptive_kernel_size
from attn_export.modules.factory import create_block
from attn_export.modules.registry import block_info
from tests.onnx_checks import compare_onnx, export_and_compare
from tests.seed_listings import eca_block as SeedEcaBlock
from tests.seed_listings import eca_layer as SeedEcaLayer
from tests.weights import assert_matches_float64, randomize

SHAPES = [(1, 7, 9), (3, 13, 5), (3, 16, 16), (1, 1, 1)]


class TimmEcaModule(nn.Module):
    """timm ``layers/eca.py`` EcaModule, default path (``use_mlp=False``, sigmoid gate)."""

    def __init__(self, channels=None, kernel_size=3, gamma=2, beta=1):
        super().__init__()
        if channels is not None:
            t = int(abs(math.log(channels, 2) + beta) / gamma)
            kernel_size = max(t if t % 2 else t + 1, 3)
        self.conv = nn.Conv1d(1, 1, kernel_size=kernel_size, padding=(kernel_size - 1) // 2,
                              bias=False)

    def forward(self, x):
        y = x.mean((2, 3)).view(x.shape[0], 1, -1)
        y = torch.sigmoid(self.conv(y)).view(x.shape[0], -1, 1, 1)
        return x * y.expand_as(x)


@pytest.mark.parametrize("channels,k_size", [(16, None), (64, None), (64, 1), (48, 7)])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_deploy_equals_reference(channels, k_size, shape):
    ref = randomize(ECAReference(channels, k_size=k_size), std=1.0)
    dep = ECA(channels, k_size=k_size).eval()
    dep.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(shape[0], channels, *shape[1:])
    with torch.no_grad():
        torch.testing.assert_close(dep(x), ref(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("channels", [3, 16, 64, 128, 256, 512, 1024, 2048])
def test_adaptive_kernel_matches_seed_eca_block(channels):
    assert ECAReference(channels).conv.weight.shape == SeedEcaBlock(channels).conv.weight.shape
    assert adaptive_kernel_size(channels) == SeedEcaBlock(channels).conv.kernel_size[0]


def test_adaptive_kernel_values():
    # psi(C) = |(log2 C + 1) / 2|_odd; ResNet widths give 3 or 5, 2048 gives 7.
    assert [adaptive_kernel_size(c) for c in (16, 64, 128, 256, 512, 2048)] == [3, 3, 5, 5, 5, 7]


@pytest.mark.parametrize("seed_cls,kwargs", [(SeedEcaLayer, {"k_size": 5}), (SeedEcaBlock, {})],
                         ids=["eca_layer", "eca_block"])
def test_seed_state_dict_loads_strictly_and_matches(seed_cls, kwargs):
    seed = randomize(seed_cls(256, **kwargs), std=1.0)
    ref = ECAReference(256, k_size=kwargs.get("k_size")).eval()
    ref.load_state_dict(seed.state_dict(), strict=True)
    x = torch.randn(2, 256, 5, 7)
    with torch.no_grad():
        torch.testing.assert_close(ref(x), seed(x), atol=0, rtol=0)


def test_timm_layout_loads_and_matches():
    timm = randomize(TimmEcaModule(kernel_size=7), std=1.0)  # k differs from the adaptive 3 of C=32
    block = load_pretrained("eca", timm.state_dict(), source="timm", channels=32)
    assert block.init_args == {"channels": 32, "k_size": 7}
    x = torch.randn(3, 32, 6, 9)
    with torch.no_grad():
        torch.testing.assert_close(block(x), timm(x), atol=1e-6, rtol=1e-5)


def test_timm_mlp_variant_is_refused():
    sd = {"conv.weight": torch.randn(8, 1, 1), "conv.bias": torch.randn(8),
          "conv2.weight": torch.randn(1, 8, 3), "conv2.bias": torch.randn(1)}
    with pytest.raises(CheckpointError, match="use_mlp"):
        convert_state_dict("eca", sd, source="timm")


def test_k_size_is_read_from_the_checkpoint():
    # BangguWu/ECANet#46: ECA-ResNet checkpoints use k=3/5/7 per stage, not psi(C).
    seed = randomize(SeedEcaLayer(64, k_size=7), std=1.0)
    block = load_pretrained("eca", seed.state_dict(), channels=64, variant="reference")
    assert block.conv.kernel_size == (7,)
    x = torch.randn(2, 64, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(block(x), seed(x), atol=0, rtol=0)


def test_channels_must_be_given_for_a_checkpoint():
    with pytest.raises(CheckpointError, match="pass channels"):
        load_pretrained("eca", SeedEcaLayer(64).state_dict())


def test_malformed_weight_is_refused():
    with pytest.raises(CheckpointError, match=r"\(1, 1, k\)"):
        load_pretrained("eca", {"conv.weight": torch.randn(1, 3)}, channels=8)


@pytest.mark.parametrize("cls", [ECAReference, ECA])
@pytest.mark.parametrize("k_size", [2, 0, -3, 3.0, True, "3"])
def test_bad_kernel_size_raises(cls, k_size):
    with pytest.raises(BlockConfigError, match="k_size must be None"):
        cls(16, k_size=k_size)


def test_unknown_kwarg_raises():
    with pytest.raises(BlockConfigError, match="kernel_size"):
        create_block("eca", 16, kernel_size=3)


@pytest.mark.parametrize("fill", [0.0, 3.0])
def test_finite_on_zero_and_constant_maps(fill):
    dep = randomize(ECA(16), std=1.0)
    x = torch.full((2, 16, 7, 5), fill)
    assert_matches_float64(dep, x)


ORT_SHAPES = [(3, 32, 9, 13), (1, 32, 24, 20)]  # neither is the export shape


def test_dynamo_export_traced_at_batch_one(tmp_path):
    # A Conv1d traced at batch 1 makes torch.export specialise N, so the seed refuses a dynamic N
    # there; the deploy form's 2-D conv exports from the same trace.
    block = randomize(ECA(32), std=1.0)
    dims = {0: torch.export.Dim("N"), 2: torch.export.Dim("H"), 3: torch.export.Dim("W")}
    program = torch.onnx.export(block, (torch.randn(1, 32, 16, 16),), None, opset_version=18,
                                dynamo=True, dynamic_shapes={"x": dims}, verbose=False)
    program.save(str(tmp_path / "eca.onnx"))
    compare_onnx(block, tmp_path / "eca.onnx", ORT_SHAPES,
                 forbidden=block_info("eca").forbidden_ops)


def test_torchscript_export_with_dynamic_hw(tmp_path):
    block = randomize(ECA(32, k_size=5), std=1.0)
    export_and_compare(block, tmp_path, (2, 32, 16, 16), ORT_SHAPES, exporter="torchscript",
                       opset=11, filename="eca.onnx", forbidden=block_info("eca").forbidden_ops)
