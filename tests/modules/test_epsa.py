"""EPSA (PSA module): parity, the official layout and branch order, kwargs inference, export."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attn_export.errors import BlockConfigError
from attn_export.modules.checkpoints import load_pretrained
from attn_export.modules.epsa import EPSA, EPSAReference
from attn_export.modules.registry import block_info
from tests.conftest import exhaustive
from tests.onnx_checks import export_and_compare

SHAPES = [(1, 7, 9), (3, 13, 5), (3, 8, 8)]


def randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.Conv2d) and m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g))
            if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1):
                m.weight.mul_(4)  # SE logits spread out, so the branch softmax is far from uniform
    return module


# --- murufeng/EPSANet models/epsanet.py PSAModule and models/SE_weight_module.py SEWeightModule,
# written from their published definitions.
class OfficialSEWeightModule(nn.Module):
    def __init__(self, channels, reduction=16):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels // reduction, kernel_size=1, padding=0)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(channels // reduction, channels, kernel_size=1, padding=0)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        return self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))


def _conv(cin, cout, k, groups):
    return nn.Conv2d(cin, cout, kernel_size=k, padding=k // 2, groups=groups, bias=False)


class OfficialPSAModule(nn.Module):
    def __init__(self, inplans, planes, conv_kernels=(3, 5, 7, 9), stride=1,
                 conv_groups=(1, 4, 8, 16)):
        super().__init__()
        self.conv_1 = _conv(inplans, planes // 4, conv_kernels[0], conv_groups[0])
        self.conv_2 = _conv(inplans, planes // 4, conv_kernels[1], conv_groups[1])
        self.conv_3 = _conv(inplans, planes // 4, conv_kernels[2], conv_groups[2])
        self.conv_4 = _conv(inplans, planes // 4, conv_kernels[3], conv_groups[3])
        self.se = OfficialSEWeightModule(planes // 4)
        self.split_channel = planes // 4
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x):
        batch_size = x.shape[0]
        x1, x2, x3, x4 = self.conv_1(x), self.conv_2(x), self.conv_3(x), self.conv_4(x)
        feats = torch.cat((x1, x2, x3, x4), dim=1)
        feats = feats.view(batch_size, 4, self.split_channel, feats.shape[2], feats.shape[3])
        x_se = torch.cat((self.se(x1), self.se(x2), self.se(x3), self.se(x4)), dim=1)
        attention_vectors = self.softmax(x_se.view(batch_size, 4, self.split_channel, 1, 1))
        feats_weight = feats * attention_vectors
        for i in range(4):
            x_se_weight_fp = feats_weight[:, i, :, :]
            if i == 0:
                out = x_se_weight_fp
            else:
                out = torch.cat((x_se_weight_fp, out), 1)
        return out


CONFIGS = {
    "default": {},
    "small_groups": {"conv_kernels": [1, 3, 5, 7], "conv_groups": [1, 2, 2, 4]},
}


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("channels", [64, 128])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_deploy_equals_reference(channels, shape, config):
    ref = randomize(EPSAReference(channels, **CONFIGS[config])).eval()
    dep = EPSA(channels, **CONFIGS[config]).eval()
    dep.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(shape[0], channels, *shape[1:])
    torch.testing.assert_close(dep(x), ref(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shape", [(2, 64, 8, 8), (3, 64, 7, 11)], ids=["8x8", "7x11"])
def test_official_state_dict_loads_strictly_and_matches(shape):
    official = randomize(OfficialPSAModule(64, 64)).eval()
    x = torch.randn(shape)
    expected = official(x)
    for cls in (EPSAReference, EPSA):
        ours = cls(64).eval()
        ours.load_state_dict(official.state_dict(), strict=True)
        torch.testing.assert_close(ours(x), expected, atol=1e-5, rtol=1e-5)


def test_branch_order_is_reversed_as_published():
    block = randomize(EPSA(64)).eval()
    x = torch.randn(2, 64, 9, 9)
    y = block(x)
    # First quarter of the output is the 9x9 branch (conv_4), last is the 3x3 branch (conv_1).
    logits = torch.stack([block.se(conv(x)) for conv in
                          (block.conv_1, block.conv_2, block.conv_3, block.conv_4)], 1)
    weights = torch.softmax(logits, dim=1)
    torch.testing.assert_close(y[:, :16], block.conv_4(x) * weights[:, 3], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(y[:, 48:], block.conv_1(x) * weights[:, 0], atol=1e-5, rtol=1e-5)


def test_init_args_keep_lists_as_given():
    block = EPSAReference(64, conv_kernels=[3, 5, 7, 9], conv_groups=(1, 4, 8, 16))
    assert block.init_args == {"channels": 64, "conv_kernels": [3, 5, 7, 9],
                               "conv_groups": (1, 4, 8, 16)}


def test_hyperparams_inferred_from_checkpoint():
    ref = randomize(EPSAReference(128, conv_kernels=[1, 3, 5, 7], conv_groups=[1, 2, 2, 4]))
    block = load_pretrained("epsa", ref.eval().state_dict())
    assert block.init_args == {"channels": 128, "conv_kernels": (1, 3, 5, 7),
                               "conv_groups": (1, 2, 2, 4)}
    x = torch.randn(2, 128, 6, 9)
    torch.testing.assert_close(block(x), ref(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kwargs", [
    {"channels": 30},  # not a multiple of 4
    {"channels": 96},  # 96 / 4 = 24 is not divisible by 16 groups
    {"channels": 32, "conv_groups": [1, 1, 1, 1]},  # SE bottleneck 8 // 16 == 0
    {"channels": 64, "conv_kernels": [3, 5, 7]},
    {"channels": 64, "conv_kernels": [3, 5, 7, 8]},
    {"channels": 64, "conv_groups": [1, 4, 8, 0]},
], ids=["not_mult4", "groups", "se_bottleneck", "three_kernels", "even_kernel", "groups0"])
@pytest.mark.parametrize("cls", [EPSAReference, EPSA], ids=["reference", "deploy"])
def test_bad_args_raise(cls, kwargs):
    with pytest.raises(BlockConfigError):
        cls(**kwargs)


@pytest.mark.parametrize("fill", [0.0, 3.0, -2.0], ids=["zero", "const3", "const-2"])
def test_nan_free_on_flat_maps(fill):
    block = randomize(EPSA(64)).eval()
    assert torch.isfinite(block(torch.full((2, 64, 7, 9), fill))).all()


@pytest.mark.parametrize("exporter,opset",
                         exhaustive([("torchscript", 17), ("dynamo", 18)], unpack=True))
def test_onnx_dynamic_hw_matches_torch_at_other_sizes(tmp_path, exporter, opset):
    block = randomize(EPSA(64)).eval()
    export_and_compare(block, tmp_path, (2, 64, 16, 16), [(3, 64, 9, 13), (1, 64, 24, 20)],
                       exporter=exporter, opset=opset, filename="epsa.onnx",
                       forbidden=block_info("epsa").forbidden_ops)
