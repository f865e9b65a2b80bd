"""Swapping attention blocks in a network for their deploy forms, weights copied.

``to_deploy`` swaps our reference blocks for their deploy twins, and (with ``mapping``) instances
of a user's own attention classes (a CBAM copied from a blog into a YOLO neck) for our deploy
forms, converting their weights through ``convert_state_dict`` and proving the swap changed
nothing before it returns. An explicit module swap, never a patch of torch (STYLE 5).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from attn_export.errors import BlockConfigError, CheckpointError
from attn_export.modules.foreign import (
    MappingValue,
    Source,
    convert_foreign,
    parse_mapping_entry,
    placed_like,
)
from attn_export.modules.registry import BLOCKS, block_class, block_info


def _reference_to_name() -> dict[type, str]:
    return {block_class(name, "reference"): name for name in BLOCKS}


def deploy_twin(block: nn.Module, name: str, **extra: Any) -> nn.Module:
    """The deploy form of a reference ``block`` of registry entry ``name``, weights copied."""
    args = dict(block.init_args)
    if block_info(name).needs_geometry:
        args.update(extra)
    twin = block_class(name, "deploy")(**args)
    twin.load_state_dict(block.state_dict(), strict=True)
    return placed_like(twin, block)


# ----------------------------------------------------------------------------------------------
# Swapping a user's own attention classes.

RANDOM_CHECK_SIZE = (9, 13)
"""H, W of the random map a swapped user module is checked on when no ``example_input`` is given:
odd and unequal, so a block that confuses H and W fails."""


@dataclass
class _Swap:
    path: str  # dotted module path, "" for the model itself
    old: nn.Module
    new: nn.Module
    name: str
    foreign: bool  # built from a user class through ``mapping`` or a recogniser
    inputs: tuple | None = None
    row: Any = None  # the recogniser's ScanRow (recognised without a mapping), else None
    output: Any = None
    parents: list[tuple[nn.Module, str]] = field(default_factory=list)


def _plan(model: nn.Module, mapping: Mapping, source: Source, geometry: dict,
          recognised: list | None = None, widths: Any = None) -> list[_Swap]:
    """Every swap to make, found top-down (the inside of a swapped module is not visited).

    With ``recognised`` (a list), modules of known third-party classes and pasted blocks are
    recognised too (``attn_export.modules.recognise``); every verdict is appended to it.
    """
    entries = {cls: parse_mapping_entry(cls, value, source) for cls, value in mapping.items()}
    ref_names = _reference_to_name()
    swaps: dict[int, _Swap] = {}

    def visit(module: nn.Module, path: str, parent: nn.Module | None, attr: str) -> None:
        swap = swaps.get(id(module))
        if swap is None and type(module) in entries:
            name, src, kwargs = entries[type(module)]
            new = convert_foreign(module, path, name, src, kwargs, geometry)
            swap = swaps[id(module)] = _Swap(path, module, new, name, foreign=True)
        elif swap is None and type(module) in ref_names:
            new = deploy_twin(module, ref_names[type(module)], **geometry)
            swap = swaps[id(module)] = _Swap(path, module, new, ref_names[type(module)], False)
        elif swap is None and recognised is not None:
            swap = _recognised(module, path, recognised, widths)
            if swap is False:
                return  # known, not swapped: its inside is part of it
            if swap is not None:
                swaps[id(module)] = swap
        if swap is not None:
            if parent is not None:
                swap.parents.append((parent, attr))
            return
        # _modules, not named_children(): that skips a second slot holding the same instance.
        for child_name, child in module._modules.items():
            if child is not None:
                visit(child, f"{path}.{child_name}" if path else child_name, module, child_name)

    visit(model, "", None, "")
    found = {type(s.old) for s in swaps.values()}
    unused = [cls.__name__ for cls in entries if cls not in found]
    if unused:
        raise BlockConfigError(
            f"mapping names {', '.join(unused)} but the model holds no module of that exact "
            "class (subclasses do not match: map each class you use); nothing was swapped"
        )
    return list(swaps.values())


def _recognised(module: nn.Module, path: str, rows: list, widths) -> _Swap | bool | None:
    """A proven swap for a recognised module, ``False`` (recognised, not swapped) or ``None``."""
    from attn_export.modules.recognise.scan import could_match, decide

    if not could_match(module):
        return None
    decision = decide(module, path, widths.get(path, 0) if widths is not None else 0)
    if decision is None:
        return None
    rows.append(decision.row)
    if decision.new is None:
        return False
    new = placed_like(decision.new, module)
    return _Swap(path, module, new, decision.row.block, foreign=True, row=decision.row)


def _tensors(out: Any) -> list[torch.Tensor]:
    """The tensors of a network output (a tensor, or lists/tuples/dicts of them)."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, Mapping):
        return [t for v in out.values() for t in _tensors(v)]
    if isinstance(out, (list, tuple)):
        return [t for v in out for t in _tensors(v)]
    return []


def _max_error(actual: Any, expected: Any, atol: float, rtol: float) -> tuple[float, bool]:
    """(max abs error, within ``|a - e| <= atol + rtol * |e|`` everywhere) over all tensors."""
    got, want = _tensors(actual), _tensors(expected)
    if len(got) != len(want) or any(g.shape != w.shape for g, w in zip(got, want)):
        return float("inf"), False
    worst, ok = 0.0, True
    for g, w in zip(got, want):
        g, w = g.detach().double(), w.detach().double()
        if g.numel():
            worst = max(worst, float((g - w).abs().nan_to_num(float("inf")).max()))
        ok = ok and torch.allclose(g, w, atol=atol, rtol=rtol, equal_nan=True)
    return worst, ok


def _clone(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a namedtuple
        return type(value)(*(_clone(v) for v in value))
    if isinstance(value, (list, tuple)):
        return type(value)(_clone(v) for v in value)
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    return value


def _capture(model: nn.Module, swaps: list[_Swap], example_input: Any) -> Any:
    """Run ``model`` once, recording each swapped module's first input and output."""

    def hooks(swap: _Swap):
        def pre(_module, args):
            if swap.inputs is None:
                swap.inputs = _clone(args)

        def post(_module, _args, output):
            if swap.output is None:
                swap.output = _clone(output)

        return pre, post

    handles = []
    for swap in swaps:
        pre, post = hooks(swap)
        handles += [swap.old.register_forward_pre_hook(pre), swap.old.register_forward_hook(post)]
    try:
        return _clone(_run(model, example_input))
    finally:
        for handle in handles:
            handle.remove()


def _run(model: nn.Module, example_input: Any) -> Any:
    args = example_input if isinstance(example_input, tuple) else (example_input,)
    with torch.no_grad():
        return model(*args)


def _random_input(swap: _Swap, geometry: dict) -> tuple:
    channels = swap.new.init_args["channels"]
    h, w = tuple(geometry.get("input_size") or RANDOM_CHECK_SIZE)
    tensor = next(iter(swap.new.parameters()), None)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, channels, h, w, generator=gen)
    if tensor is not None:
        x = x.to(device=tensor.device, dtype=tensor.dtype)
    return (x,)


def _check_modules(
    swaps: list[_Swap], geometry: dict, atol: float, rtol: float
) -> dict[str, float]:
    """Each swapped module against its replacement: on its captured input, else on a random map.

    Returns the max abs error of each module checked.
    """
    errors: dict[str, float] = {}
    for swap in swaps:
        if swap.inputs is None and (not swap.foreign or swap.row is not None):
            continue  # our block's twin (proven by its tests), or recognised (proven when found)
        where = f"{swap.path or '<model>'} ({type(swap.old).__name__} -> {swap.name!r})"
        inputs = swap.inputs if swap.inputs is not None else _random_input(swap, geometry)
        try:
            with torch.no_grad():
                expected = swap.output if swap.output is not None else swap.old(*inputs)
                actual = swap.new(*inputs)
        except Exception as exc:  # the user's module or ours failing on the input: say where
            raise CheckpointError(
                f"{where}: cannot run the check input {tuple(inputs[0].shape)} through both "
                f"modules ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); pass "
                "example_input=... (a network input) so the check uses real activations"
            ) from None
        err, ok = _max_error(actual, expected, atol, rtol)
        errors[where] = err
        if swap.row is not None:
            swap.row.real_diff = err
        if not ok:
            raise CheckpointError(
                f"{where}: outputs differ after the swap: max abs error {err:.3g} (atol={atol}, "
                f"rtol={rtol}); the module does not compute {swap.name!r} with these weights: "
                "check the mapping's source layout (see source_names) and kwargs"
            )
    return errors


def _apply(model: nn.Module, swaps: list[_Swap], revert: bool = False) -> nn.Module:
    root = model
    for swap in swaps:
        module = swap.old if revert else swap.new
        for parent, attr in swap.parents:
            setattr(parent, attr, module)
        if swap.path == "":
            root = module
    return root


def _set_modes(modes: dict[nn.Module, bool]) -> None:
    for module, training in modes.items():
        module.training = training  # not .train(): that would recurse into the children


def to_deploy(
    model: nn.Module,
    mapping: Mapping[type, MappingValue] | None = None,
    *,
    source: Source = "reference",
    check: bool = True,
    example_input: torch.Tensor | tuple | None = None,
    atol: float = 1e-5,
    rtol: float = 1e-4,
    recognise: bool = True,
    report: list | None = None,
    **geometry: Any,
) -> nn.Module:
    """Swap attention blocks inside ``model`` for our deploy forms, in place.

    Our reference blocks become their deploy twins. With ``mapping``, instances of your own
    attention classes (exact type match) become our deploy block of the mapped name: their
    state_dict is converted with ``convert_state_dict`` (or your function), the constructor kwargs
    are inferred from the weights (``HYPERPARAMS``), and the new block is put on the old one's
    device and dtype, in its train/eval mode.

    With ``check`` (the default) nothing is swapped until every swapped module of yours has been
    shown to compute the same as its replacement in eval mode (``|new - old| <= atol + rtol *
    |old|``): on its real input when ``example_input`` is given, else on a fixed-seed random
    (2, C, 9, 13) map (``input_size`` when given). With ``example_input`` the whole network's
    outputs are compared as well, and a mismatch puts the old modules back. A failure raises
    CheckpointError naming the module and the max abs error.

    With ``recognise`` (the default), modules nobody mapped are recognised as well: classes of
    timm, torchvision, Ultralytics, segmentation_models_pytorch and mmcv by module path and name,
    pasted blocks by their parameter layout (``attn_export.modules.recognise``). Each is swapped
    only if proven output-equal on random maps at two sizes; the others stay as they are.

    Args:
        model: any module; a block itself is accepted and its replacement returned.
        mapping: your class -> ``"cbam"`` (weights already in our reference layout),
            ``("cbam", "official")`` (a layout from ``source_names``), ``("cbam", fn)`` (``fn``
            maps your state_dict to our reference layout) or ``(name, source, kwargs)`` for
            kwargs the weights do not determine, e.g. ``("mhsa", "reference", {"num_heads": 4})``.
        source: the layout of plain-name mapping entries (default: our reference layout).
        check: verify the swaps before returning (see above).
        example_input: a network input (a tensor, or a tuple of positional inputs).
        atol, rtol: the allclose tolerance of the check (float32 defaults; loosen for FP16 models).
        recognise: also swap recognised third-party and pasted attention modules.
        report: a list that receives one ``ScanRow`` per recognised module (swapped or not, with
            the recogniser, the block and the proven difference).
        **geometry: ``input_size=(H, W)`` for blocks whose deploy form needs the export geometry.

    Returns:
        ``model`` with the swaps done (or the replacement, when ``model`` itself is swapped).
    """
    rows: list | None = ([] if report is None else report) if recognise else None
    widths = None
    if recognise and example_input is not None:
        from attn_export.modules.recognise.scan import LazyWidths

        widths = LazyWidths(model, example_input)
    swaps = _plan(model, mapping or {}, source, geometry, rows, widths)
    if not swaps:
        return model
    modes = {m: m.training for m in model.modules()}
    modes.update({m: s.old.training for s in swaps for m in s.new.modules()})
    try:
        for module in modes:
            module.training = False
        expected = None
        if check and example_input is not None:
            expected = _capture(model, swaps, example_input)
        errors = _check_modules(swaps, geometry, atol, rtol) if check else {}
        root = _apply(model, swaps)
        if expected is not None:
            err, ok = _max_error(_run(root, example_input), expected, atol, rtol)
            if not ok:
                _apply(model, swaps, revert=True)
                where, worst = max(errors.items(), key=lambda kv: kv[1], default=("-", 0.0))
                raise CheckpointError(
                    f"the network's output changed after the swaps: max abs error {err:.3g} "
                    f"(atol={atol}, rtol={rtol}) although each swapped module matched on its own "
                    f"input (worst: {where}, {worst:.3g}); a swapped module may be called more "
                    "than once or hold state; the original modules were put back"
                )
        return root
    finally:
        _set_modes(modes)
