"""Walking a network for attention modules: what each is, what it would become, and why not.

``decide`` is the one judgement ``to_deploy`` and ``attn-export scan`` share: a known class (its
codebase's recogniser) or, for a class nobody knows that looks like attention, a catalog block
whose layout its weights fit (``structural``); either way the swap is proven on random maps at two
sizes before it is offered. ``scan_network`` adds the modules that hold an attention gate but
match nothing, so a user sees what to map by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from torch import nn

from attn_export.modules.recognise import gates, structural
from attn_export.modules.recognise.base import Match, Refusal, known_classes, prove, recognise


@dataclass
class ScanRow:
    """One attention-like module of a network."""

    path: str
    cls: str  # "module.path.ClassName"
    recogniser: str  # codebase, "structural", "map", or "-"
    block: str  # what it becomes, or "-"
    max_abs_diff: float | None  # the proof's difference (None: not proven)
    swapped: bool
    reason: str = ""
    real_diff: float | None = None  # the difference on the network's own input, when checked

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Decision:
    row: ScanRow
    new: nn.Module | None  # the proven deploy module (None: not swapped)


def qualified(module: nn.Module) -> str:
    cls = type(module)
    return f"{cls.__module__}.{cls.__name__}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:160]}" if text else type(exc).__name__


def _is_candidate(module: nn.Module) -> bool:
    """A class of the user's (not torch's, not our host networks') holding weights: LKA gates by
    a plain product and GCT by ``1 + tanh``, so no op name filters pasted blocks; the layout match
    and the proof do."""
    path = type(module).__module__
    return not path.startswith(("torch.", "attn_export.")) and (
        any(True for _ in module.parameters()) or gates.mentions_gate(module))


def could_match(module: nn.Module) -> bool:
    """Whether ``decide`` may say anything about ``module`` (a known class or a candidate)."""
    cls = type(module)
    return (cls.__module__, cls.__name__) in known_classes() or _is_candidate(module)


class LazyWidths:
    """``input_widths`` of a network, computed on the first question (one extra forward pass,
    spent only on networks holding something to recognise)."""

    def __init__(self, model: nn.Module, example) -> None:
        self.model, self.example, self.widths = model, example, None

    def get(self, path: str, default: int = 0) -> int:
        if self.widths is None:
            self.widths = input_widths(self.model, self.example)
        return self.widths.get(path, default)


def _try(module: nn.Module, path: str, match: Match, width: int = 0) -> Decision:
    row = ScanRow(path, qualified(module), match.recogniser, match.block, None, False)
    if not match.channels and not width and match.recogniser not in ("structural", "map"):
        row.reason = (f"{match.block}: its width is not in its weights and no network input "
                      "reached it (pass an example input / --input-shape): not swapped")
        return Decision(row, None)
    try:
        new = match.build(width)
    except Exception as exc:  # a converter refusing these weights: reported, not raised
        row.reason = f"looks like {match.block}, cannot convert ({_first_line(exc)}): not swapped"
        return Decision(row, None)
    channels = match.channels or width or int(getattr(new, "init_args", {}).get("channels", 0))
    err, ok, why = prove(module, new, channels)
    row.max_abs_diff = err
    if ok:
        row.swapped = True
        return Decision(row, new)
    row.reason = f"looks like {match.block}, " + (
        f"fails on a ({channels}-channel) map ({why})" if why else
        f"outputs differ by {err:.3g}") + ": not swapped"
    return Decision(row, None)


def decide(module: nn.Module, path: str, width: int = 0) -> Decision | None:
    """The verdict on one module, or ``None`` (neither known nor a layout match: look inside).

    ``width``: the channels of the map that reached the module on a real input (0: unknown).
    """
    result = recognise(module)
    if isinstance(result, Refusal):
        return Decision(ScanRow(path, qualified(module), result.recogniser, "-", None, False,
                                result.reason), None)
    if isinstance(result, Match):
        return _try(module, path, result, width)
    if not _is_candidate(module):
        return None
    found = structural.candidates(module, width)
    if not found:
        return None
    first = None
    for match in found:
        decision = _try(module, path, match, width)
        if decision.new is not None:
            return decision
        if match.by_layout:
            first = first or decision
    return first  # a parameter-free module that equals no block is no look-alike: look inside


def _unrecognised(module: nn.Module, path: str) -> ScanRow | None:
    if type(module).__module__.startswith("torch.") or not gates.mentions_gate(module):
        return None
    count = gates.gate_count(module)
    if count:
        return ScanRow(path, qualified(module), "-", "-", None, False,
                       f"{count} attention gate(s), no recogniser or block layout matches: "
                       "map it with --map CLASS=BLOCK[:SOURCE]")
    if count is None and gates._source_mentions(type(module)):
        return ScanRow(path, qualified(module), "-", "-", None, False,
                       "its forward names a sigmoid/softmax (not traceable to check it is a "
                       "gate); no recogniser or block layout matches")
    return None


def input_widths(model: nn.Module, example) -> dict[str, int]:
    """Module path -> channels of the 4-D map that first reached it, on one run of ``example``.

    The run is made on a copy: a module that keeps state across calls (a counter, a cache) must
    see the network's input as often as the caller's own check expects, not once more.
    """
    import copy

    import torch

    try:
        probe = copy.deepcopy(model).eval()
    except Exception:  # a module that cannot be copied: no widths, ECA-like modules then say so
        return {}
    widths: dict[str, int] = {}
    handles = []
    for path, module in probe.named_modules(remove_duplicate=False):
        def pre(_module, args, path=path):
            if args and isinstance(args[0], torch.Tensor) and args[0].dim() == 4:
                widths.setdefault(path, int(args[0].shape[1]))

        handles.append(module.register_forward_pre_hook(pre))
    try:
        with torch.no_grad():
            probe(*(example if isinstance(example, tuple) else (example,)))
    finally:
        for handle in handles:
            handle.remove()
    return widths


def scan_network(model: nn.Module, mapping: Mapping | None = None,
                 example=None) -> list[ScanRow]:
    """Every attention-like module of ``model``, outermost first, with the verdict on each.

    ``mapping`` is ``to_deploy``'s: mapped classes are converted as mapped and proven the same way.
    ``example`` (a network input) tells the width of modules whose weights do not (ECA).
    """
    widths = input_widths(model.eval(), example) if example is not None else {}
    from attn_export.modules.registry import BLOCKS, block_class

    ours = {block_class(name, "reference"): name for name in BLOCKS}
    entries = _mapped(mapping or {})
    rows: list[ScanRow] = []

    def visit(module: nn.Module, path: str) -> bool:
        if type(module) in ours:
            rows.append(ScanRow(path, qualified(module), "catalog", ours[type(module)], 0.0, True,
                                "our reference block: its deploy twin"))
            return True
        entry = entries.get(type(module))
        width = widths.get(path, 0)
        decision = _try(module, path, mapped_match(module, path, entry), width) \
            if entry is not None else decide(module, path, width)
        if decision is not None:
            rows.append(decision.row)
            return True
        found = False
        for name, child in module.named_children():
            found |= visit(child, f"{path}.{name}" if path else name)
        if not found:
            row = _unrecognised(module, path or "<model>")
            if row is not None:
                rows.append(row)
                return True
        return found

    visit(model, "")
    return rows


def mapped_match(module: nn.Module, path: str, entry: tuple) -> Match:
    """A ``to_deploy`` mapping entry ``(name, source, kwargs)`` as a match for ``module``."""
    from attn_export.modules.foreign import convert_foreign

    name, src, kwargs = entry
    return Match("map", name, 0, lambda _c=0: convert_foreign(module, path, name, src, kwargs,
                                                                 {}))


def _mapped(mapping: Mapping) -> dict[type, tuple]:
    from attn_export.modules.foreign import parse_mapping_entry

    return {cls: parse_mapping_entry(cls, value, "reference") for cls, value in mapping.items()}
