"""A bound on the attention weights a block materialises, checked before the tensors are built.

Blocks that form a weight per pair of pixels (criss-cross: each pixel against its row and column)
grow quadratically or worse with the map; at 256x256 criss-cross holds 33 M weights per image and
map. Rather than exhausting memory (or, on a Jetson, freezing the board), the deploy form refuses
maps whose weights would pass ``max_attention_mb`` and says how to raise the bound.
"""

from __future__ import annotations

import torch

from attn_export.errors import ShapeModeError

DEFAULT_MAX_ATTENTION_MB = 1024
"""1 GiB of float32 attention weights: far above any detection neck's maps, well below a host's."""


def check_max_attention_mb(block: str, value: float) -> float:
    """``value`` as a positive bound in MiB (constructor check)."""
    from attn_export.errors import BlockConfigError

    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise BlockConfigError(f"{block}: max_attention_mb must be a positive number, got {value!r}")
    return float(value)


def refuse_large_attention(block: str, elements: int, shape: tuple[int, ...], formula: str,
                           max_mb: float) -> None:
    """Raise if ``elements`` float32 attention weights exceed ``max_mb`` MiB (eager calls only).

    Skipped while tracing for export: the exported graph has no shape test (H12), and its cost at
    the runtime sizes is stated by ``attn-export list``.
    """
    if torch.jit.is_tracing() or torch.compiler.is_compiling():
        return
    mb = elements * 4 / 2**20
    if mb > max_mb:
        raise ShapeModeError(
            f"{block}: a {'x'.join(map(str, shape))} map needs {formula} = {elements:,} attention "
            f"weights ({mb:,.0f} MiB in float32), above max_attention_mb={max_mb:g}; use a "
            f"smaller map or raise the bound (max_attention_mb=..., --set max_attention_mb=...)"
        )
