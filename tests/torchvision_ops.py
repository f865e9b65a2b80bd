"""Let ``import torchvision`` work on a CPU-only torch when torchvision's compiled ops do not load.

PyPI's torchvision wheels are CUDA builds: their ``_C.so`` links ``libtorch_cuda.so``, absent
from the CPU torch this environment installs, so torchvision skips loading it and then fails in
its own ``_meta_registrations`` (``register_fake("torchvision::nms")``: "operator torchvision::nms
does not exist"). timm, Ultralytics and segmentation_models_pytorch import torchvision, so none
of them could be imported. Nothing in attn-export calls torchvision's compiled ops; when the
library does not load, this defines the two op schemas torchvision registers unconditionally
(``nms``, ``qnms``) with a plain PyTorch CPU ``nms``, before torchvision is imported. With a
matching torch + torchvision install (a CPU torchvision from the PyTorch index, or CUDA torch
with CUDA torchvision) the library loads and this does nothing.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}


def _nms(dets, scores, iou_threshold: float):
    """Greedy NMS in plain PyTorch: the indices of the kept boxes, best score first."""
    import torch

    order = scores.argsort(descending=True)
    keep = []
    while order.numel():
        i = order[0]
        keep.append(i)
        rest = order[1:]
        lt = torch.maximum(dets[i, :2], dets[rest, :2])
        rb = torch.minimum(dets[i, 2:], dets[rest, 2:])
        inter = (rb - lt).clamp(min=0).prod(1)
        area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
        iou = inter / (area(dets[i]) + area(dets[rest]) - inter)
        order = rest[iou <= iou_threshold]
    return torch.stack(keep) if keep else torch.empty(0, dtype=torch.long, device=dets.device)


_LIBRARY = None


def ensure_importable() -> str:
    """Make ``import torchvision`` work; returns what was done ("native", "fallback", "absent")."""
    global _LIBRARY
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return "absent"
    if "torchvision" in sys.modules or _LIBRARY is not None:
        return "fallback" if _LIBRARY is not None else "native"
    import torch

    try:
        torch.ops.load_library(str(Path(spec.origin).parent / "_C.so"))
        return "native"
    except (OSError, RuntimeError):
        pass
    _LIBRARY = torch.library.Library("torchvision", "DEF")  # noqa: TOR901 - kept alive globally
    for name, schema in _SCHEMAS.items():
        _LIBRARY.define(schema)
        _LIBRARY.impl(name, _nms, "CompositeExplicitAutograd")
    return "fallback"
