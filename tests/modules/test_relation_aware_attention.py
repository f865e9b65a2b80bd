"""RGA: reference == microsoft RGA_Module, deploy == reference (no (N, N) affinity), geometry
declared, narrow widths refused naming the kwarg."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from attn_export.errors import BlockConfigError, ShapeModeError
from attn_export.modules.checkpoints import load_pretrained
from attn_export.modules.registry import block_info
from attn_export.modules.relation_aware_attention import RGA, RGAReference
from tests.conftest import exhaustive
from tests.onnx_checks import export_and_compare
from tests.weights import randomize

TRAINED_BN = {"weight": (0.7, 1.3), "running_mean": 0.2}


def _cbr(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, kernel_size=1, stride=1, padding=0, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU())


class RGAModule(nn.Module):
    """Test-only transcription of microsoft/Relation-Aware-Global-Attention-Networks
    ``reid/models/models_utils/rga_modules.py`` ``RGA_Module`` (its print dropped)."""

    def __init__(self, in_channel, in_spatial, use_spatial=True, use_channel=True,
                 cha_ratio=8, spa_ratio=8, down_ratio=8):
        super().__init__()
        self.in_channel, self.in_spatial = in_channel, in_spatial
        self.use_spatial, self.use_channel = use_spatial, use_channel
        self.inter_channel = in_channel // cha_ratio
        self.inter_spatial = in_spatial // spa_ratio
        if self.use_spatial:
            self.theta_spatial = _cbr(self.in_channel, self.inter_channel)
            self.phi_spatial = _cbr(self.in_channel, self.inter_channel)
        if self.use_channel:
            self.theta_channel = _cbr(self.in_spatial, self.inter_spatial)
            self.phi_channel = _cbr(self.in_spatial, self.inter_spatial)
        if self.use_spatial:
            self.gx_spatial = _cbr(self.in_channel, self.inter_channel)
        if self.use_channel:
            self.gx_channel = _cbr(self.in_spatial, self.inter_spatial)
        if self.use_spatial:
            self.gg_spatial = _cbr(self.in_spatial * 2, self.inter_spatial)
        if self.use_channel:
            self.gg_channel = _cbr(self.in_channel * 2, self.inter_channel)
        for flag, name, n in ((use_spatial, "W_spatial", 1 + self.inter_spatial),
                              (use_channel, "W_channel", 1 + self.inter_channel)):
            if flag:
                setattr(self, name, nn.Sequential(
                    nn.Conv2d(n, n // down_ratio, kernel_size=1, stride=1, padding=0, bias=False),
                    nn.BatchNorm2d(n // down_ratio), nn.ReLU(),
                    nn.Conv2d(n // down_ratio, 1, kernel_size=1, stride=1, padding=0, bias=False),
                    nn.BatchNorm2d(1)))

    def forward(self, x):
        b, c, h, w = x.size()
        if self.use_spatial:
            theta_xs = self.theta_spatial(x)
            phi_xs = self.phi_spatial(x)
            theta_xs = theta_xs.view(b, self.inter_channel, -1)
            theta_xs = theta_xs.permute(0, 2, 1)
            phi_xs = phi_xs.view(b, self.inter_channel, -1)
            Gs = torch.matmul(theta_xs, phi_xs)
            Gs_in = Gs.permute(0, 2, 1).view(b, h * w, h, w)
            Gs_out = Gs.view(b, h * w, h, w)
            Gs_joint = torch.cat((Gs_in, Gs_out), 1)
            Gs_joint = self.gg_spatial(Gs_joint)
            g_xs = self.gx_spatial(x)
            g_xs = torch.mean(g_xs, dim=1, keepdim=True)
            ys = torch.cat((g_xs, Gs_joint), 1)
            W_ys = self.W_spatial(ys)
            if not self.use_channel:
                return F.sigmoid(W_ys.expand_as(x)) * x
            x = F.sigmoid(W_ys.expand_as(x)) * x
        xc = x.view(b, c, -1).permute(0, 2, 1).unsqueeze(-1)
        theta_xc = self.theta_channel(xc).squeeze(-1).permute(0, 2, 1)
        phi_xc = self.phi_channel(xc).squeeze(-1)
        Gc = torch.matmul(theta_xc, phi_xc)
        Gc_in = Gc.permute(0, 2, 1).unsqueeze(-1)
        Gc_out = Gc.unsqueeze(-1)
        Gc_joint = torch.cat((Gc_in, Gc_out), 1)
        Gc_joint = self.gg_channel(Gc_joint)
        g_xc = self.gx_channel(xc)
        g_xc = torch.mean(g_xc, dim=1, keepdim=True)
        yc = torch.cat((g_xc, Gc_joint), 1)
        W_yc = self.W_channel(yc).transpose(1, 2)
        return F.sigmoid(W_yc) * x


BRANCHES = [(True, True), (True, False), (False, True)]
BRANCH_IDS = ["both", "spatial", "channel"]


@pytest.mark.parametrize("use_spatial,use_channel", BRANCHES, ids=BRANCH_IDS)
def test_published_state_dict_loads_strictly_and_matches(use_spatial, use_channel):
    theirs = randomize(RGAModule(64, 9 * 11, use_spatial, use_channel), std=0.2, bn=TRAINED_BN)
    ref = RGAReference(64, in_spatial=99, use_spatial=use_spatial, use_channel=use_channel).eval()
    ref.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 64, 9, 11)
    with torch.no_grad():
        torch.testing.assert_close(ref(x), theirs(x), atol=0, rtol=0)


@pytest.mark.parametrize("batch,hw", exhaustive([(3, (13, 5)), (1, (9, 11)), (3, (8, 8))],
                                               unpack=True), ids=["3x13x5", "1x9x11", "3x8x8"])
@pytest.mark.parametrize("use_spatial,use_channel", BRANCHES, ids=BRANCH_IDS)
def test_deploy_equals_reference(batch, hw, use_spatial, use_channel):
    ref = randomize(RGAReference(64, input_size=hw, use_spatial=use_spatial,
                                 use_channel=use_channel), std=0.2, bn=TRAINED_BN)
    dep = RGA(**ref.init_args).eval()
    dep.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(batch, 64, *hw)
    with torch.no_grad():
        torch.testing.assert_close(dep(x), ref(x), atol=1e-5, rtol=1e-4)


def test_checkpoint_infers_widths_and_loads_for_its_geometry():
    theirs = randomize(RGAModule(64, 10 * 7), std=0.2, bn=TRAINED_BN)
    block = load_pretrained("rga", theirs.state_dict(), input_size=(10, 7))
    assert block.in_spatial == 70 and block.init_args["channels"] == 64
    x = torch.randn(2, 64, 10, 7)
    with torch.no_grad():
        torch.testing.assert_close(block(x), theirs(x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kwargs,match", [
    ({"channels": 32}, "channels >= 56 or a smaller down_ratio"),
    ({"input_size": (6, 6)}, "H\\*W >= 56 or a smaller down_ratio"),
    ({"in_spatial": 90}, "disagrees with input_size"),
    ({"input_size": None, "in_spatial": 99}, "deploy form needs the map geometry"),
    ({"use_spatial": False, "use_channel": False}, "nothing to attend"),
], ids=["channels", "spatial", "disagree", "no-geometry", "no-branch"])
def test_bad_arguments_are_refused_naming_the_constraint(kwargs, match):
    args = {"channels": 64, "input_size": (9, 11), **kwargs}
    with pytest.raises(BlockConfigError, match=match):
        RGA(**args)


def test_reference_without_a_size_says_what_to_pass():
    with pytest.raises(BlockConfigError, match="in_spatial=H\\*W"):
        RGAReference(64)


def test_deploy_refuses_another_size_in_eager_mode():
    dep = RGA(64, input_size=(9, 11)).eval()
    with pytest.raises(ShapeModeError, match=r"built for H, W = \(9, 11\)"):
        dep(torch.randn(1, 64, 11, 9))


def test_export_opset13_dynamic_batch(tmp_path):
    ref = randomize(RGAReference(64, input_size=(9, 11)), std=0.2, bn=TRAINED_BN)
    dep = RGA(**ref.init_args).eval()
    dep.load_state_dict(ref.state_dict())
    export_and_compare(dep, tmp_path, (2, 64, 9, 11), [(1, 64, 9, 11), (3, 64, 9, 11)], opset=13,
                       dynamic="batch", forbidden=block_info("rga").forbidden_ops,
                       atol=1e-5, rtol=1e-4)
