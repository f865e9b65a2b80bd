"""What a recogniser returns, the lookup by class, and the proof a swap must pass.

A recogniser is a function of one module instance. It returns a ``Match`` (the block the module
is, and how to build our deploy form carrying its weights), a ``Refusal`` (the class is known, but
this instance is configured in a way no block of ours computes: the reason is reported), or
``None``. Nothing is swapped on a match alone: ``prove`` runs both modules on random maps at two
sizes and the swap happens only when they agree.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

PROOF_SIZES = ((9, 13), (16, 16))
"""H, W of the random maps a recognised module is proven on: one odd and unequal (a block that
confuses H and W fails), one square and even (strided and grouped paths)."""

CODEBASES = ("timm", "torchvision", "ultralytics", "smp", "mmcv")
"""The files under ``attn_export.modules.recognise`` holding class recognisers."""


@dataclass
class Match:
    """A module recognised as one of our blocks (or as a deploy form of its own)."""

    recogniser: str  # "timm", "ultralytics", ..., "structural", "map"
    block: str  # the block it becomes: a catalog name, or a form of its own ("ultralytics_cbam")
    channels: int  # 0: the weights do not say (ECA): the width seen on a real input is used
    build: Callable[[int], nn.Module]  # (width) -> our deploy module with the weights copied
    by_layout: bool = True  # False: a parameter-free candidate, only the proof speaks for it

    @property
    def label(self) -> str:
        return self.block


@dataclass
class Refusal:
    """A known class whose instance no block of ours computes."""

    recogniser: str
    reason: str


Result = Match | Refusal | None
Recogniser = Callable[[nn.Module], Result]


def _table() -> dict[tuple[str, str], tuple[str, Recogniser]]:
    table: dict[tuple[str, str], tuple[str, Recogniser]] = {}
    for codebase in CODEBASES:
        module = importlib.import_module(f"attn_export.modules.recognise.{codebase}")
        for key, fn in module.RECOGNISERS.items():
            table[key] = (codebase, fn)
    return table


_TABLE: dict | None = None


def known_classes() -> dict[tuple[str, str], str]:
    """(module path, class name) -> codebase, for every class a recogniser covers."""
    global _TABLE
    if _TABLE is None:
        _TABLE = _table()
    return {key: codebase for key, (codebase, _) in _TABLE.items()}


def recognise(module: nn.Module) -> Result:
    """The class recogniser's verdict on ``module`` (``None``: no recogniser knows its class)."""
    known_classes()
    cls = type(module)
    entry = _TABLE.get((cls.__module__, cls.__name__))
    return None if entry is None else entry[1](module)


def catalog_build(name: str, state_dict: dict, source: Any = "reference",
                  **kwargs: Any) -> Callable[[], nn.Module]:
    """A builder of catalog block ``name`` (deploy form) from ``state_dict`` in layout ``source``
    (a layout name, or a function to our reference layout)."""

    def build(channels: int = 0) -> nn.Module:
        from attn_export.modules.checkpoints import load_pretrained

        args = dict(kwargs)
        if channels:
            args.setdefault("channels", channels)

        sd = {k: v.detach().cpu().float() if v.is_floating_point() else v.detach().cpu()
              for k, v in state_dict.items()}
        if callable(source):
            return load_pretrained(name, source(sd), source="reference", **args)
        return load_pretrained(name, sd, source=source, **args)

    return build


def prove(old: nn.Module, new: nn.Module, channels: int, atol: float = 1e-5,
          rtol: float = 1e-4) -> tuple[float, bool, str]:
    """(max abs difference, equal within ``atol + rtol * |old|``, why not) of ``old`` and ``new``
    on fixed-seed random maps (2, channels, H, W) at each of ``PROOF_SIZES``, both in eval mode.

    An exception in either module counts as a difference of ``inf`` (its message is the third
    value): a module that cannot run on a plain feature map is not a block we can swap.
    """
    modes = (old.training, new.training)
    old.eval()
    new.eval()
    worst, ok = 0.0, True
    try:
        tensor = next(iter(old.parameters()), None)
        for h, w in PROOF_SIZES:
            gen = torch.Generator().manual_seed(h * 100 + w)
            x = torch.randn(2, channels, h, w, generator=gen)
            if tensor is not None:
                x = x.to(device=tensor.device, dtype=tensor.dtype)
            with torch.no_grad():
                a, b = old(x), new(x)
            if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor) or \
                    a.shape != b.shape:
                return float("inf"), False, "the outputs differ in type or shape"
            a, b = a.double(), b.double()
            worst = max(worst, float((a - b).abs().nan_to_num(float("inf")).max()))
            ok = ok and bool(torch.allclose(b, a, atol=atol, rtol=rtol))
    except Exception as exc:  # the user's module may raise anything on a foreign input
        text = str(exc).strip().splitlines()
        return float("inf"), False, f"{type(exc).__name__}: {text[0][:120] if text else ''}"
    finally:
        old.train(modes[0])
        new.train(modes[1])
    return worst, ok, ""
