"""A gate is a sigmoid from a different branch multiplied into the map; SiLU is an activation.

The same rule on the torch side (``recognise.gates``) and on the ONNX graph (``onnx_gates``, used
by the INT8 plan, the gate error and the lint): a SiLU network has no gate, a SiLU network with
CBAM has exactly CBAM's two gates.
"""

from __future__ import annotations

import onnx
import pytest
import torch
from torch import nn

from attn_export.export.int8_from_onnx import gate_nodes
from attn_export.export.lint import lint_onnx
from attn_export.export.onnx_gates import attention_gates
from attn_export.modules.cbam import CBAMReference
from attn_export.modules.recognise.gates import gate_count


class SiLU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(x)


class HardSwish(nn.Module):
    def forward(self, x):
        return x * (torch.clamp(x + 3, 0, 6) / 6)


class HardSwishSigmoid(nn.Module):
    def forward(self, x):
        return x * nn.functional.hardsigmoid(x)


class GLU(nn.Module):
    def forward(self, x):
        a, b = x.chunk(2, dim=1)
        return a * torch.sigmoid(b)


class SE(nn.Module):
    def __init__(self, c=8):
        super().__init__()
        self.fc = nn.Conv2d(c, c, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc(x.mean((2, 3), keepdim=True)))


class SpatialGate(nn.Module):
    def __init__(self, c=8):
        super().__init__()
        self.proj = nn.Conv2d(c, 1, 1)

    def forward(self, x):
        return x * self.proj(x).sigmoid()


@pytest.mark.parametrize("module, gates", [
    (SiLU(), 0), (HardSwishSigmoid(), 0), (GLU(), 0), (nn.SiLU(), 0), (nn.Hardswish(), 0),
    (SE(), 1), (SpatialGate(), 1), (CBAMReference(8, ratio=2), 2),
], ids=["silu", "hardswish", "glu", "nn.SiLU", "nn.Hardswish", "se", "spatial", "cbam"])
def test_torch_side_gate_count(module, gates):
    assert gate_count(module) == gates


def _conv_silu(c: int) -> list[nn.Module]:
    return [nn.Conv2d(c, c, 3, padding=1), SiLU()]


def _export(model: nn.Module, path) -> onnx.ModelProto:
    torch.onnx.export(model.eval(), (torch.randn(1, 8, 12, 12),), str(path), opset_version=17,
                      dynamo=False)
    return onnx.load(str(path))


@pytest.mark.parametrize("activation", [SiLU, HardSwish, HardSwishSigmoid, GLU])
def test_an_activation_network_has_no_gate_in_its_graph(activation, tmp_path):
    width = 16 if activation is GLU else 8
    layers = [nn.Conv2d(8, width, 3, padding=1), activation()]
    layers += [nn.Conv2d(width // 2 if activation is GLU else width, 8, 1), activation(),
               nn.Conv2d(4 if activation is GLU else 8, 8, 1)]
    graph = _export(nn.Sequential(*layers), tmp_path / "act.onnx")
    assert attention_gates(graph) == []
    assert gate_nodes(graph) == []


def test_a_silu_network_with_cbam_has_exactly_cbams_gates(tmp_path):
    model = nn.Sequential(*_conv_silu(8), CBAMReference(8, ratio=2), *_conv_silu(8))
    graph = _export(model, tmp_path / "cbam.onnx")
    sigmoids = [n for n in graph.graph.node if n.op_type == "Sigmoid"]
    gates = attention_gates(graph)
    assert len(sigmoids) == 4 and len(gates) == 2
    assert all("/2/" in n.name for n in gates)  # both inside the CBAM (module index 2)
    kept = gate_nodes(graph)
    assert {n.name for n in gates} <= set(kept)
    assert not any(n.name in kept for n in sigmoids if n not in gates)


@pytest.mark.parametrize("with_cbam, f2", [(False, 0), (True, 2)], ids=["silu", "silu+cbam"])
def test_lint_f2_speaks_of_attention_gates_only(with_cbam, f2, tmp_path):
    """A Q/DQ pair on a SiLU's sigmoid is ordinary INT8; on CBAM's two gates it is F2."""
    from attn_export.export.int8_from_onnx import int8_from_onnx, seeded_calibration_feeds
    from attn_export.export.profiles import onnx_input_specs

    path = tmp_path / "net.onnx"
    middle = [CBAMReference(8, ratio=2)] if with_cbam else []
    _export(nn.Sequential(*_conv_silu(8), *middle, *_conv_silu(8)), path)
    specs = onnx_input_specs(onnx.load(str(path)))
    with pytest.warns(UserWarning):
        feeds = seeded_calibration_feeds(specs, {specs[0].name: (1, 8, 12, 12)}, count=2)
    int8_from_onnx(path, tmp_path / "net.int8.onnx", feeds, quantize_gates=True)
    report = lint_onnx(tmp_path / "net.int8.onnx")
    assert len([f for f in report.findings if f.rule == "f2_gate"]) == f2
