"""Official network checkpoints: every recorded layout loads strictly after conversion and computes
what the official definition computes (a test-only transcription, tests/models/official_nets.py).
"""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch

from attn_export.errors import CheckpointError
from attn_export.models import create_model
from attn_export.models.checkpoints import load_network_checkpoint, recorded_layouts
from attn_export.models.swap_report import deploy_with_report
from tests.models.fake_checkpoints import fake_state_dict, saved_like_release
from tests.models.official_nets import OFFICIAL, official_resnet
from tools.record_layouts import rendered

LAYOUTS = recorded_layouts()


SLOW = {"torchvision_resnet34", "torchvision_resnet50", "zjjconan_simam_resnet50",
        "bangguwu_eca_resnet50"}
"""Layouts whose conversion the default suite covers otherwise (the same host keys; ECA's by
test_eca_kernels_are_read_from_the_tensors)."""


def _official(name: str, sd: dict):
    with torch.device("meta"):  # skip the initialisation: the fake release overwrites it
        model = OFFICIAL[name][0]()
    model.load_state_dict(sd, strict=True, assign=True)
    return model.eval()


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    scale = float(b.abs().max())
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * max(1.0, scale))


def test_recorded_layouts_are_the_official_definitions():
    from tools.record_layouts import OUT

    for filename, text in rendered().items():
        assert (OUT / filename).read_text() == text, f"{filename} is stale: run tools/record_layouts.py"
    assert sorted(LAYOUTS) == sorted(OFFICIAL)


@pytest.mark.parametrize("layout", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n
                                    for n in sorted(LAYOUTS)])
def test_fake_release_loads_strictly_and_matches_the_official_forward(layout, tmp_path):
    info = LAYOUTS[layout]
    sd = fake_state_dict(info, seed=len(layout))
    official = _official(layout, sd)
    path = tmp_path / "release.pth"
    torch.save(saved_like_release(sd, info), path)
    ours = create_model(info["network"])
    loaded = load_network_checkpoint(ours, path, info["source"], info["network"])
    assert loaded.source == info["source"] and loaded.tensors > 0
    ours.eval()
    x = torch.randn(2, 3, 51, 45, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = official(x)
        _close(ours(x), want)
        deployed, swaps, _ = deploy_with_report(ours, x)
        _close(deployed(x), want)
    assert len(swaps) == {"jongchan_cbam_resnet50": 16, "bangguwu_eca_resnet50": 16,
                          "timm_seresnet50": 16, "zjjconan_simam_resnet50": 16,
                          "houqb_mbv2_ca": 16}.get(layout, 0)


@pytest.mark.parametrize("layout", ["jongchan_cbam_resnet50", "houqb_mbv2_ca"])
def test_auto_source_finds_the_layout(layout, tmp_path):
    info = LAYOUTS[layout]
    path = tmp_path / "release.pth"
    torch.save(saved_like_release(fake_state_dict(info), info), path)
    loaded = load_network_checkpoint(create_model(info["network"]), path, "auto", info["network"])
    assert loaded.source == info["source"]


def test_eca_kernels_are_read_from_the_tensors():
    official = official_resnet(50, "eca", k_size=(5, 3, 7, 3))
    sd = {k: v for k, v in official.state_dict().items()}
    ours = create_model("eca_resnet50")
    loaded = load_network_checkpoint(ours, sd, "official", "eca_resnet50")
    assert any("layer1.0.eca (k_size=5)" == r for r in loaded.rebuilt_blocks)
    assert ours.layer3[0].eca.conv.kernel_size == (7,)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        _close(ours.eval()(x), official.eval()(x))


def test_a_mismatch_names_the_keys_and_the_layout_it_resembles(tmp_path):
    info = LAYOUTS["jongchan_cbam_resnet50"]
    path = tmp_path / "cbam.pth"
    torch.save(saved_like_release(fake_state_dict(info), info), path)
    with pytest.raises(CheckpointError) as err:
        load_network_checkpoint(create_model("se_resnet50"), path, "timm", "se_resnet50")
    text = str(err.value)
    assert "missing keys layer1.0.se.fc.0.bias" in text
    assert "unexpected keys layer1.0.cbam.ChannelGate.mlp.1.bias" in text
    assert "most resembles the recorded layout jongchan_cbam_resnet50" in text
    assert "--source official" in text


def test_an_unknown_source_is_refused():
    with pytest.raises(CheckpointError, match="unknown checkpoint source 'caffe'"):
        load_network_checkpoint(create_model("resnet18"), {}, "caffe", "resnet18")


def test_a_pickled_ultralytics_model_is_refused_with_how_to_save_a_state_dict(tmp_path, monkeypatch):
    pkg = tmp_path / "ultralytics" / "nn"
    pkg.mkdir(parents=True)
    (tmp_path / "ultralytics" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "tasks.py").write_text(textwrap.dedent("""
        import torch
        class DetectionModel(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = torch.nn.Conv2d(3, 8, 3)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m.startswith("ultralytics")]:
        monkeypatch.delitem(sys.modules, name)  # a real Ultralytics comes back after the test
    from ultralytics.nn.tasks import DetectionModel

    path = tmp_path / "yolo11n.pt"
    torch.save({"model": DetectionModel(), "epoch": 3}, path)
    for name in [m for m in sys.modules if m.startswith("ultralytics")]:
        del sys.modules[name]  # the stand-in goes for good: later tests import the real package
    with pytest.raises(CheckpointError) as err:
        load_network_checkpoint(create_model("tiny_detector"), path, "auto", "tiny_detector")
    text = str(err.value)
    assert "pickles a whole Ultralytics model (ultralytics.nn.tasks.DetectionModel)" in text
    assert "weights_only=True" in text and ".model.state_dict()" in text
