"""DIA: reference == DIANet's shared LSTM cell and Attention stage, deploy == reference, named
multi-input export (map, h, c in; output, h_out, c_out out)."""

import pytest
import torch
from torch import nn

from attn_export.errors import BlockConfigError
from attn_export.modules.checkpoints import load_pretrained
from attn_export.modules.dense_implicit_attention import DIA, DIAReference, DIAStage
from attn_export.modules.registry import block_info
from tests.weights import randomize


class PubSmallCell(nn.Module):
    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.seq = nn.Sequential(nn.Linear(input_size, input_size // 4), nn.ReLU(inplace=True),
                                 nn.Linear(input_size // 4, 4 * hidden_size))

    def forward(self, x):
        return self.seq(x)


class PubLSTMCell(nn.Module):
    """Test-only transcription of ``dia_preresnet.py`` LSTMCell."""

    def __init__(self, input_size, hidden_size, nlayers, dropout=0.1):
        super().__init__()
        self.nlayers = nlayers
        self.dropout = nn.Dropout(p=dropout)
        ih, hh = [], []
        for i in range(nlayers):
            if i == 0:
                ih.append(PubSmallCell(input_size, hidden_size))
                hh.append(PubSmallCell(hidden_size, hidden_size))
            else:
                ih.append(nn.Linear(hidden_size, 4 * hidden_size))
                hh.append(nn.Linear(hidden_size, 4 * hidden_size))
        self.w_ih = nn.ModuleList(ih)
        self.w_hh = nn.ModuleList(hh)

    def forward(self, input, hidden):
        hy, cy = [], []
        for i in range(self.nlayers):
            hx, cx = hidden[0][i], hidden[1][i]
            gates = self.w_ih[i](input) + self.w_hh[i](hx)
            i_gate, f_gate, c_gate, o_gate = gates.chunk(4, 1)
            i_gate = torch.sigmoid(i_gate)
            f_gate = torch.sigmoid(f_gate)
            c_gate = torch.tanh(c_gate)
            o_gate = torch.sigmoid(o_gate)
            ncx = (f_gate * cx) + (i_gate * c_gate)
            nhx = o_gate * torch.sigmoid(ncx)
            cy.append(ncx)
            hy.append(nhx)
            input = self.dropout(nhx)
        hy, cy = torch.stack(hy, 0), torch.stack(cy, 0)
        return hy, cy


class Layer(nn.Module):
    """A residual layer returning ``(out, org)`` as the published Bottleneck does."""

    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return self.conv(x), x


class PublishedAttention(nn.Module):
    """Test-only transcription of ``dia_preresnet.py`` Attention (``.cuda()`` dropped: CPU)."""

    def __init__(self, ModuleList, channels):  # noqa: N803
        super().__init__()
        self.ModuleList = ModuleList
        self.lstm = PubLSTMCell(channels, channels, 1)
        self.GlobalAvg = nn.AdaptiveAvgPool2d((1, 1))

    def forward(self, x):
        for idx, layer in enumerate(self.ModuleList):
            x, org = layer(x)
            seq = self.GlobalAvg(x)
            seq = seq.view(seq.size(0), seq.size(1))
            if idx == 0:
                ht = torch.zeros(1, seq.size(0), seq.size(1))
                ct = torch.zeros(1, seq.size(0), seq.size(1))
            ht, ct = self.lstm(seq, (ht, ct))
            x = x * (ht[-1].view(ht.size(1), ht.size(2), 1, 1))
            x += org
        return x


@pytest.mark.parametrize("block_cls", [DIAReference, DIA])
def test_published_stage_checkpoint_loads_and_both_forms_match(block_cls):
    torch.manual_seed(0)
    layers = nn.ModuleList([Layer(16) for _ in range(3)])
    published = randomize(PublishedAttention(layers, 16))
    block = load_pretrained("dia", published.state_dict(), source="stage",
                            variant="reference" if block_cls is DIAReference else "deploy")
    assert type(block) is block_cls
    ours = DIAStage(published.ModuleList, block).eval()
    x = torch.randn(3, 16, 9, 7)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), published(x), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("hw", [(9, 13), (1, 5), (16, 16)], ids=str)
@pytest.mark.parametrize("batch", [1, 3])
def test_deploy_step_equals_reference(hw, batch):
    ref = randomize(DIAReference(32))
    dep = DIA(32).eval()
    dep.load_state_dict(ref.state_dict(), strict=True)
    args = (torch.randn(batch, 32, *hw), torch.rand(batch, 32), torch.randn(batch, 32))
    with torch.no_grad():
        for got, want in zip(dep(*args), ref(*args)):
            torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


def test_narrow_width_is_refused():
    with pytest.raises(BlockConfigError, match="small_cell bottleneck"):
        DIA(3)


@pytest.mark.parametrize("opset", [13, 17])
def test_named_multi_input_export_matches_torch(tmp_path, opset):
    import onnx

    from attn_export.export.onnx_from_torch import onnx_from_torch
    from attn_export.runtime.onnxruntime_runner import OnnxRuntimeRunner
    from tests.onnx_checks import graph_ops

    dep = randomize(DIA(32))
    path = onnx_from_torch(dep, (1, 32, 12, 10), tmp_path / "dia.onnx", opset, dynamic="all")
    model = onnx.load(str(path))
    assert [i.name for i in model.graph.input] == ["input", "h", "c"]
    assert [o.name for o in model.graph.output] == ["output", "h_out", "c_out"]
    graph_ops(path, block_info("dia").forbidden_ops)
    args = (torch.randn(3, 32, 7, 15), torch.rand(3, 32), torch.randn(3, 32))
    with OnnxRuntimeRunner(path, ["CPUExecutionProvider"]) as runner:
        got = runner.infer(dict(zip(("input", "h", "c"), (a.numpy() for a in args))))
    with torch.no_grad():
        want = dep(*args)
    for name, w in zip(("output", "h_out", "c_out"), want):
        torch.testing.assert_close(torch.from_numpy(got[name]), w, atol=1e-5, rtol=1e-5)


def test_pipeline_golden_and_validate_handle_several_inputs(tmp_path):
    from click.testing import CliRunner

    from attn_export.cli import main
    from attn_export.runtime.golden import load_golden

    out = tmp_path / "dia"
    result = CliRunner().invoke(main, ["dia", "--dynamic", "batch", "--output-dir", str(out)])
    assert result.exit_code == 0, result.output
    golden = load_golden(out / "dia.golden.npz")
    assert set(golden.cases[0].inputs) == {"input", "h", "c"}
    assert set(golden.cases[0].outputs) == {"output", "h_out", "c_out"}
    check = CliRunner().invoke(main, ["validate", str(out / "dia.onnx"), "--golden",
                                      str(out / "dia.golden.npz")])
    assert check.exit_code == 0 and "fail" not in check.output, check.output
