"""Validation inputs that look like images: scikit-learn's two sample photographs and its digits.

Seeded maps (N(0, 1), post-ReLU up to ~30, constant, zeros) find the inputs that break a block,
but a network trained on images never sees them; its verdict on them says little about its
deployment. scikit-learn ships real images offline: two photographs (``load_sample_images``:
china.jpg and flower.jpg, 427x640 RGB) and 1797 handwritten digits (8x8, values 0..16). They are
shaped to the model's input here:

- 3 channels: the photographs, resized to HxW (bilinear), ImageNet-normalised (mean 0.485, 0.456,
  0.406; std 0.229, 0.224, 0.225), as torchvision and timm feed their networks;
- any other channel count: a different digit per channel (and per sample), upsampled to HxW and
  scaled to [0, 1], a map with edges, flat regions and sparse strokes, like a feature map.

Needs scikit-learn (and Pillow for the photographs): ``pip install 'attn-export[torch]'``.
"""

from __future__ import annotations

import numpy as np

from attn_export.errors import MissingDependencyError

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def _sklearn_datasets():
    try:
        from sklearn import datasets
    except ImportError as exc:
        raise MissingDependencyError("natural validation images need scikit-learn; install it "
                                     "with `pip install 'attn-export[torch]'`") from exc
    return datasets


def resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``image`` (H, W[, C]) resized to ``height`` x ``width`` with align-corners=False bilinear
    sampling (numpy only, so no torch or Pillow resampling differences enter the golden file)."""
    h, w = image.shape[:2]
    ys = np.clip((np.arange(height) + 0.5) * h / height - 0.5, 0, h - 1)
    xs = np.clip((np.arange(width) + 0.5) * w / width - 0.5, 0, w - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    wy, wx = (ys - y0)[:, None], (xs - x0)[None, :]
    if image.ndim == 3:
        wy, wx = wy[..., None], wx[..., None]
    img = image.astype(np.float32)
    top = img[y0][:, x0] * (1 - wx) + img[y0][:, x1] * wx
    bottom = img[y1][:, x0] * (1 - wx) + img[y1][:, x1] * wx
    return (top * (1 - wy) + bottom * wy).astype(np.float32)


def photographs(shape: tuple[int, int, int, int]) -> np.ndarray:
    """N x 3 x H x W: the sample photographs (alternating), resized and ImageNet-normalised."""
    n, c, h, w = shape
    images = _sklearn_datasets().load_sample_images().images
    batch = []
    for i in range(n):
        rgb = resize_bilinear(images[i % len(images)], h, w) / 255.0
        batch.append(((rgb - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1))
    return np.ascontiguousarray(np.stack(batch), dtype=np.float32)


def digits(shape: tuple[int, ...], offset: int = 0) -> np.ndarray:
    """N x C x H x W: a different digit in every channel, upsampled and scaled to [0, 1]."""
    n, c, h, w = shape
    images = _sklearn_datasets().load_digits().images
    out = np.empty(shape, np.float32)
    for k in range(n * c):
        out.flat[k * h * w:(k + 1) * h * w] = resize_bilinear(
            images[(offset + k) % len(images)] / 16.0, h, w).ravel()
    return out


def natural_cases(shape: tuple[int, int, int, int]) -> list[tuple[str, np.ndarray]]:
    """The natural validation case for an input of ``shape``, named like the seeded ones."""
    from attn_export.runtime.inputs import format_shape

    if shape[1] == 3:
        return [(f"photo@{format_shape(shape)}", photographs(shape))]
    return [(f"digits@{format_shape(shape)}", digits(shape))]


def natural_calibration(shape: tuple[int, int, int, int], count: int = 16,
                        seed: int = 0) -> list[np.ndarray]:
    """``count`` natural calibration samples of ``shape``, none equal to the validation case:
    seeded random crops (half of each side or more) and flips of the photographs for 3 channels,
    later digits (offset past the validation ones) otherwise."""
    n, c, h, w = shape
    if c != 3:
        return [digits(shape, offset=(i + 1) * n * c) for i in range(count)]
    images = _sklearn_datasets().load_sample_images().images
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(count):
        batch = []
        for j in range(n):
            img = images[(i * n + j) % len(images)]
            ch, cw = (int(rng.integers(s // 2, s + 1)) for s in img.shape[:2])
            y, x = int(rng.integers(0, img.shape[0] - ch + 1)), int(rng.integers(0, img.shape[1] - cw + 1))
            crop = img[y:y + ch, x:x + cw][:, ::-1] if rng.random() < 0.5 else img[y:y + ch, x:x + cw]
            rgb = resize_bilinear(np.ascontiguousarray(crop), h, w) / 255.0
            batch.append(((rgb - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1))
        samples.append(np.ascontiguousarray(np.stack(batch), dtype=np.float32))
    return samples
