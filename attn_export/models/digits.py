"""A small CBAM + SE classifier trained on scikit-learn's handwritten digits, and the data split.

It exists to measure accuracy rather than distance: seeded weights say how far a reduced-precision
graph drifts, but only a trained network says whether the drift costs correct answers. The digits
(1,797 8x8 images, shipped inside scikit-learn, so no download) are upsampled to 32x32 and split
once, seeded: 1,400 to train (and to calibrate INT8 on), 397 held out. ``tools/train_digits.py``
trains the weights committed beside this file (``weights/digits_net.pth``); ``tools/accuracy.py``
(``make accuracy``) prints the top-1 of every precision on the held-out split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from attn_export.modules.factory import create_block

WEIGHTS = Path(__file__).with_name("weights") / "digits_net.pth"
"""The committed weights (state_dict of :class:`DigitsNet` with reference blocks)."""

IMAGE_SIZE = 32
HELD_OUT = 397
SPLIT_SEED = 0


def _stage(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DigitsNet(nn.Module):
    """Three conv stages (32 -> 16 -> 8 pixels) with CBAM, SE and CBAM after them, then a linear
    head on the spatial mean. Reference blocks, so ``to_deploy`` has real work to do."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, variant: str = "reference"
                 ) -> None:
        super().__init__()
        self.stage1 = _stage(in_channels, 16, 1)
        self.attn1 = create_block("cbam", 16, variant=variant, ratio=4)
        self.stage2 = _stage(16, 32, 2)
        self.attn2 = create_block("se", 32, variant=variant, reduction=4)
        self.stage3 = _stage(32, 64, 2)
        self.attn3 = create_block("cbam", 64, variant=variant, ratio=8)
        self.head = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attn1(self.stage1(x))
        x = self.attn2(self.stage2(x))
        x = self.attn3(self.stage3(x))
        return self.head(x.mean((2, 3)))


def digits_net(pretrained: bool = False) -> DigitsNet:
    """The network as ``attn-export model attn_export/models/digits.py:digits_net`` builds it
    (input 1x1x32x32); ``pretrained=True`` loads the committed weights."""
    net = DigitsNet()
    if pretrained:
        net.load_state_dict(torch.load(WEIGHTS, map_location="cpu", weights_only=True))
    return net.eval()


def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)``: float32 (N, 1, 32, 32) images in [-1, 1], int64
    labels; the same split on every machine (a seeded permutation of scikit-learn's order)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        from attn_export.errors import MissingDependencyError

        raise MissingDependencyError("the digits data set needs scikit-learn; install the "
                                     "`accuracy` extra: pip install 'attn-export[accuracy]'"
                                     ) from exc
    data = load_digits()
    images = torch.from_numpy(data.images.astype(np.float32) / 16.0)[:, None]
    images = torch.nn.functional.interpolate(images, size=(IMAGE_SIZE, IMAGE_SIZE),
                                             mode="bilinear", align_corners=False)
    images = (images.clamp(0, 1) - 0.5) / 0.5
    order = np.random.RandomState(SPLIT_SEED).permutation(len(images))
    test, train = order[:HELD_OUT], order[HELD_OUT:]
    x = images.numpy()
    y = data.target.astype(np.int64)
    return x[train], y[train], x[test], y[test]


def top1(logits: np.ndarray, labels: np.ndarray) -> float:
    """The share of rows whose arg-max is the label."""
    return float((np.asarray(logits).argmax(axis=1) == labels).mean())
