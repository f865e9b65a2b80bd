"""Networks built from other codebases' real classes, as a user writes them (no weights).

Each builder imports its package lazily; ``tests/recognise/conftest.py`` makes torchvision
importable on a CPU-only torch first (``tests/torchvision_ops.py``). Also usable from the command
line: ``attn-export model tests/recognise/nets.py:yolo_cbam --input-shape 1x3x128x128``.
"""

from __future__ import annotations

import torch
from torch import nn


def _torchvision_ready() -> None:
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[2])
    if root not in sys.path:
        sys.path.insert(0, root)
    from tests.torchvision_ops import ensure_importable

    ensure_importable()


class FirstOutput(nn.Module):
    """A detector whose export is its decoded predictions (Ultralytics returns (y, raw) in eval)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return out[0] if isinstance(out, (tuple, list)) else out


def _with_cbam(layer: nn.Module, channels: int) -> nn.Module:
    """``layer`` followed by Ultralytics' CBAM, keeping the routing attributes its
    ``DetectionModel`` reads (``f``, ``i``, ``type``, ``np``)."""
    from ultralytics.nn.modules import CBAM

    seq = nn.Sequential(layer, CBAM(channels))
    for attr in ("f", "i", "type", "np"):
        setattr(seq, attr, getattr(layer, attr))
    return seq


def yolo_silu(width: float = 0.25, depth: float = 0.33) -> nn.Module:
    """Ultralytics' YOLOv8n (``yolov8n.yaml``): SiLU everywhere, no attention module."""
    _torchvision_ready()
    from ultralytics.nn.tasks import DetectionModel

    cfg = {"nc": 80, "scales": {"n": [depth, width, 1024]}}
    model = DetectionModel("yolov8n.yaml", verbose=False) if not cfg else \
        DetectionModel("yolov8n.yaml", verbose=False)
    return FirstOutput(model.eval())


def yolo_cbam() -> nn.Module:
    """YOLOv8n with Ultralytics' CBAM after each backbone C2f stage (as a YOLO yaml adds it)."""
    _torchvision_ready()
    from ultralytics.nn.modules import C2f
    from ultralytics.nn.tasks import DetectionModel

    model = DetectionModel("yolov8n.yaml", verbose=False)
    for i, layer in enumerate(model.model):
        if isinstance(layer, C2f) and i < 9:
            model.model[i] = _with_cbam(layer, layer.cv2.conv.out_channels)
    return FirstOutput(model.eval())
