"""Where the module of an export comes from: the one thing blocks and networks do differently.

A source resolves the request (defaults, refusals before any work), builds the module (seeded,
swapped where a network holds reference blocks), names the artefacts and adds its own sections to
the report. The stages after it (:mod:`attn_export.export.pipeline`) are the same for all.
:class:`BlockSource` builds one catalog block; :class:`~attn_export.export.network_source.
NetworkSource` a registered network or a user's ``FILE.py:FUNCTION``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from attn_export.errors import BlockConfigError, ExportError, ShapeModeError
from attn_export.export.request import DEFAULT_SPATIAL, Clock, ExportRequest
from attn_export.export.stages import randomize_norm_statistics
from attn_export.modules.registry import block_info


@dataclass
class Built:
    """A built module and what its source records about it."""

    module: Any
    report: dict[str, Any] = field(default_factory=dict)
    drop: tuple[str, ...] = ()
    swaps: list = field(default_factory=list)
    task: str | None = None


class Source(Protocol):
    """What the pipeline asks of a source (see the module docstring)."""

    judged_as: str | None

    def label(self, req: ExportRequest) -> str: ...

    def resolve(self, req: ExportRequest) -> ExportRequest: ...

    def check(self, req: ExportRequest) -> None: ...

    def build(self, req: ExportRequest, clock: Clock) -> Built: ...

    def metadata(self, req: ExportRequest) -> dict[str, str]: ...


class BlockSource:
    """One catalog block, judged by the block tolerance."""

    judged_as = None

    def label(self, req: ExportRequest) -> str:
        return req.block

    def resolve(self, req: ExportRequest) -> ExportRequest:
        """Fill defaults and check every option before any work is done."""
        from attn_export.export.onnx_from_torch import check_opset, dynamic_dims
        from attn_export.export.preflight import check_scalars
        from attn_export.export.simplified_onnx import SIMPLIFIERS

        info = block_info(req.block)
        check_scalars(req.channels, req.seed)
        check_opset(req.opset, req.exporter)
        dynamic_dims(req.dynamic)
        if req.simplifier not in SIMPLIFIERS:
            raise ExportError(f"unknown simplifier {req.simplifier!r}; expected one of "
                              f"{', '.join(SIMPLIFIERS)}")
        if req.dynamic not in info.shape_modes:
            raise ShapeModeError(
                f"{req.block} cannot be exported with --dynamic {req.dynamic}: "
                f"{info.refusal or 'the block does not support it'} (supported: "
                f"{', '.join(info.shape_modes)})"
            )
        if req.input_shape is not None:
            if len(req.input_shape) != 4 or min(req.input_shape) < 1:
                raise ShapeModeError(f"input shape {req.input_shape} must be 4 positive dims "
                                     "NxCxHxW")
            if req.channels is not None and req.channels != req.input_shape[1]:
                raise BlockConfigError(
                    f"--channels {req.channels} disagrees with --input-shape channel dim "
                    f"{req.input_shape[1]}; give one or make them equal"
                )
            req.channels = req.input_shape[1]
        req.channels = info.default_channels if req.channels is None else req.channels
        req.input_shape = req.input_shape or (1, req.channels, *DEFAULT_SPATIAL)
        req.output_dir = Path(req.output_dir or Path("exports") / req.block)
        return req

    def check(self, req: ExportRequest) -> None:
        from attn_export.export.preflight import check_request

        check_request(req)

    def build(self, req: ExportRequest, clock: Clock) -> Built:
        return Built(build_block(req))

    def metadata(self, req: ExportRequest) -> dict[str, str]:
        return {"attn_export.block": req.block, "attn_export.variant": req.variant,
                "attn_export.channels": str(req.channels)}


def build_block(req: ExportRequest):
    """The block with seeded weights and non-trivial norm statistics (identity BN hides bugs)."""
    import torch

    from attn_export.modules.factory import create_block

    kwargs = dict(req.kwargs)
    info = block_info(req.block)
    if info.needs_geometry and (req.variant == "deploy" or info.reference_geometry is not None):
        kwargs.setdefault("input_size", tuple(req.input_shape[2:]))
    torch.manual_seed(req.seed)
    try:
        module = create_block(req.block, req.channels, req.variant, **kwargs)
    except (TypeError, ValueError, RuntimeError) as exc:
        if isinstance(exc, BlockConfigError):
            raise
        # torch's own complaint about a value the kind check let through (e.g. a kernel larger
        # than the map): still the user's input, so one line that names it
        shown = ", ".join(f"{k}={v!r}" for k, v in req.kwargs.items()) or "the defaults"
        raise BlockConfigError(f"{req.block} cannot be built with channels={req.channels}, "
                               f"{shown}: {str(exc).splitlines()[0][:200]}") from None
    randomize_norm_statistics(module, req.seed)
    return module.eval()
