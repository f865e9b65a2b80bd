"""What the tooling knows about a block without importing it: the :class:`BlockInfo` record
and the geometry hooks entries name. Torch-free, like the registry that fills it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SHAPE_MODES = ("none", "batch", "all")
"""``none``: every dim fixed; ``batch``: dynamic N; ``all``: dynamic N, H and W."""


@dataclass(frozen=True)
class BlockInfo:
    """What the tooling must know about a block without importing it.

    Attributes:
        family: module under ``attn_export.modules`` that holds both forms.
        reference: class name of the form faithful to the published code.
        deploy: class name of the export-safe twin (same ``state_dict`` keys).
        tier: catalog tier from BLOCKS.md.
        paper: short citation shown by ``attn-export list``.
        shape_modes: the shape modes the deploy form supports.
        hazards: BLOCKS.md hazard ids the deploy form handles (H1..H12, F1, F2).
        sources: checkpoint layouts ``convert_state_dict`` accepts besides ``reference``.
        needs_geometry: the deploy form must be told the input H, W (``input_size=(H, W)``).
        default_channels: channel count used when the user gives none.
        refusal: why the missing shape modes are refused, and what to do instead.
        forbidden_ops: ONNX ops the deploy form's graph must not contain (the hazards it
            removes); the block tests assert their absence from the exported graph.
        memory: how the attention's memory grows with the map, for blocks where it is more
            than linear or capped (``attn-export list`` prints it); empty otherwise.
        inputs: graph input names, the map first (``dia``, ``sca`` take recurrent states too).
        outputs: graph output names.
        reference_geometry: for a reference form built for one map size, ``(H, W)`` -> the
            constructor keywords that size it (rga's ``input_size``, residual_attention's
            ``size1``..); None when the reference form takes any size.
    """

    family: str
    reference: str
    deploy: str
    tier: int
    paper: str
    shape_modes: tuple[str, ...] = SHAPE_MODES
    hazards: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    needs_geometry: bool = False
    default_channels: int = 64
    refusal: str = ""
    forbidden_ops: tuple[str, ...] = ()
    memory: str = ""
    inputs: tuple[str, ...] = ("input",)
    outputs: tuple[str, ...] = ("output",)
    reference_geometry: Callable[[tuple[int, int]], dict[str, Any]] | None = None


def input_size_kwargs(input_size: tuple[int, int]) -> dict[str, Any]:
    """The reference geometry of a block whose constructor takes the map size as ``input_size``."""
    return {"input_size": tuple(input_size)}


def residual_attention_sizes(input_size: tuple[int, int]) -> dict[str, Any]:
    """residual_attention's ``size1``.. for a map (imported on call: the registry is torch-free)."""
    from attn_export.modules.residual_attention import reference_geometry

    return reference_geometry(input_size)
