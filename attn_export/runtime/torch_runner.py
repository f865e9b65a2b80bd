"""PyTorch backend: the eager module in eval mode, the reference every other backend is judged by."""

from __future__ import annotations

from typing import Any

import numpy as np

from attn_export.runtime.base import Feed, Runner, TensorSpec


class TorchRunner(Runner):
    """Runs an ``nn.Module`` on CPU (or ``device``) under ``torch.inference_mode``.

    Args:
        module: the model; put in eval mode on load.
        input_names / output_names: names matching the exported graph's.
        input_shapes: the shapes accepted, ``None`` for a dynamic dimension.
    """

    name = "pytorch"

    def __init__(
        self,
        module: Any,
        input_names: list[str],
        output_names: list[str],
        input_shapes: list[tuple[int | None, ...]],
        device: str = "cpu",
    ) -> None:
        super().__init__()
        self.module = module
        self.input_names = list(input_names)
        self.output_names = list(output_names)
        self.input_shapes = [tuple(s) for s in input_shapes]
        self.device = device

    def _load(self) -> None:
        self.module = self.module.eval().to(self.device)

    def _input_spec(self) -> list[TensorSpec]:
        return [
            TensorSpec(n, np.dtype(np.float32), s) for n, s in zip(self.input_names, self.input_shapes)
        ]

    def _infer(self, feed: Feed) -> Feed:
        import torch

        args = [torch.from_numpy(np.ascontiguousarray(feed[n])).to(self.device)
                for n in self.input_names]
        with torch.inference_mode():
            out = self.module(*args)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        return {n: o.detach().float().cpu().numpy() for n, o in zip(self.output_names, outs)}
