"""SCA-CNN attention: the reference computes the paper's equations, deploy == reference, named
two-input export."""

import pytest
import torch

from attn_export.errors import BlockConfigError
from attn_export.modules.registry import block_info
from attn_export.modules.sca_cnn import SCA, SCAReference
from tests.weights import randomize


def paper_equations(block, V, h):
    """Test-only transcription of eqs. 4-5 and 7-8 with explicit per-sample loops."""
    outs = []
    for n in range(V.shape[0]):
        Vn, hn = V[n], h[n]  # (C, H, W), (d,)  # noqa: N806
        C, H, W = Vn.shape  # noqa: N806
        v = Vn.reshape(C, -1).mean(1)
        b = torch.tanh(torch.outer(block.channel_w, v) + block.channel_b[:, None]
                       + (block.channel_state.weight @ hn)[:, None])  # (k, C)
        beta = torch.softmax(block.channel_score.weight[0] @ b + block.channel_score.bias, 0)
        Vc = Vn * beta[:, None, None]  # noqa: N806
        Ws = block.spatial_map.weight[:, :, 0, 0]  # noqa: N806
        a = torch.tanh(Ws @ Vc.reshape(C, -1) + block.spatial_map.bias[:, None]
                       + (block.spatial_state.weight @ hn)[:, None])  # (k, m)
        alpha = torch.softmax(block.spatial_score.weight[0, :, 0, 0] @ a
                              + block.spatial_score.bias, 0)
        outs.append(Vc * alpha.reshape(1, H, W))
    return torch.stack(outs)


def _pair(channels=16, state_dim=24, att_dim=20):
    ref = randomize(SCAReference(channels, state_dim, att_dim))
    dep = SCA(channels, state_dim, att_dim).eval()
    dep.load_state_dict(ref.state_dict(), strict=True)
    return ref, dep


def test_reference_is_the_paper_equations():
    ref, _ = _pair()
    x, h = torch.randn(2, 16, 5, 7), torch.randn(2, 24)
    with torch.no_grad():
        torch.testing.assert_close(ref(x, h), paper_equations(ref, x, h), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("hw", [(9, 13), (1, 5), (16, 16)], ids=str)
@pytest.mark.parametrize("batch", [1, 3])
def test_deploy_equals_reference(hw, batch):
    ref, dep = _pair()
    x, h = torch.randn(batch, 16, *hw) * 3, torch.randn(batch, 24)
    with torch.no_grad():
        torch.testing.assert_close(dep(x, h), ref(x, h), atol=1e-6, rtol=1e-4)


def test_bad_state_dim():
    with pytest.raises(BlockConfigError, match="state_dim must be a positive integer"):
        SCA(16, state_dim=0)


@pytest.mark.parametrize("opset", [13, 17])
def test_named_two_input_export_matches_torch(tmp_path, opset):
    import onnx

    from attn_export.export.onnx_from_torch import onnx_from_torch
    from attn_export.runtime.onnxruntime_runner import OnnxRuntimeRunner
    from tests.onnx_checks import graph_ops

    _, dep = _pair()
    path = onnx_from_torch(dep, (1, 16, 12, 10), tmp_path / "sca.onnx", opset, dynamic="all")
    model = onnx.load(str(path))
    assert [i.name for i in model.graph.input] == ["input", "state"]
    graph_ops(path, block_info("sca").forbidden_ops)
    x, h = torch.randn(3, 16, 7, 15), torch.randn(3, 24)
    with OnnxRuntimeRunner(path, ["CPUExecutionProvider"]) as runner:
        got = runner.infer({"input": x.numpy(), "state": h.numpy()})["output"]
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(got), dep(x, h), atol=1e-6, rtol=1e-4)
