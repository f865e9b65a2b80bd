"""to_deploy: our reference blocks and a user's own attention classes swapped for deploy forms,
their weights converted, and the swap is proven not to change the outputs before it is kept."""

import pytest
import torch
from torch import nn

from attn_export.errors import BlockConfigError, CheckpointError, UnknownBlockError
from attn_export.modules.cbam import CBAM, CBAMReference
from attn_export.modules.factory import create_block
from attn_export.modules.self_attention import MHSA
from attn_export.modules.swap import to_deploy


class BlogChannelAttention(nn.Module):
    """The CBAM every YOLO blog copies (the seed's cbam_block), under the blog's own names."""

    def __init__(self, in_planes, ratio=8):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.max_pool = nn.AdaptiveMaxPool2d(1)
        self.fc1 = nn.Conv2d(in_planes, in_planes // ratio, 1, bias=False)
        self.relu1 = nn.ReLU()
        self.fc2 = nn.Conv2d(in_planes // ratio, in_planes, 1, bias=False)

    def forward(self, x):
        avg_out = self.fc2(self.relu1(self.fc1(self.avg_pool(x))))
        max_out = self.fc2(self.relu1(self.fc1(self.max_pool(x))))
        return torch.sigmoid(avg_out + max_out)


class BlogSpatialAttention(nn.Module):
    def __init__(self, kernel_size=7):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x):
        pooled = torch.cat([x.mean(1, keepdim=True), torch.max(x, 1, keepdim=True)[0]], 1)
        return torch.sigmoid(self.conv1(pooled))


class BlogCBAM(nn.Module):
    def __init__(self, c1, ratio=8, kernel_size=7):
        super().__init__()
        self.channelattention = BlogChannelAttention(c1, ratio)
        self.spatialattention = BlogSpatialAttention(kernel_size)

    def forward(self, x):
        x = x * self.channelattention(x)
        return x * self.spatialattention(x)


class RenamedCBAM(BlogCBAM):
    """The same maths under other attribute names (``ca``/``sa``): needs a key map."""

    def __init__(self, c1):
        super().__init__(c1)
        self.ca, self.sa = self.channelattention, self.spatialattention
        del self.channelattention, self.spatialattention

    def forward(self, x):
        x = x * self.ca(x)
        return x * self.sa(x)


class OfficialStyleCBAM(nn.Module):
    """Jongchan/attention-module layout: Linear MLP with biases, conv + BN, [max, mean]."""

    def __init__(self, c, r=16):
        super().__init__()
        self.ChannelGate = nn.Module()
        self.ChannelGate.mlp = nn.Sequential(nn.Flatten(), nn.Linear(c, c // r), nn.ReLU(),
                                             nn.Linear(c // r, c))
        self.SpatialGate = nn.Module()
        self.SpatialGate.spatial = nn.Module()
        self.SpatialGate.spatial.conv = nn.Conv2d(2, 1, 7, padding=3, bias=False)
        self.SpatialGate.spatial.bn = nn.BatchNorm2d(1, momentum=0.01)

    def forward(self, x):
        mlp = self.ChannelGate.mlp
        x = x * torch.sigmoid(mlp(x.mean((2, 3))) + mlp(x.amax((2, 3))))[..., None, None]
        pooled = torch.cat([x.amax(1, keepdim=True), x.mean(1, keepdim=True)], 1)
        spatial = self.SpatialGate.spatial
        return x * torch.sigmoid(spatial.bn(spatial.conv(pooled)))


class MapMHA(nn.MultiheadAttention):
    """A user's self-attention over a map: nn.MultiheadAttention on the flattened positions."""

    def __init__(self, c, heads):
        super().__init__(c, heads, batch_first=True)

    def forward(self, x):
        B, C, H, W = x.shape
        t = x.flatten(2).transpose(1, 2)
        out = super().forward(t, t, t, need_weights=False)[0]
        return out.transpose(1, 2).reshape(B, C, H, W)


class Neck(nn.Module):
    """A small detector neck with an attention slot per level, returning both levels."""

    def __init__(self, attn3, attn4, c=32):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, c, 3, padding=1), nn.BatchNorm2d(c), nn.SiLU())
        self.attn3 = attn3
        self.down = nn.Conv2d(c, c, 3, stride=2, padding=1)
        self.attn4 = attn4

    def forward(self, x):
        p3 = self.attn3(self.stem(x))
        return p3, {"p4": self.attn4(self.down(p3))}


def _randomize(module, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if "running_var" in name:
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
            elif t.is_floating_point():
                t.copy_(torch.randn(t.shape, generator=gen) * 0.3)
    return module


def _outputs(net, x):
    with torch.no_grad():
        p3, rest = net.eval()(x)
    return p3, rest["p4"]


def test_blog_cbam_in_a_neck_is_swapped_and_verified():
    net = _randomize(Neck(BlogCBAM(32), BlogCBAM(32)))
    x = torch.randn(2, 3, 20, 24)
    expected = _outputs(net, x)
    net.train()
    out = to_deploy(net, {BlogCBAM: "cbam"}, example_input=x)
    assert out is net and isinstance(net.attn3, CBAM) and isinstance(net.attn4, CBAM)
    assert net.training and net.attn3.training and net.stem[1].training  # modes restored
    torch.testing.assert_close(_outputs(net, x), expected, atol=1e-5, rtol=1e-4)


def test_official_layout_with_batchnorm_in_a_training_network():
    net = _randomize(Neck(OfficialStyleCBAM(32), OfficialStyleCBAM(32)), seed=1).train()
    x = torch.randn(2, 3, 16, 12)
    to_deploy(net, {OfficialStyleCBAM: ("cbam", "official")}, example_input=x)
    assert isinstance(net.attn4, CBAM) and net.attn4.init_args["spatial_bias"]
    # The check ran in eval mode (BN running statistics), so eval outputs are unchanged:
    reference = _randomize(Neck(OfficialStyleCBAM(32), OfficialStyleCBAM(32)), seed=1)
    torch.testing.assert_close(_outputs(net, x), _outputs(reference, x), atol=1e-5, rtol=1e-4)


def test_plain_names_take_the_source_argument():
    net = _randomize(Neck(OfficialStyleCBAM(32), nn.Identity()))
    to_deploy(net, {OfficialStyleCBAM: "cbam"}, source="official")
    assert isinstance(net.attn3, CBAM)


def test_a_function_maps_your_own_key_names():
    def rename(sd):
        return {k.replace("ca.", "channelattention.").replace("sa.", "spatialattention."): v
                for k, v in sd.items()}

    net = _randomize(Neck(RenamedCBAM(32), nn.Identity()))
    x = torch.randn(1, 3, 10, 14)
    expected = _outputs(net, x)
    to_deploy(net, {RenamedCBAM: ("cbam", rename)}, example_input=x)
    assert isinstance(net.attn3, CBAM)
    torch.testing.assert_close(_outputs(net, x), expected, atol=1e-5, rtol=1e-4)


def test_key_mismatch_names_the_module_and_the_likely_layout():
    net = Neck(OfficialStyleCBAM(32), nn.Identity())
    with pytest.raises(CheckpointError, match=r"attn3 \(OfficialStyleCBAM -> 'cbam'\).*"
                                              r"looks like the 'official' layout"):
        to_deploy(net, {OfficialStyleCBAM: "cbam"})
    assert isinstance(net.attn3, OfficialStyleCBAM)


def test_torch_attention_swaps_with_the_right_head_count():
    torch.manual_seed(2)
    net = Neck(nn.Identity(), MapMHA(32, 4)).eval()
    x = torch.randn(2, 3, 12, 10)
    expected = _outputs(net, x)
    to_deploy(net, {MapMHA: ("mhsa", "torch", {"num_heads": 4})}, example_input=x)
    assert isinstance(net.attn4, MHSA)
    torch.testing.assert_close(_outputs(net, x), expected, atol=1e-5, rtol=1e-4)


def test_a_wrong_head_count_is_caught_and_nothing_is_swapped():
    net = _randomize(Neck(nn.Identity(), MapMHA(32, 4))).eval()
    with pytest.raises(CheckpointError, match=r"attn4 \(MapMHA -> 'mhsa'\): outputs differ.*"
                                              r"max abs error \d"):
        to_deploy(net, {MapMHA: ("mhsa", "torch", {"num_heads": 2})})
    assert isinstance(net.attn4, MapMHA)
    # check=False trusts the mapping: the swap happens and the outputs silently change.
    x = torch.randn(1, 3, 8, 8)
    expected = _outputs(net, x)
    to_deploy(net, {MapMHA: ("mhsa", "torch", {"num_heads": 2})}, check=False)
    assert isinstance(net.attn4, MHSA)
    assert (_outputs(net, x)[1] - expected[1]).abs().max() > 1e-2


class CalledTwice(nn.Module):
    """A network that runs the same (stateful) attention module twice."""

    def __init__(self, attn):
        super().__init__()
        self.conv = nn.Conv2d(3, 32, 1)
        self.attn = attn

    def forward(self, x):
        y = self.attn(self.conv(x))
        return self.attn(y)


class CountingCBAM(BlogCBAM):
    """Scales its output by the number of calls: the first call matches, later ones do not."""

    def __init__(self, c1):
        super().__init__(c1)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return super().forward(x) * self.calls


def test_network_check_puts_the_old_modules_back():
    net = _randomize(CalledTwice(CountingCBAM(32))).eval()
    x = torch.randn(1, 3, 9, 9)
    with pytest.raises(CheckpointError, match="network's output changed.*put back"):
        to_deploy(net, {CountingCBAM: "cbam"}, example_input=x)
    assert isinstance(net.attn, CountingCBAM)


def test_a_shared_instance_becomes_one_shared_block():
    attn = _randomize(BlogCBAM(32))
    net = nn.Sequential(nn.Conv2d(3, 32, 1), attn, nn.ReLU(), attn)
    x = torch.randn(2, 3, 7, 9)
    with torch.no_grad():
        expected = net.eval()(x)
    to_deploy(net, {BlogCBAM: "cbam"}, example_input=x)
    assert isinstance(net[1], CBAM) and net[1] is net[3]
    with torch.no_grad():
        torch.testing.assert_close(net(x), expected, atol=1e-5, rtol=1e-4)


def test_the_model_itself_can_be_mapped_and_keeps_its_dtype():
    blog = _randomize(BlogCBAM(16, ratio=4)).double()
    x = torch.randn(2, 16, 5, 7, dtype=torch.float64)
    block = to_deploy(blog, {BlogCBAM: "cbam"}, example_input=x)
    assert isinstance(block, CBAM) and block.init_args["ratio"] == 4
    assert block.channelattention.fc1.weight.dtype == torch.float64
    with torch.no_grad():
        torch.testing.assert_close(block(x), blog(x), atol=1e-10, rtol=1e-10)


def test_our_reference_blocks_are_checked_too_with_an_example_input():
    net = Neck(_randomize(create_block("gc", 32, "reference", ratio=0.25)),
               _randomize(CBAMReference(32)))
    x = torch.randn(2, 3, 11, 13)
    expected = _outputs(net, x)
    to_deploy(net, example_input=x)
    assert isinstance(net.attn4, CBAM)
    torch.testing.assert_close(_outputs(net, x), expected, atol=1e-5, rtol=1e-4)


class SquareOnlyCBAM(BlogCBAM):
    def forward(self, x):
        if x.shape[2] != x.shape[3]:
            raise ValueError("this module only takes square maps")
        return super().forward(x)


def test_a_picky_module_asks_for_a_real_input():
    net = _randomize(Neck(SquareOnlyCBAM(32), nn.Identity()))
    with pytest.raises(CheckpointError, match="pass example_input"):
        to_deploy(net, {SquareOnlyCBAM: "cbam"})
    to_deploy(net, {SquareOnlyCBAM: "cbam"}, example_input=torch.randn(1, 3, 12, 12))
    assert isinstance(net.attn3, CBAM)


@pytest.mark.parametrize("mapping,error,match", [
    ({"BlogCBAM": "cbam"}, BlockConfigError, "nn.Module classes"),
    ({BlogCBAM: "cbma"}, UnknownBlockError, "unknown block 'cbma'"),
    ({BlogCBAM: ("cbam", "reference", {}, "extra")}, BlockConfigError, "block name"),
    ({BlogCBAM: ("cbam", "tim")}, CheckpointError, "unknown checkpoint source 'tim'"),
    ({BlogCBAM: "cbam", RenamedCBAM: "cbam"}, BlockConfigError, "RenamedCBAM but the model"),
])
def test_bad_mappings_are_explained(mapping, error, match):
    net = Neck(BlogCBAM(32), nn.Identity())
    with pytest.raises(error, match=match):
        to_deploy(net, mapping)
