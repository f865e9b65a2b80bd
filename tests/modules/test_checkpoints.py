"""Checkpoint plumbing: converting files atomically, guessing layouts, the shared converter
helpers (BatchNorm folding, reduction inference) and the error messages."""

import os

import pytest
import torch
from torch import nn

from attn_export.errors import CheckpointError
from attn_export.modules.cbam import CBAMReference
from attn_export.modules.checkpoints import (
    ConvertedCheckpoint,
    convert_checkpoint,
    convert_state_dict,
    fold_batchnorm,
    infer_hyperparams,
    linear_from_conv1x1,
    load_pretrained,
    reduction_for,
    source_names,
)


def _official_cbam_state_dict(c=32, r=16, seed=0):
    """A Jongchan/attention-module CBAM state_dict (Linear MLP + biases, conv + BatchNorm)."""
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape):
        return torch.randn(*shape, generator=gen) * 0.3

    return {
        "ChannelGate.mlp.1.weight": rnd(c // r, c), "ChannelGate.mlp.1.bias": rnd(c // r),
        "ChannelGate.mlp.3.weight": rnd(c, c // r), "ChannelGate.mlp.3.bias": rnd(c),
        "SpatialGate.spatial.conv.weight": rnd(1, 2, 7, 7),
        "SpatialGate.spatial.bn.weight": 1 + rnd(1), "SpatialGate.spatial.bn.bias": rnd(1),
        "SpatialGate.spatial.bn.running_mean": rnd(1),
        "SpatialGate.spatial.bn.running_var": torch.rand(1, generator=gen) + 0.5,
        "SpatialGate.spatial.bn.num_batches_tracked": torch.tensor(100),
    }


def test_convert_checkpoint_writes_a_reference_layout_file(tmp_path):
    src = tmp_path / "official.pth"
    sd = _official_cbam_state_dict()
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in sd.items()}}, src)
    out = tmp_path / "cbam_ref.pth"
    result = convert_checkpoint(src, "cbam", "official", out)
    assert isinstance(result, ConvertedCheckpoint)
    assert result.path == out and result.source == "official" and result.num_tensors == 6
    assert result.kwargs == {"channels": 32, "ratio": 16, "kernel_size": 7, "mlp_bias": True,
                             "spatial_bias": True}
    written = torch.load(out, weights_only=True)
    ref = CBAMReference(32, ratio=16, mlp_bias=True, spatial_bias=True).eval()
    ref.load_state_dict(written, strict=True)
    expected = load_pretrained("cbam", sd, source="official", variant="reference")
    x = torch.randn(2, 32, 9, 7)
    with torch.no_grad():
        torch.testing.assert_close(ref(x), expected(x), atol=0, rtol=0)
    assert sorted(os.listdir(tmp_path)) == ["cbam_ref.pth", "official.pth"]  # no temp left


def test_convert_checkpoint_auto_detects_the_layout(tmp_path):
    torch.save(_official_cbam_state_dict(), tmp_path / "in.pth")
    result = convert_checkpoint(tmp_path / "in.pth", "cbam", "auto", tmp_path / "out.pth")
    assert result.source == "official"


def test_a_failed_conversion_leaves_the_old_output_alone(tmp_path):
    torch.save(_official_cbam_state_dict(), tmp_path / "in.pth")
    out = tmp_path / "out.pth"
    out.write_bytes(b"previous")
    with pytest.raises(CheckpointError, match="does not look like the 'timm' layout"):
        convert_checkpoint(tmp_path / "in.pth", "cbam", "timm", out)
    assert out.read_bytes() == b"previous"
    assert sorted(os.listdir(tmp_path)) == ["in.pth", "out.pth"]


def test_unreadable_and_unwritable_paths_are_explained(tmp_path):
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="cannot read checkpoint.*torch.save"):
        convert_checkpoint(bad, "cbam", "official", tmp_path / "out.pth")
    torch.save(_official_cbam_state_dict(), tmp_path / "in.pth")
    with pytest.raises(CheckpointError, match="folder .* does not exist"):
        convert_checkpoint(tmp_path / "in.pth", "cbam", "official", tmp_path / "no" / "out.pth")
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="holds a list, not a state_dict"):
        convert_checkpoint(tmp_path / "list.pth", "cbam", "official", tmp_path / "out.pth")


def test_unknown_source_lists_the_known_ones():
    assert source_names("cbam") == ["reference", "official", "timm"]
    with pytest.raises(CheckpointError, match="expected one of reference, official, timm"):
        convert_state_dict("cbam", {}, "jongchan")


def test_auto_with_no_fitting_layout():
    with pytest.raises(CheckpointError, match="fits none of the layouts"):
        load_pretrained("cbam", {"foo.weight": torch.zeros(3)}, source="auto")


def test_inference_failure_names_the_keys_found():
    with pytest.raises(CheckpointError, match="cannot infer.*keys found: foo.weight"):
        infer_hyperparams("cbam", {"foo.weight": torch.zeros(3)})


def test_shape_mismatch_is_a_checkpoint_error():
    sd = CBAMReference(32).state_dict()
    with pytest.raises(CheckpointError, match="channelattention"):
        load_pretrained("cbam", sd, ratio=4)  # kwargs win over inferred: widths now disagree


@pytest.mark.parametrize("has_bias", [False, True])
def test_fold_batchnorm_is_exact_in_eval_mode(has_bias):
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, padding=1, bias=has_bias)
    bn = nn.BatchNorm2d(6, eps=1e-3)
    with torch.no_grad():
        bn.running_mean.normal_(), bn.running_var.uniform_(0.5, 2), bn.weight.normal_()
    seq = nn.Sequential(conv, bn).eval()
    w, b = fold_batchnorm(conv.weight, conv.bias, bn.state_dict(), eps=1e-3)
    folded = nn.Conv2d(4, 6, 3, padding=1)
    folded.load_state_dict({"weight": w, "bias": b})
    x = torch.randn(2, 4, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), seq(x), atol=1e-5, rtol=1e-5)


def test_reduction_for_reproduces_every_bottleneck():
    for channels in range(1, 130):
        for hidden in range(1, 2 * channels + 2):
            r = reduction_for(channels, hidden)
            assert int(channels // r) == hidden, (channels, hidden, r)
    assert reduction_for(64, 4) == 16 and isinstance(reduction_for(64, 4), int)
    with pytest.raises(CheckpointError):
        reduction_for(8, 0)


def test_linear_from_conv1x1_refuses_spatial_kernels():
    assert linear_from_conv1x1(torch.zeros(4, 3, 1, 1)).shape == (4, 3)
    with pytest.raises(CheckpointError, match="1x1"):
        linear_from_conv1x1(torch.zeros(4, 3, 3, 3))


@pytest.mark.parametrize("wrap", [
    lambda sd: {f"module.{k}": v for k, v in sd.items()},
    lambda sd: {"epoch": 90, "state_dict_ema": {f"module.{k}": v for k, v in sd.items()}},
    lambda sd: {"model": {"state_dict": sd}},
], ids=["module-prefix", "ema-wrapped", "nested-wrappers"])
def test_convert_reads_what_model_reads(tmp_path, wrap):
    """`attn-export convert` and `attn-export model` share one reader: DataParallel prefixes and
    timm's EMA wrapper are accepted by both."""
    from click.testing import CliRunner

    from attn_export.cli import main
    from attn_export.models.checkpoints import read_state_dict as network_reader

    sd = _official_cbam_state_dict()
    torch.save(wrap(sd), tmp_path / "in.pth")
    assert set(network_reader(tmp_path / "in.pth")) == set(sd)
    result = CliRunner().invoke(main, ["convert", str(tmp_path / "in.pth"), "--block", "cbam",
                                       "--output", str(tmp_path / "out.pth")])
    assert result.exit_code == 0, result.output
    assert "from the 'official' layout" in result.output
    expected = load_pretrained("cbam", sd, source="official", variant="reference")
    ours = load_pretrained("cbam", tmp_path / "in.pth", source="auto", variant="reference")
    x = torch.randn(1, 32, 5, 6)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), expected(x), atol=0, rtol=0)
