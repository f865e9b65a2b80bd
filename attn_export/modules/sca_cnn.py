"""SCA-CNN channel-then-spatial attention (Chen et al., "SCA-CNN: Spatial and Channel-wise
Attention in Convolutional Networks for Image Captioning", CVPR 2017, arXiv:1611.05594).

There is no PyTorch original: the official code (zjuchenlong/sca-cnn.cvpr17) is Theano, and the
seed ``sca-se-bam-cbam-digest.md`` only describes the idea. Both forms follow the paper's
equations in its C-S order (channel attention first, spatial attention on the channel-weighted
map), conditioned on the decoder's previous hidden state ``h`` of size ``state_dim``:

- channel (eqs. 7-8): ``v = mean_HW(V)``; ``b = tanh((W_c (x) v + b_c) (+) W_hc h)`` with
  ``W_c, b_c`` in R^k (``(x)`` the outer product, so ``b`` is k x C); ``beta = softmax_C(W_i' b +
  b_i')``; ``V' = V * beta``.
- spatial (eqs. 4-5): ``a = tanh((W_s V' + b_s) (+) W_hs h)`` (``W_s`` a 1x1 conv to k channels);
  ``alpha = softmax_HW(W_i a + b_i)``; the block returns ``V' * alpha`` with the input's shape (the
  caption decoder's attended vector is that map summed over H, W).

``k = att_dim``. Parameter names are ours (``channel_w``, ``channel_b``, ``channel_state``,
``channel_score``, ``spatial_map``, ``spatial_state``, ``spatial_score``); the defaults
``state_dim = att_dim = 512`` are the paper's LSTM and attention widths as we read them.

Two inputs, exported by name: ``input`` (N, C, H, W) and ``state`` (N, state_dim); one output.
Deploy form, the same ``state_dict``: the reference's transposes and the ``view(N, -1)`` of the
spatial softmax (H11) become reductions over k and an explicit softmax over H, W as
``exp(t - max) / mean / (H*W)`` (no sum of H*W terms: F1; the count is made in the graph).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attn_export.errors import BlockConfigError
from attn_export.modules.base import AttentionBlock, pixel_count


class _SCALayers(AttentionBlock):
    output_names = ("output",)

    def __init__(self, channels: int, state_dim: int, att_dim: int) -> None:
        super().__init__(channels=channels, state_dim=state_dim, att_dim=att_dim)
        for name, value in (("state_dim", state_dim), ("att_dim", att_dim)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise BlockConfigError(f"sca: {name} must be a positive integer, got {value!r}")
        self.state_dim = state_dim
        self.channel_w = nn.Parameter(torch.randn(att_dim) * 0.1)
        self.channel_b = nn.Parameter(torch.zeros(att_dim))
        self.channel_state = nn.Linear(state_dim, att_dim, bias=False)
        self.channel_score = nn.Linear(att_dim, 1)
        self.spatial_map = nn.Conv2d(channels, att_dim, 1)
        self.spatial_state = nn.Linear(state_dim, att_dim, bias=False)
        self.spatial_score = nn.Conv2d(att_dim, 1, 1)

    def extra_input_shapes(self) -> dict[str, tuple[int, ...]]:
        """The decoder state after the map, batch dim excluded (read by the export pipeline)."""
        return {"state": (self.state_dim,)}

    def _channel_hidden(self, x: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        v = x.mean((2, 3))  # (N, C)
        outer = self.channel_w[None, :, None] * v[:, None, :] + self.channel_b[None, :, None]
        return torch.tanh(outer + self.channel_state(state)[:, :, None])  # (N, k, C)

    def _spatial_logits(self, x: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        a = torch.tanh(self.spatial_map(x) + self.spatial_state(state)[:, :, None, None])
        return self.spatial_score(a)  # (N, 1, H, W)


class SCAReference(_SCALayers):
    """The paper's equations written directly (transposes, flattened softmax)."""

    def __init__(self, channels: int, state_dim: int = 512, att_dim: int = 512) -> None:
        super().__init__(channels, state_dim, att_dim)

    def forward(self, x: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        b = self._channel_hidden(x, state)
        beta = F.softmax(self.channel_score(b.transpose(1, 2)).view(n, c), dim=1)
        x = x * beta.view(n, c, 1, 1)
        logits = self._spatial_logits(x, state).view(n, h * w)
        alpha = F.softmax(logits, dim=1).view(n, 1, h, w)
        return x * alpha


class SCA(_SCALayers):
    """Export-safe SCA-CNN attention (see the module doc)."""

    def __init__(self, channels: int, state_dim: int = 512, att_dim: int = 512) -> None:
        super().__init__(channels, state_dim, att_dim)
        self.channels = channels

    def forward(self, x: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        b = self._channel_hidden(x, state)
        weight = self.channel_score.weight.reshape(1, -1, 1)
        scores = (b * weight).sum(1) + self.channel_score.bias  # (N, C): a reduction over k
        x = x * F.softmax(scores, dim=1).reshape(-1, self.channels, 1, 1)
        logits = self._spatial_logits(x, state)
        e = torch.exp(logits - logits.amax((2, 3), keepdim=True))
        alpha = e / e.mean((2, 3), keepdim=True) / pixel_count(x)
        return x * alpha
