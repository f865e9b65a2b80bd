"""Your own attention classes as our deploy blocks: a ``mapping`` entry read, the module's weights
converted and loaded into the deploy form, on the old module's device and dtype.

Shared by ``to_deploy`` (explicit ``mapping=``) and the recognisers (``modules/recognise``), so
neither has to import the other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from attn_export.errors import AttnExportError, BlockConfigError
from attn_export.modules.registry import block_info

Source = str | Callable[[dict], dict]
MappingValue = str | tuple
"""``"cbam"`` (reference layout), ``("cbam", "official")``, ``("cbam", fn)`` where ``fn`` maps
the module's state_dict to our reference layout, or ``("mhsa", "reference", {"num_heads": 4})``
with the constructor kwargs the weights do not determine."""


def placed_like(new: nn.Module, old: nn.Module) -> nn.Module:
    """``new`` on the device and floating dtype of ``old``, in ``old``'s train/eval mode."""
    tensor = next(iter(old.parameters()), None)
    if tensor is None:
        tensor = next(iter(old.buffers()), None)
    if tensor is not None:
        new = new.to(device=tensor.device)
        if tensor.is_floating_point():
            new = new.to(dtype=tensor.dtype)
    return new.train(old.training)


def parse_mapping_entry(cls: Any, value: MappingValue, default_source: Source) -> tuple[str, Source, dict]:
    if not isinstance(cls, type) or not issubclass(cls, nn.Module):
        raise BlockConfigError(
            f"mapping keys must be nn.Module classes (your attention class), got {cls!r}"
        )
    parts = (value,) if isinstance(value, str) else tuple(value)
    if not 1 <= len(parts) <= 3 or not isinstance(parts[0], str):
        raise BlockConfigError(
            f"mapping[{cls.__name__}] must be a block name, (name, source) or (name, source, "
            f"kwargs), got {value!r}"
        )
    name = parts[0]
    block_info(name)  # unknown names raise with the valid ones listed
    src = parts[1] if len(parts) > 1 else default_source
    kwargs = dict(parts[2]) if len(parts) > 2 else {}
    return name, src, kwargs


def convert_foreign(
    module: nn.Module, path: str, name: str, src: Source, kwargs: dict, geometry: dict
) -> nn.Module:
    """Our deploy block ``name`` carrying ``module``'s weights (converted in float32)."""
    from attn_export.modules.checkpoints import load_pretrained

    sd = {k: v.detach().cpu().float() if v.is_floating_point() else v.detach().cpu()
          for k, v in module.state_dict().items()}
    where = f"{path or '<model>'} ({type(module).__name__} -> {name!r})"
    if block_info(name).needs_geometry:
        kwargs = {**geometry, **kwargs}
    try:
        if callable(src):
            sd, src = src(sd), "reference"
        block = load_pretrained(name, sd, source=src, variant="deploy", **kwargs)
    except AttnExportError as exc:
        raise type(exc)(f"{where}: {exc}") from None
    return placed_like(block, module)
