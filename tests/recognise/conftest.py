"""torchvision (and with it timm, Ultralytics, smp) importable on this CPU-only torch; see
``tests/torchvision_ops.py``. A normal torch + torchvision install needs nothing of this."""

from tests.torchvision_ops import ensure_importable

ensure_importable()
