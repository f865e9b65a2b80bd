"""Seeded fake checkpoints in a recorded official layout (no release file can be downloaded here).

Values are drawn so a deep network stays finite and its gates non-trivial: He-scaled conv and
linear weights, BatchNorm gammas near 1, small biases and means, variances in [0.5, 2].
"""

from __future__ import annotations

import math

import torch


def fake_state_dict(layout: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape in layout["keys"]:
        leaf = key.rsplit(".", 1)[-1]
        if leaf == "num_batches_tracked":
            sd[key] = torch.tensor(100)
        elif leaf == "running_var":
            sd[key] = torch.rand(shape, generator=gen) * 1.5 + 0.5
        elif leaf == "running_mean" or leaf == "bias":
            sd[key] = torch.randn(shape, generator=gen) * 0.1
        elif len(shape) == 1:  # a norm's weight
            sd[key] = 1 + torch.randn(shape, generator=gen) * 0.2
        else:
            fan_in = math.prod(shape[1:]) or 1
            sd[key] = torch.randn(shape, generator=gen) * math.sqrt(2.0 / fan_in)
    return sd


def saved_like_release(sd: dict, layout: dict):
    """The object the release file holds: DataParallel prefixes under 'state_dict', or bare."""
    if layout["saved_as"].startswith("{'state_dict'"):
        return {"epoch": 90, "arch": layout["network"],
                "state_dict": {f"module.{k}": v for k, v in sd.items()}}
    return sd
