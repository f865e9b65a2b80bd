"""Recognising the attention modules of other codebases inside a user's network.

Users build networks with timm, torchvision, Ultralytics, segmentation_models_pytorch or mmcv, or
paste a block from a blog post. Each file here knows one codebase's classes by module path and
class name (``type(m).__module__``, ``type(m).__name__``): nothing third-party is imported, so a
recogniser costs nothing where its package is absent. ``structural`` matches pasted code by its
parameter layout; ``gates`` finds what looks like attention where nothing matched. ``scan`` walks
a network and says, for every attention-like module, what it would become and why not.
"""

from attn_export.modules.recognise.base import Match, Refusal, recognise
from attn_export.modules.recognise.scan import ScanRow, scan_network

__all__ = ["Match", "Refusal", "ScanRow", "recognise", "scan_network"]
