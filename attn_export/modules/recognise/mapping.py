"""``--map CLASS=BLOCK[:SOURCE]``: the command line's form of ``to_deploy(mapping=...)``.

CLASS is a class name (``MyCBAM``) or a dotted path (``my_net.MyCBAM``,
``ultralytics.nn.modules.conv.CBAM``) of a module inside the network; BLOCK a catalog name;
SOURCE one of the block's checkpoint layouts (``attn-export list`` / ``source_names``).
"""

from __future__ import annotations

from attn_export.errors import BlockConfigError


def parse_map(text: str) -> tuple[str, str, str]:
    """``"MyCBAM=cbam:official"`` -> ``("MyCBAM", "cbam", "official")``; raises a one-line
    BlockConfigError that says the expected form."""
    cls, sep, target = text.partition("=")
    block, _, source = target.partition(":")
    cls, block, source = cls.strip(), block.strip(), source.strip() or "reference"
    if not sep or not cls or not block or not all(p.isidentifier() for p in cls.split(".")):
        raise BlockConfigError(f"--map {text!r}: expected CLASS=BLOCK[:SOURCE], e.g. "
                               "MyCBAM=cbam or my_net.MyCBAM=cbam:official")
    from attn_export.modules.registry import block_info

    block_info(block)  # unknown names raise with the valid ones listed
    if source != "reference":
        from attn_export.modules.checkpoints import source_names

        if source not in source_names(block):
            raise BlockConfigError(f"--map {text!r}: {block} has no layout {source!r}; "
                                   f"expected one of {', '.join(source_names(block))}")
    return cls, block, source


def _matches(cls: type, spec: str) -> bool:
    qualified = f"{cls.__module__}.{cls.__qualname__}"
    return spec in (cls.__name__, cls.__qualname__, qualified) or \
        qualified.endswith("." + spec)


def resolve_map(specs, model) -> dict[type, tuple[str, str]]:
    """The ``to_deploy`` mapping for ``--map`` texts, the classes looked up in ``model``."""
    mapping: dict[type, tuple[str, str]] = {}
    classes = {type(m) for m in model.modules()}
    for text in specs:
        cls_spec, block, source = parse_map(text)
        found = [c for c in classes if _matches(c, cls_spec)]
        if not found:
            raise BlockConfigError(
                f"--map {text!r}: the network holds no module of class {cls_spec!r}; "
                "`attn-export scan NETWORK` lists its attention-like modules and their classes")
        if len(found) > 1:
            names = ", ".join(sorted(f"{c.__module__}.{c.__qualname__}" for c in found))
            raise BlockConfigError(f"--map {text!r}: {cls_spec!r} names several classes ({names});"
                                   " give the dotted path")
        mapping[found[0]] = (block, source)
    return mapping
