"""Dense-and-Implicit Attention (Huang et al., "DIANet: Dense-and-Implicit Attention Network",
AAAI 2020, arXiv:1905.10671).

Reference follows the seed ``channel-attention.md`` DIA_Attention and gbup-group/DIANet
``models/cifar/dia_preresnet.py``: one modified LSTM cell (``LSTMCell(C, C, 1)``, whose input and
hidden transforms are ``small_cell`` bottleneck MLPs and whose hidden state is
``o * sigmoid(c)``) is shared by every residual block of a stage; after each block the global mean
of the map goes through the cell and the new hidden state gates the map channel by channel.

As a block, one step of that stage: ``(x, h, c) -> (x * h', h', c')`` with ``h``, ``c`` of shape
``(N, C)`` (the published ``(1, N, C)`` with its layer axis dropped: the published cell always has
one layer). Named ONNX inputs ``input``, ``h``, ``c`` and outputs ``output``, ``h_out``,
``c_out``; a network feeds ``h_out``/``c_out`` of one block into the next. ``DIAStage`` wraps
residual layers around one shared block as the published ``Attention`` does (the residual add
``x += org`` stays there); the stage's zero initial state is made on ``x.device`` (H12: the
published ``torch.zeros(...).cuda()``). Keys as published: ``lstm.w_ih.0.seq.*``,
``lstm.w_hh.0.seq.*``.

Deploy form, the same ``state_dict``: H4 ``AdaptiveAvgPool2d((1, 1))`` is a mean; H11 the views
read from ``seq.size()`` are reshapes with the module's channel count and -1; the gate chunks are
four constant-index slices of the gate vector (no dynamic split). Dropout is the identity in eval.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from attn_export.errors import BlockConfigError
from attn_export.modules.base import AttentionBlock


class SmallCell(nn.Module):
    """The published ``small_cell``: Linear(n, n/4), ReLU, Linear(n/4, 4 * hidden)."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.seq = nn.Sequential(nn.Linear(input_size, input_size // 4), nn.ReLU(inplace=True),
                                 nn.Linear(input_size // 4, 4 * hidden_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class LSTMCell(nn.Module):
    """The published one-layer modified LSTM cell (``w_ih``/``w_hh`` ModuleLists, dropout)."""

    def __init__(self, input_size: int, hidden_size: int, nlayers: int = 1,
                 dropout: float = 0.1) -> None:
        super().__init__()
        if nlayers != 1:
            raise BlockConfigError("dia: the published DIANet cell has one layer (nlayers=1)")
        self.nlayers = nlayers
        self.dropout = nn.Dropout(p=dropout)
        self.w_ih = nn.ModuleList([SmallCell(input_size, hidden_size)])
        self.w_hh = nn.ModuleList([SmallCell(hidden_size, hidden_size)])

    def forward(self, input: torch.Tensor, hidden: tuple) -> tuple[torch.Tensor, torch.Tensor]:
        hy, cy = [], []
        for i in range(self.nlayers):
            hx, cx = hidden[0][i], hidden[1][i]
            gates = self.w_ih[i](input) + self.w_hh[i](hx)
            i_gate, f_gate, c_gate, o_gate = gates.chunk(4, 1)
            ncx = torch.sigmoid(f_gate) * cx + torch.sigmoid(i_gate) * torch.tanh(c_gate)
            nhx = torch.sigmoid(o_gate) * torch.sigmoid(ncx)
            cy.append(ncx)
            hy.append(nhx)
            input = self.dropout(nhx)
        return torch.stack(hy, 0), torch.stack(cy, 0)


class _DIALayers(AttentionBlock):
    output_names = ("output", "h_out", "c_out")

    def __init__(self, channels: int, dropout: float) -> None:
        super().__init__(channels=channels, dropout=dropout)
        if channels < 4:
            raise BlockConfigError(f"dia: channels={channels} leaves the small_cell bottleneck "
                                   "(channels // 4) empty; use >= 4 channels")
        self.channels = channels
        self.lstm = LSTMCell(channels, channels, 1, dropout=dropout)

    def extra_input_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shapes of the inputs after the map, batch dim excluded (the pipeline reads this)."""
        return {"h": (self.channels,), "c": (self.channels,)}


class DIAReference(_DIALayers):
    """One published DIA step: GAP, the shared cell, ``x * h``."""

    def __init__(self, channels: int, dropout: float = 0.1) -> None:
        super().__init__(channels, dropout)
        self.GlobalAvg = nn.AdaptiveAvgPool2d((1, 1))

    def forward(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
        seq = self.GlobalAvg(x)
        seq = seq.view(seq.size(0), seq.size(1))
        ht, ct = self.lstm(seq, (h.unsqueeze(0), c.unsqueeze(0)))
        x = x * (ht[-1].view(ht.size(1), ht.size(2), 1, 1))
        return x, ht[-1], ct[-1]


class DIA(_DIALayers):
    """Export-safe DIA step (see the module doc)."""

    def __init__(self, channels: int, dropout: float = 0.1) -> None:
        super().__init__(channels, dropout)

    def forward(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
        seq = x.mean((2, 3)).reshape(-1, self.channels)  # H4, H11
        gates = self.lstm.w_ih[0](seq) + self.lstm.w_hh[0](h)
        n = self.channels
        i_gate, f_gate = gates[:, :n], gates[:, n:2 * n]
        c_gate, o_gate = gates[:, 2 * n:3 * n], gates[:, 3 * n:]
        c_new = torch.sigmoid(f_gate) * c + torch.sigmoid(i_gate) * torch.tanh(c_gate)
        h_new = torch.sigmoid(o_gate) * torch.sigmoid(c_new)
        return x * h_new.reshape(-1, n, 1, 1), h_new, c_new


class DIAStage(nn.Module):
    """The published ``Attention`` stage: residual layers returning ``(out, org)``, one shared
    DIA block, zero initial state on ``x.device`` (H12)."""

    def __init__(self, layers: nn.Module, block: _DIALayers) -> None:
        super().__init__()
        self.ModuleList = layers
        self.attention = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.attention.channels
        h = c = None
        for layer in self.ModuleList:
            x, org = layer(x)
            if h is None:
                h = c = torch.zeros(x.shape[0], n, device=x.device, dtype=x.dtype)
            x, h, c = self.attention(x, h, c)
            x = x + org
        return x


def _dia_hyperparams(sd: Mapping[str, Any]) -> dict[str, Any]:
    return {"channels": int(sd["lstm.w_ih.0.seq.0.weight"].shape[1])}


def _from_stage(sd: Mapping[str, Any]) -> dict[str, Any]:
    """A published stage's keys (``layer1.lstm.*`` or ``lstm.*`` among the residual blocks'):
    keep the shared cell."""
    out = {}
    for key, value in sd.items():
        tail = key[key.index("lstm."):] if "lstm." in key else None
        if tail is not None:
            out[tail] = value
    if not out:
        raise KeyError("lstm.w_ih.0.seq.0.weight")
    return out


HYPERPARAMS = {"dia": _dia_hyperparams}
SOURCES = {"dia": {"stage": _from_stage}}
