"""Global context block: reference == official GCNet ContextBlock, deploy == reference, the
deploy LayerNorm survives FP16 magnitudes that overflow the usual decomposition, no reshapes."""

import onnx
import pytest
import torch
from torch import nn

from attn_export.errors import BlockConfigError
from attn_export.modules.checkpoints import infer_hyperparams, load_pretrained
from attn_export.modules.factory import create_block
from attn_export.modules.global_context import (
    ContextBlock,
    ContextBlockReference,
    _ScaledLayerNorm,
)
from attn_export.modules.registry import BLOCKS
from attn_export.modules.swap import to_deploy
from tests.conftest import exhaustive
from tests.onnx_checks import export_and_compare
from tests.weights import randomize

SHAPES = [(1, 7, 9), (3, 13, 5), (3, 16, 16), (1, 1, 1)]
CONFIGS = [
    (32, 0.25, "att", ("channel_add",)),
    (32, 0.25, "att", ("channel_mul",)),
    (32, 0.25, "att", ("channel_add", "channel_mul")),
    (32, 0.25, "avg", ("channel_add",)),
    (64, 1 / 16, "att", ("channel_add",)),
]


class OfficialContextBlock(nn.Module):
    """xvjiarui/GCNet ``mmdet/ops/gcb/context_block.py`` ContextBlock as published (mmcv's
    kaiming/zero inits left out: the tests load random weights)."""

    def __init__(self, inplanes, ratio, pooling_type="att", fusion_types=("channel_add",)):
        super().__init__()
        assert pooling_type in ["avg", "att"]
        self.inplanes = inplanes
        self.ratio = ratio
        self.planes = int(inplanes * ratio)
        self.pooling_type = pooling_type
        self.fusion_types = fusion_types
        if pooling_type == "att":
            self.conv_mask = nn.Conv2d(inplanes, 1, kernel_size=1)
            self.softmax = nn.Softmax(dim=2)
        else:
            self.avg_pool = nn.AdaptiveAvgPool2d(1)
        if "channel_add" in fusion_types:
            self.channel_add_conv = nn.Sequential(
                nn.Conv2d(self.inplanes, self.planes, kernel_size=1),
                nn.LayerNorm([self.planes, 1, 1]),
                nn.ReLU(inplace=True),
                nn.Conv2d(self.planes, self.inplanes, kernel_size=1))
        else:
            self.channel_add_conv = None
        if "channel_mul" in fusion_types:
            self.channel_mul_conv = nn.Sequential(
                nn.Conv2d(self.inplanes, self.planes, kernel_size=1),
                nn.LayerNorm([self.planes, 1, 1]),
                nn.ReLU(inplace=True),
                nn.Conv2d(self.planes, self.inplanes, kernel_size=1))
        else:
            self.channel_mul_conv = None

    def spatial_pool(self, x):
        batch, channel, height, width = x.size()
        if self.pooling_type == "att":
            input_x = x
            input_x = input_x.view(batch, channel, height * width)
            input_x = input_x.unsqueeze(1)
            context_mask = self.conv_mask(x)
            context_mask = context_mask.view(batch, 1, height * width)
            context_mask = self.softmax(context_mask)
            context_mask = context_mask.unsqueeze(-1)
            context = torch.matmul(input_x, context_mask)
            context = context.view(batch, channel, 1, 1)
        else:
            context = self.avg_pool(x)
        return context

    def forward(self, x):
        context = self.spatial_pool(x)
        out = x
        if self.channel_mul_conv is not None:
            channel_mul_term = torch.sigmoid(self.channel_mul_conv(context))
            out = out * channel_mul_term
        if self.channel_add_conv is not None:
            channel_add_term = self.channel_add_conv(context)
            out = out + channel_add_term
        return out


def _pair(channels, ratio, pooling, fusion):
    ref = ContextBlockReference(channels, ratio=ratio, pooling=pooling, fusion=fusion)
    ref = randomize(ref, seed=7, std=0.3)
    return ref, to_deploy(ref).eval()


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c[0]}-{c[2]}-{'+'.join(c[3])}")
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_deploy_equals_reference(config, shape):
    ref, dep = _pair(*config)
    assert isinstance(dep, ContextBlock)
    x = torch.randn(shape[0], config[0], *shape[1:])
    with torch.no_grad():
        torch.testing.assert_close(dep(x), ref(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("config", CONFIGS[1:4], ids=["mul", "add+mul", "avg"])
def test_official_state_dict_loads_strictly_and_matches(config):
    channels, ratio, pooling, fusion = config
    official = randomize(OfficialContextBlock(channels, ratio, pooling, fusion), seed=7, std=0.3)
    ref = ContextBlockReference(channels, ratio=ratio, pooling=pooling, fusion=fusion).eval()
    ref.load_state_dict(official.state_dict(), strict=True)
    x = torch.randn(2, channels, 9, 7)
    with torch.no_grad():
        torch.testing.assert_close(ref(x), official(x), atol=0, rtol=0)
        block = load_pretrained("gc", official.state_dict())
        torch.testing.assert_close(block(x), official(x), atol=1e-5, rtol=1e-5)
    assert block.init_args == {"channels": channels, "ratio": ratio, "pooling": pooling,
                               "fusion": fusion}


@pytest.mark.parametrize("channels,planes", [(64, 4), (40, 3), (48, 7), (7, 1), (256, 16)])
def test_ratio_inferred_reproduces_the_bottleneck(channels, planes):
    sd = ContextBlockReference(channels, ratio=planes / channels).state_dict()
    sd["channel_add_conv.0.weight"] = torch.zeros(planes, channels, 1, 1)
    args = infer_hyperparams("gc", sd)
    assert int(channels * args["ratio"]) == planes
    assert args["pooling"] == "att" and args["fusion"] == ("channel_add",)
    if (channels, planes) == (64, 4):
        assert args["ratio"] == 1 / 16


def _naive_layer_norm(y, ln):
    """The decomposition a pre-17 opset export (and TensorRT's fallback) computes, op by op."""
    mean = y.mean(1, keepdim=True)
    d = y - mean
    var = (d * d).mean(1, keepdim=True)
    return d / torch.sqrt(var + ln.eps) * ln.weight + ln.bias


def test_scaled_layer_norm_survives_fp16_where_the_decomposition_overflows():
    torch.manual_seed(0)
    ln = nn.LayerNorm([16, 1, 1])
    with torch.no_grad():
        ln.weight.normal_(1, 0.2)
        ln.bias.normal_(0, 0.2)
    ours = _ScaledLayerNorm([16, 1, 1])
    ours.load_state_dict(ln.state_dict())
    y = torch.randn(4, 16, 1, 1) * 2000  # deviations >> 256: their squares exceed 65504
    with torch.no_grad():
        expected = ln(y)
        naive = _naive_layer_norm(y.half(), ln.half()).float()
        got = ours.half()(y.half()).float()
    # var = inf in FP16, so every normalised value collapses to 0: the output is just the bias.
    torch.testing.assert_close(naive, ln.bias.detach().half().float().expand_as(naive))
    assert (expected - naive).abs().max() > 0.5
    torch.testing.assert_close(got, expected, atol=5e-3, rtol=5e-3)


@pytest.mark.parametrize("scale", [1e-3, 1.0, 300.0])
def test_scaled_layer_norm_equals_layer_norm_in_fp32(scale):
    torch.manual_seed(1)
    ln = nn.LayerNorm([8, 1, 1])
    ours = _ScaledLayerNorm([8, 1, 1])
    y = torch.randn(5, 8, 1, 1) * scale
    torch.testing.assert_close(ours(y), ln(y), atol=1e-5, rtol=1e-5)
    constant = torch.full((2, 8, 1, 1), 7.0)
    torch.testing.assert_close(ours(constant), ln(constant), atol=1e-6, rtol=0)


def test_fp16_block_at_large_magnitudes():
    ref, dep = _pair(32, 0.25, "att", ("channel_add", "channel_mul"))
    x = torch.randn(2, 32, 9, 11) * 500
    with torch.no_grad():
        expected = ref(x)
        got = dep.half()(x.half()).float()
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, expected, atol=1.0, rtol=5e-3)


@pytest.mark.parametrize("kwargs,match", [
    ({"pooling": "max"}, "pooling"),
    ({"fusion": ()}, "fusion"),
    ({"fusion": 3}, "tuple"),
    ({"fusion": ("channel_sum",)}, "fusion"),
    ({"fusion": ("channel_add", "channel_add")}, "fusion"),
    ({"ratio": 1 / 64}, "bottleneck"),
])
def test_bad_args_raise(kwargs, match):
    with pytest.raises(BlockConfigError, match=match):
        create_block("gc", 32, **kwargs)


def test_fusion_from_the_command_line_is_split():
    block = create_block("gc", 32, fusion="channel_add, channel_mul")
    assert block.init_args["fusion"] == ("channel_add", "channel_mul")
    assert create_block("gc", 32, fusion=["channel_mul"]).init_args["fusion"] == ("channel_mul",)


@pytest.mark.parametrize("fill", [0.0, 3.0])
def test_finite_on_zero_and_constant_maps(fill):
    ref, dep = _pair(32, 0.25, "att", ("channel_add", "channel_mul"))
    x = torch.full((2, 32, 7, 9), fill)
    with torch.no_grad():
        assert torch.isfinite(dep(x)).all()
        torch.testing.assert_close(dep(x), ref(x), atol=1e-5, rtol=1e-5)


SIZE_ARITHMETIC = {"Mul", "Div", "Add", "Sub", "Floor", "Ceil", "Cast"}


def _size_arithmetic(path) -> set[str]:
    """Arithmetic ops computing on sizes read from the input (the H11 hazard): a value is a size
    if a Shape node made it, or a node made it from sizes and constants only."""
    graph = onnx.load(str(path)).graph
    const = {i.name for i in graph.initializer}
    sizes, found = set(), set()
    for node in graph.node:
        if node.op_type == "Constant":
            const.update(node.output)
            continue
        inputs = [i for i in node.input if i]
        if node.op_type == "Shape" or (
                any(i in sizes for i in inputs) and all(i in sizes or i in const for i in inputs)):
            sizes.update(node.output)
            if node.op_type in SIZE_ARITHMETIC:
                found.add(node.op_type)
    return found


@pytest.mark.parametrize("exporter,opset",
                         exhaustive([("torchscript", 17), ("dynamo", 18)], unpack=True))
def test_exports_plain_ops_and_runs_at_other_sizes(tmp_path, exporter, opset):
    ref, dep = _pair(32, 0.25, "att", ("channel_add", "channel_mul"))
    ops = export_and_compare(dep, tmp_path, (2, 32, 16, 16), [(3, 32, 9, 13), (1, 32, 24, 20)],
                             exporter=exporter, opset=opset, filename="gc.onnx", atol=1e-5,
                             rtol=1e-4, forbidden=set(BLOCKS["gc"].forbidden_ops))
    assert "MatMul" in ops  # the tuned form: both passes over x are MatMuls on one view
    assert not _size_arithmetic(tmp_path / "gc.onnx")
    ref_ops = export_and_compare(ref, tmp_path, (2, 32, 16, 16), [], exporter=exporter,
                                 opset=opset, filename="ref.onnx")
    assert "LayerNormalization" in ref_ops
    assert _size_arithmetic(tmp_path / "ref.onnx")  # the published view multiplies H by W
