"""The network registry: exact parameter counts, slots where the official codes put them."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from attn_export.errors import BlockConfigError
from attn_export.models import MODELS, count_parameters, create_model, list_models, model_card
from attn_export.models.registry import UnknownModelError
from tests.models.official_nets import OFFICIAL

PUBLISHED = {
    # torchvision's weights tables (meta["num_params"]), pytorch.org/vision/stable/models/generated/
    "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
    "mobilenetv2": 3_504_872,
}


@pytest.mark.parametrize("layout", sorted(OFFICIAL))
def test_official_layout_counts_equal_the_official_definition(layout):
    build, network, *_ = OFFICIAL[layout]
    with torch.device("meta"):
        official = sum(p.numel() for p in build().parameters())
    card = model_card(network)
    assert (card.official_params or card.params) == official
    with torch.device("meta"):
        ours = count_parameters(create_model(network))
    assert ours == card.params
    if network == "cbam_resnet50":  # 16 spatial-gate BatchNorm(1) gamma/beta folded into a bias
        assert official - ours == 16
    else:
        assert ours == official


@pytest.mark.parametrize("network", sorted(PUBLISHED))
def test_plain_hosts_match_torchvisions_published_counts(network):
    with torch.device("meta"):
        assert count_parameters(create_model(network)) == PUBLISHED[network]


@pytest.mark.parametrize("network", list_models())
def test_every_card_builds_with_its_parameter_count(network):
    with torch.device("meta"):
        assert count_parameters(create_model(network)) == MODELS[network].params


# The ResNet-50 cards run in test_network_checkpoints (against the official forward).
@pytest.mark.parametrize("network", [n for n in list_models() if MODELS[n].kwargs.get("depth") != 50])
def test_every_card_runs_at_its_test_size(network):
    card = MODELS[network]
    model = create_model(network, num_classes=2 if card.task == "segment" else 7).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, *card.test_size))
    assert out.shape[1] in (7, 4 + 7, 2)


def test_slots_sit_where_the_official_codes_put_them():
    keys = create_model("resnet18", attn="eca").state_dict()
    assert "layer1.0.attn.conv.weight" in keys
    keys = create_model("resnet18", attn="simam", position="conv2").state_dict()
    assert "layer2.0.conv2.0.weight" in keys and "layer2.0.conv2.weight" not in keys
    keys = create_model("resnet18", attn="cbam", position="stage",
                        stages=(False, True, True, False)).state_dict()
    assert {k.split(".")[1] for k in keys if k.startswith("stage_attn.")} == {"layer2", "layer3"}
    keys = create_model("mobilenetv2_ca").state_dict()
    assert "features.2.conv.6.conv_h.weight" in keys and "features.1.conv.6.conv1.weight" not in keys
    keys = create_model("unet_scse").state_dict()
    assert "decoder.blocks.0.attention1.attention.cSE.1.weight" in keys
    assert "decoder.blocks.3.attention2.attention.sSE.0.bias" in keys
    keys = create_model("tiny_detector", attn="se").state_dict()
    assert {"neck.attn3.fc.0.weight", "neck.attn5.fc.2.weight"} <= set(keys)


def test_eca_resnet50_has_the_released_kernels():
    model = create_model("eca_resnet50")
    assert [model.get_submodule(f"layer{i}.0.eca").conv.kernel_size[0] for i in range(1, 5)] == \
        [3, 5, 5, 7]


def test_bad_requests_are_refused_in_one_line():
    with pytest.raises(UnknownModelError, match="unknown network 'resnet101'; expected one of"):
        model_card("resnet101")
    with pytest.raises(BlockConfigError, match="cbam_resnet50 is the published layout with cbam"):
        create_model("cbam_resnet50", attn="se")
    with pytest.raises(BlockConfigError, match="unknown argument"):
        create_model("resnet18", widht=3)
    with pytest.raises(BlockConfigError, match="position 'neck' is not a slot"):
        create_model("resnet18", attn="se", position="neck")
    with pytest.raises(BlockConfigError, match="stages must have 4 entries"):
        create_model("resnet18", attn="se", stages=(True,))
    with pytest.raises(BlockConfigError, match="strip_pooling needs the export H, W"):
        create_model("resnet18", attn="strip_pooling")


def test_the_registry_imports_without_torch():
    code = ("import sys; import attn_export.models.registry as r; r.list_models(); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
