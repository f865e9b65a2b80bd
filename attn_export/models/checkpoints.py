"""Whole-network checkpoints in their official layouts, converted to ours and loaded strictly.

A network checkpoint is the host's tensors (already in our torchvision-style keys for every
supported release, or renamed here) plus one group of tensors per attention block. Each block's
group is converted by that block's own converter (``modules/checkpoints.py``: Linear -> 1x1 conv,
CBAM's [max, mean] order, folded BatchNorms), and the block is rebuilt if the tensors say its
arguments differ (ECA's k per stage, a reduction). ``torch.load(weights_only=True)`` always: a
pickled whole model (Ultralytics ``.pt``) is refused with how to save a state_dict instead.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from attn_export.errors import CheckpointError
from attn_export.modules.base import AttentionBlock
from attn_export.modules.state_dict import read_state_dict

LAYOUT_DIR = Path(__file__).resolve().parent / "layouts"
StateDict = dict[str, Any]


@dataclass(frozen=True)
class LoadedCheckpoint:
    """What was loaded: the file, the layout it was read as, and how many tensors."""

    path: str
    source: str
    tensors: int
    rebuilt_blocks: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {**self.__dict__, "rebuilt_blocks": list(self.rebuilt_blocks)}


# ----------------------------------------------------------------------------------------------
# Conversion.


def block_slots(model: nn.Module) -> dict[str, tuple[AttentionBlock, str]]:
    """Every catalog block in ``model`` (reference or deploy form) by path, with its name."""
    from attn_export.modules.registry import BLOCKS, block_class

    classes = {}
    for name in BLOCKS:
        for variant in ("reference", "deploy"):
            classes[block_class(name, variant)] = name
    found = {}
    for path, module in model.named_modules():
        if type(module) in classes and not any(path.startswith(p + ".") for p in found):
            found[path] = (module, classes[type(module)])
    return found


def _coordatt_from_houqb(sd: StateDict) -> StateDict:
    """houqb ``mbv2_ca.py`` CoordAtt names its gates ``conv2`` (H strip) and ``conv3`` (W)."""
    names = {"conv2": "conv_h", "conv3": "conv_w"}
    return {names.get(k.split(".")[0], k.split(".")[0]) + k[len(k.split(".")[0]):]: v
            for k, v in sd.items()}


BLOCK_SOURCES: dict[str, dict[str, str | Callable]] = {
    "official": {"cbam": "official", "eca": "reference", "simam": "reference"},
    "timm": {"se": "timm", "eca": "timm", "cbam": "timm"},
    "houqb": {"coordatt": _coordatt_from_houqb},
    "torchvision": {},
}
"""Per network layout: how each block's tensors inside it are converted (a block source name
of ``modules/checkpoints.py``, or a function)."""


def _mobilenetv2_from_torchvision(sd: StateDict) -> StateDict:
    """torchvision's nested inverted residuals -> mbv2_ca.py's flat indices."""
    out = {}
    last = max(int(k.split(".")[1]) for k in sd if k.startswith("features."))
    for key, value in sd.items():
        m = re.match(r"features\.(\d+)\.(.*)", key)
        if m and int(m.group(1)) == last:
            key = "conv." + m.group(2)
        elif m and int(m.group(1)) > 0:
            k, rest = m.groups()
            flat = {"conv.0.0": "conv.0", "conv.0.1": "conv.1", "conv.1.0": "conv.3",
                    "conv.1.1": "conv.4", "conv.2": "conv.7", "conv.3": "conv.8"}
            if k == "1":
                flat = {"conv.0.0": "conv.0", "conv.0.1": "conv.1", "conv.1": "conv.3",
                        "conv.2": "conv.4"}
            head = next((t for t in flat if rest.startswith(t + ".")), None)
            if head is not None:
                rest = flat[head] + rest[len(head):]
            key = f"features.{k}.{rest}"
        out[key] = value
    return out


HOST_RENAMES: dict[tuple[str, str], Callable[[StateDict], StateDict]] = {
    ("mobilenetv2", "torchvision"): _mobilenetv2_from_torchvision,
}


def _host(name: str) -> str:
    from attn_export.models.registry import MODELS

    card = MODELS.get(name)
    return card.builder.split(":")[1] if card else name


def convert_network_state_dict(model: nn.Module, sd: Mapping[str, Any], source: str,
                               name: str) -> StateDict:
    """``sd`` (layout ``source``) in our keys for ``model``: host renames, then each block's
    group of tensors through its converter."""
    from attn_export.modules.checkpoints import convert_state_dict

    sd = dict(sd)
    rename = HOST_RENAMES.get((_host(name), source))
    if rename is not None:
        sd = rename(sd)
    rules = BLOCK_SOURCES.get(source, {})
    for path, (_block, block_name) in block_slots(model).items():
        rule = rules.get(block_name, "reference")
        prefix = f"{path}."
        group = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
        if not group:
            continue
        converted = rule(group) if callable(rule) else convert_state_dict(block_name, group, rule)
        sd = {k: v for k, v in sd.items() if not k.startswith(prefix)}
        sd.update({prefix + k: v for k, v in converted.items()})
    return sd


def _rebuild_blocks(model: nn.Module, sd: Mapping[str, Any]) -> list[str]:
    """Rebuild the blocks whose arguments the checkpoint's tensors contradict (ECA's k, a
    reduction): the tensors are the truth about a trained network."""
    from attn_export.modules.checkpoints import infer_hyperparams
    from attn_export.modules.factory import create_block
    from attn_export.modules.registry import block_class

    rebuilt = []
    for path, (block, name) in block_slots(model).items():
        prefix = f"{path}."
        group = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
        try:
            inferred = infer_hyperparams(name, group) if group else {}
        except CheckpointError:
            continue
        args = dict(block.init_args)
        changed = {k: v for k, v in inferred.items() if k in args and args[k] != v}
        if not changed:
            continue
        args.update(changed)
        variant = "reference" if type(block) is block_class(name, "reference") else "deploy"
        new = create_block(name, args.pop("channels"), variant, **args)
        parent_path, _, attr = path.rpartition(".")
        setattr(model.get_submodule(parent_path) if parent_path else model, attr, new)
        rebuilt.append(f"{path} ({', '.join(f'{k}={v}' for k, v in changed.items())})")
    return rebuilt


def _fits(expected: Mapping[str, Any], sd: Mapping[str, Any]) -> bool:
    """Same keys and shapes; a BatchNorm's ``num_batches_tracked`` may be absent (checkpoints
    saved before PyTorch 0.4.1 lack it, and ``load_state_dict`` fills it)."""
    keys = {k for k in expected if k in sd or not k.endswith("num_batches_tracked")}
    return keys == set(sd) and all(tuple(expected[k].shape) == tuple(sd[k].shape) for k in keys)


# ----------------------------------------------------------------------------------------------
# Recorded layouts and the mismatch message.


def recorded_layouts() -> dict[str, dict]:
    """Every recorded official layout (``layouts/*.json``) by name."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(LAYOUT_DIR.glob("*.json"))}


def most_similar_layout(keys) -> tuple[str, float] | None:
    """The recorded layout whose key set overlaps ``keys`` most (Jaccard), and the overlap."""
    keys = {k.removeprefix("module.") for k in keys}
    best = None
    for name, layout in recorded_layouts().items():
        theirs = {k for k, _ in layout["keys"]}
        score = len(keys & theirs) / max(1, len(keys | theirs))
        if best is None or score > best[1]:
            best = (name, score)
    return best


def _short(keys: list[str], limit: int = 6) -> str:
    return (", ".join(keys[:limit]) + (f" ... ({len(keys)} in all)" if len(keys) > limit else "")
            ) if keys else "none"


def _mismatch(name: str, source: str, expected, sd, raw) -> CheckpointError:
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    shapes = sorted(k for k in set(expected) & set(sd)
                    if tuple(expected[k].shape) != tuple(sd[k].shape))
    similar = most_similar_layout(raw)
    hint = ""
    if similar is not None:
        layout = recorded_layouts()[similar[0]]
        hint = (f"; it most resembles the recorded layout {similar[0]} ({layout['network']}, "
                f"--source {layout['source']}; {similar[1]:.0%} of keys shared)")
    return CheckpointError(
        f"{name}: the checkpoint does not fit the {source!r} layout: missing keys "
        f"{_short(missing)}; unexpected keys {_short(unexpected)}"
        + (f"; shapes differ at {_short(shapes)}" if shapes else "") + hint)


def load_network_checkpoint(model: nn.Module, path_or_sd, source: str = "auto",
                            name: str = "network") -> LoadedCheckpoint:
    """Load a checkpoint into ``model`` strictly, converting it from layout ``source``.

    Args:
        model: the network (built by ``create_model`` or the user's builder).
        path_or_sd: a ``torch.save``d state_dict (``state_dict``/``model`` wrappers and the
            DataParallel ``module.`` prefix accepted) or the mapping itself.
        source: ``ours``, one of the card's sources (``official``, ``timm``, ``torchvision``,
            ``houqb``, ``smp``), or ``auto`` for the first that fits.
        name: the network's registry name (selects host renames; used in messages).
    """
    from attn_export.models.registry import MODELS

    raw = read_state_dict(path_or_sd)
    card = MODELS.get(name)
    candidates = [source] if source != "auto" else ["ours", *(card.sources if card else
                                                              BLOCK_SOURCES)]
    first_error, attempt = None, None
    for src in candidates:
        if src != "ours" and src not in BLOCK_SOURCES and (_host(name), src) not in HOST_RENAMES:
            raise CheckpointError(f"{name}: unknown checkpoint source {src!r}; expected one of "
                                  f"ours, {', '.join(card.sources if card else BLOCK_SOURCES)}")
        try:
            sd = convert_network_state_dict(model, raw, src, name)
        except CheckpointError as exc:
            first_error = first_error or exc
            continue
        rebuilt = _rebuild_blocks(model, sd)
        expected = model.state_dict()
        if _fits(expected, sd):
            model.load_state_dict(sd, strict=True)
            where = str(path_or_sd) if not isinstance(path_or_sd, Mapping) else "<state_dict>"
            return LoadedCheckpoint(where, src, len(sd), tuple(rebuilt))
        attempt = attempt or (src, expected, sd)
    if attempt is None:
        raise first_error
    raise _mismatch(name, attempt[0], attempt[1], attempt[2], raw)
