"""Every registry entry can be built, run and swapped (STYLE 7: timm once shipped one that
could not be constructed)."""

import pytest
import torch

from attn_export.errors import BlockConfigError, UnknownBlockError
from attn_export.export.onnx_from_torch import io_names
from attn_export.modules.factory import create_block
from attn_export.modules.registry import BLOCKS, SHAPE_MODES, block_class, block_info, list_blocks
from attn_export.modules.swap import to_deploy
from tests.conftest import channels_for

HAZARDS = {f"H{i}" for i in range(1, 13)} | {"F1", "F2"}


def _kwargs(name):
    return {"input_size": (9, 11)} if BLOCKS[name].needs_geometry else {}


def _reference_kwargs(name, input_size):
    """Constructor sizes a reference form fixes: rga's published in_spatial (its input_size), or
    residual_attention's upsampling sizes (a hook in its module computes them)."""
    hook = BLOCKS[name].reference_geometry
    return hook(input_size) if hook is not None else {}


@pytest.mark.parametrize("name", list_blocks())
def test_entry_metadata_is_consistent(name):
    info = BLOCKS[name]
    assert info.tier in (1, 2, 3) and info.paper
    assert set(info.shape_modes) <= set(SHAPE_MODES) and info.shape_modes[0] == "none"
    assert set(info.hazards) <= HAZARDS
    if info.shape_modes != SHAPE_MODES:
        assert info.refusal, f"{name} refuses a shape mode without saying why"


def _inputs(block, x):
    """The map, then seeded states for blocks with more inputs (dia: h, c; sca: the state)."""
    return (x, *(torch.randn(x.shape[0], *s) for s in io_names(block)[2].values()))


@pytest.mark.parametrize("name", list_blocks())
def test_both_forms_build_run_and_swap(name):
    c = channels_for(name)
    torch.manual_seed(0)
    ref = create_block(name, c, "reference", **_reference_kwargs(name, (9, 11))).eval()
    args = _inputs(ref, torch.randn(2, c, 9, 11))
    with torch.no_grad():
        expected = ref(*args)
        deployed = to_deploy(ref, **_kwargs(name)).eval()
        assert type(deployed) is block_class(name, "deploy")
        assert set(deployed.state_dict()) == set(ref.state_dict())
        torch.testing.assert_close(deployed(*args), expected, atol=1e-5, rtol=1e-4)
    first = expected[0] if isinstance(expected, tuple) else expected
    assert first.shape == args[0].shape
    inputs, outputs, _ = io_names(deployed)  # the registry names what the export will name
    assert (tuple(inputs), tuple(outputs)) == (BLOCKS[name].inputs, BLOCKS[name].outputs)


SINGLE_INPUT = [n for n in list_blocks() if len(BLOCKS[n].inputs) == 1]


@pytest.mark.parametrize("name", SINGLE_INPUT)  # multi-input blocks: their own stage tests
def test_to_deploy_swaps_inside_a_network(name):
    c = channels_for(name)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, c, 3, padding=1),
                              create_block(name, c, "reference", **_reference_kwargs(name, (9, 11))),
                              torch.nn.ReLU()).eval()
    x = torch.randn(1, 3, 9, 11)
    with torch.no_grad():
        expected = net(x)
        to_deploy(net, **_kwargs(name))
        assert isinstance(net[1], block_class(name, "deploy"))
        torch.testing.assert_close(net(x), expected, atol=1e-5, rtol=1e-4)


def test_unknown_block_lists_valid_names():
    with pytest.raises(UnknownBlockError, match="expected one of: .*cbam"):
        block_info("cbma")


def test_unknown_kwarg_names_the_accepted_ones():
    with pytest.raises(BlockConfigError, match="unknown argument.*reductoin.*takes: .*reduction"):
        create_block("se", 64, reductoin=8)


@pytest.mark.parametrize("channels", [0, -3, 2.5, True])
def test_bad_channels(channels):
    with pytest.raises(BlockConfigError, match="channels"):
        create_block("se", channels)


@pytest.mark.parametrize("reduction", [0, -2, "4"])
def test_bad_reduction(reduction):
    with pytest.raises(BlockConfigError, match="reduction must be a positive number"):
        create_block("se", 64, reduction=reduction)


def test_bottleneck_too_narrow_is_explained():
    with pytest.raises(BlockConfigError, match="bottleneck of 0 channels"):
        create_block("se", 8, reduction=16)


def test_unknown_variant():
    with pytest.raises(BlockConfigError, match="deploy' or 'reference"):
        create_block("se", 64, "fast")
