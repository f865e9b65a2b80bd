"""Pasted seed listings recognised by layout and proven; a look-alike reported, not swapped."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from attn_export.cli import main
from attn_export.modules.recognise.scan import decide, scan_network
from attn_export.modules.swap import to_deploy
from tests.recognise import nets
from tests.seed_listings import SEEDS

NETS = Path(nets.__file__)


def _perturbed(module: torch.nn.Module) -> torch.nn.Module:
    """Weights moved off their init (GCT's zero gamma makes a flat gate: nothing to prove)."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return module.eval()


@pytest.mark.parametrize("seed", list(SEEDS))
def test_each_pasted_seed_listing_is_recognised_and_proven(seed):
    build, block = SEEDS[seed]
    module = _perturbed(build(32))
    decision = decide(module, seed, width=32)
    assert decision is not None, f"{seed}: no block layout matched"
    assert decision.row.recogniser == "structural"
    assert decision.row.block == block
    assert decision.row.swapped and decision.row.max_abs_diff < 1e-4, decision.row.reason
    x = torch.randn(2, 32, 11, 7)
    with torch.no_grad():
        torch.testing.assert_close(decision.new(x), module(x), atol=1e-5, rtol=1e-4)


def test_a_network_of_pasted_seeds_is_swapped_whole():
    model = _perturbed(nets.pasted_net())
    x = torch.randn(1, 3, 16, 20)
    with torch.no_grad():
        before = model(x)
    report: list = []
    deployed = to_deploy(model, example_input=x, report=report)
    assert [r.block for r in report] == [block for _b, block in SEEDS.values()]
    assert all(r.swapped for r in report)
    with torch.no_grad():
        torch.testing.assert_close(deployed(x), before, atol=1e-5, rtol=1e-4)


def test_a_lookalike_with_a_changed_forward_is_reported_not_swapped():
    model = _perturbed(nets.lookalike_net())
    rows = scan_network(model, example=torch.randn(1, 3, 16, 16))
    assert len(rows) == 1 and not rows[0].swapped
    assert rows[0].reason.startswith("looks like cbam, outputs differ by ")
    assert rows[0].reason.endswith(": not swapped")
    report: list = []
    deployed = to_deploy(model, example_input=torch.randn(1, 3, 16, 16), report=report)
    assert isinstance(deployed.stages[0][3], nets.LookalikeCBAM)
    assert [r.swapped for r in report] == [False]


def test_scan_command_prints_the_table(tmp_path):
    result = CliRunner().invoke(main, ["scan", f"{NETS}:lookalike_net", "--input-shape",
                                       "1x3x16x16"])
    assert result.exit_code == 0, result.output
    assert "LookalikeCBAM  structural  cbam" in result.output
    assert "kept: looks like cbam, outputs differ by" in result.output
    assert "1 attention-like modules: 0 would be swapped, 1 kept" in result.output


def test_a_silu_activation_module_is_not_listed():
    class Swish(torch.nn.Module):
        def forward(self, x):
            return x * torch.sigmoid(x)

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), Swish(), torch.nn.Conv2d(8, 8, 1))
    assert scan_network(model, example=torch.randn(1, 3, 8, 8)) == []


def test_an_unknown_gate_is_listed_with_what_to_do():
    class MyGate(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Conv2d(8, 8, 3, padding=1)

        def forward(self, x):
            return x * torch.sigmoid(self.proj(x.amax((2, 3), keepdim=True)))

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), MyGate())
    rows = scan_network(model, example=torch.randn(1, 3, 8, 8))
    assert [r.path for r in rows] == ["1"] and not rows[0].swapped
    assert "1 attention gate(s), no recogniser or block layout matches" in rows[0].reason
    assert "--map CLASS=BLOCK" in rows[0].reason
