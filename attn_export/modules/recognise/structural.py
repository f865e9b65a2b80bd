"""Pasted code recognised by its parameter layout, never by its class name.

A module of a class no recogniser knows is a candidate for catalog block ``name`` when its
state_dict, in one of the layouts ``convert_state_dict`` reads for ``name`` (our reference layout,
the seeds' listings, the official repositories, External-Attention-pytorch), loads strictly into
the block its tensors describe: the same keys, the same shapes. Constructor arguments the weights
do not determine (SimAM's ``e_lambda``) are read from the module's attributes of the same name. A
layout match is only a candidate: the caller swaps it only when ``base.prove`` shows equal
outputs, and otherwise reports "looks like cbam, outputs differ by X: not swapped".
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from attn_export.modules.recognise.base import Match

NAME = "structural"
PARAMETER_FREE_CHANNELS = 16
"""A parameter-free block's width is not in its weights; the proof runs it on 16 channels."""


def _scalar_attributes(module: nn.Module, cls: type, skip: set[str]) -> dict[str, Any]:
    """Constructor arguments of ``cls`` that ``module`` holds as plain attributes of that name."""
    found = {}
    for param in list(inspect.signature(cls.__init__).parameters)[1:]:
        value = getattr(module, param, None)
        if param not in skip and isinstance(value, (int, float, str, bool)) and \
                not isinstance(getattr(type(module), param, None), property):
            found[param] = value
    return found


def _fit(name: str, sd: dict, width: int) -> tuple[str, dict] | None:
    """(layout, constructor kwargs) under which ``sd`` loads strictly into block ``name``: the
    same keys and shapes. ``width`` stands in for the channels where the weights do not say them
    (ECA's one 1-D kernel)."""
    from attn_export.errors import AttnExportError
    from attn_export.modules.checkpoints import (
        convert_state_dict,
        infer_hyperparams,
        source_names,
    )
    from attn_export.modules.factory import create_block

    for source in source_names(name):
        try:
            converted = convert_state_dict(name, sd, source)
            args = infer_hyperparams(name, converted)
            if "channels" not in args and width:
                args["channels"] = width
            if "channels" not in args:
                continue
            kwargs = {k: v for k, v in args.items() if k != "channels"}
            with torch.device("meta"):  # shapes only: no allocation, no initialisation
                expected = create_block(name, args["channels"], "reference", **kwargs).state_dict()
        except (AttnExportError, KeyError, ValueError, IndexError, AttributeError, TypeError):
            continue
        if set(expected) == set(converted) and all(
                tuple(expected[k].shape) == tuple(converted[k].shape) for k in expected):
            return source, args
    return None


def _layout_matches(module: nn.Module, sd: dict, width: int) -> list[Match]:
    from attn_export.modules.checkpoints import load_pretrained
    from attn_export.modules.registry import BLOCKS, block_class, block_info

    found = []
    for name in BLOCKS:
        if block_info(name).needs_geometry:
            continue
        fit = _fit(name, sd, width)
        if fit is None:
            continue
        source, inferred = fit
        extra = _scalar_attributes(module, block_class(name, "reference"),
                                   {"channels", *inferred})
        extra["channels"] = inferred["channels"]  # where the weights do not say it (ECA)

        def build(_channels: int = 0, name=name, source=source, extra=extra) -> nn.Module:
            return load_pretrained(name, dict(sd), source=source, **extra)

        found.append(Match(NAME, name, int(inferred["channels"]), build))
    return found


def _parameter_free(module: nn.Module) -> list[Match]:
    """Parameter-free blocks (SimAM): no layout to match, so every one is a candidate and the
    proof alone decides."""
    from attn_export.modules.factory import create_block
    from attn_export.modules.registry import BLOCKS, block_class, block_info

    found = []
    for name in BLOCKS:
        info = block_info(name)
        if info.needs_geometry:
            continue
        try:
            probe = create_block(name, info.default_channels, "reference")
        except Exception:  # a block that needs arguments: not parameter-free
            continue
        if any(True for _ in probe.parameters()) or any(True for _ in probe.buffers()):
            continue
        extra = _scalar_attributes(module, block_class(name, "reference"), {"channels"})

        def build(channels: int = 0, name=name, extra=extra) -> nn.Module:
            width = channels or PARAMETER_FREE_CHANNELS
            return create_block(name, width, "deploy", **extra).eval()

        found.append(Match(NAME, name, 0, build, by_layout=False))
    return found


def candidates(module: nn.Module, width: int = 0) -> list[Match]:
    """Every catalog block whose layout ``module``'s weights fit (unproven); ``width``: the
    channels of the map that reached it (0: unknown)."""
    sd = {k: v.detach().cpu().float() if v.is_floating_point() else v.detach().cpu()
          for k, v in module.state_dict().items()}
    if not sd:
        return _parameter_free(module)
    return _layout_matches(module, sd, width)
