"""``to_deploy`` on a whole network, with the difference each swap made recorded for the report.

``to_deploy`` proves the network's output unchanged (and each user block on its own input); this
adds the per-block record a deployment review asks for: which block sat where, what replaced it,
and the largest difference the replacement makes on the activations that really reach it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from attn_export.modules.registry import BLOCKS, block_class


@dataclass(frozen=True)
class SwapRecord:
    """One attention block: where, what it was, what it became, and the difference it made.

    Catalog blocks are always swapped; a recognised third-party or pasted module
    (``recogniser`` other than ``catalog``) is swapped only when proven equal, and otherwise
    recorded with ``swapped=False`` and the reason: its gates are still kept float in INT8.
    """

    path: str
    block: str
    reference: str
    deploy: str
    max_abs_diff: float | None  # None: the example input never reaches the block
    recogniser: str = "catalog"
    swapped: bool = True
    reason: str = ""

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def reference_blocks(model: nn.Module) -> dict[str, tuple[nn.Module, str]]:
    """Every reference block of the catalog in ``model``, by dotted path (outermost only)."""
    classes = {block_class(name, "reference"): name for name in BLOCKS}
    found: dict[str, tuple[nn.Module, str]] = {}

    def visit(module: nn.Module, path: str) -> None:
        if type(module) in classes:
            found[path] = (module, classes[type(module)])
            return
        for child_name, child in module.named_children():
            visit(child, f"{path}.{child_name}" if path else child_name)

    visit(model, "")
    return found


def _capture(model: nn.Module, blocks: dict, example: torch.Tensor):
    seen: dict[str, tuple] = {}
    handles = []
    for path, (module, _) in blocks.items():
        def hook(_m, args, output, path=path):
            seen.setdefault(path, (tuple(a.detach().clone() for a in args), output.detach().clone()))

        handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            out = model(example)
    finally:
        for h in handles:
            h.remove()
    return out, seen


def deploy_with_report(model: nn.Module, example: torch.Tensor, atol: float = 1e-5,
                       rtol: float = 1e-4, mapping=None) -> tuple[nn.Module, list[SwapRecord],
                                                                   float]:
    """Swap every reference block of ``model`` for its deploy twin, proven equal.

    ``atol`` is relative to the output's largest magnitude: a deploy twin reorders float32 sums,
    and after fifty layers that moves every logit by a few ulps of the largest one, so an absolute
    1e-5 would fail a logit near zero of a network whose logits reach 50 (measured: 5e-5 on
    SimAM-ResNet-50 with seeded weights, 7.6e-6 per block).

    Returns:
        The deployed model, one record per catalog block and per recognised module (its
        difference on its real input), and the largest difference of the network's output.
        ``mapping`` is ``to_deploy``'s (your class -> block).
    """
    from attn_export.modules.swap import to_deploy

    model = model.eval()
    blocks = reference_blocks(model)
    before, seen = _capture(model, blocks, example)
    scale = max(1.0, float(before.abs().max())) if isinstance(before, torch.Tensor) else 1.0
    rows: list = []
    deployed = to_deploy(model, mapping, example_input=example, atol=atol * scale, rtol=rtol,
                         report=rows)
    records = []
    with torch.no_grad():
        for path, (old, name) in blocks.items():
            new = deployed.get_submodule(path) if path else deployed
            args, expected = seen.get(path, (None, None))
            diff = None if args is None else float((new(*args) - expected).abs().max())
            records.append(SwapRecord(path, name, type(old).__name__, type(new).__name__, diff))
        after = deployed(example)
    records += [_recognised_record(deployed, row) for row in rows]
    changed = bool(blocks) or any(r.swapped for r in records)
    return deployed, records, float((after - before).abs().max()) if changed else 0.0


def _recognised_record(deployed: nn.Module, row) -> SwapRecord:
    """A recognised module's record: what it became, or why it was left as it is."""
    cls = row.cls.rsplit(".", 1)[-1]
    if not row.swapped:
        return SwapRecord(row.path, row.block, cls, "-", None, row.recogniser, False, row.reason)
    new = deployed.get_submodule(row.path) if row.path else deployed
    diff = row.real_diff if row.real_diff is not None else row.max_abs_diff
    return SwapRecord(row.path, row.block, cls, type(new).__name__, diff, row.recogniser)


def format_swap_records(records: list[SwapRecord], network_diff: float) -> str:
    """The swap table ``attn-export model`` prints: every attention module found, the recogniser
    that matched, what it became and the difference, and the ones left as they are (why)."""
    if not records:
        return ("no attention block found in the network: nothing swapped (`attn-export scan` "
                "lists what looks like attention; --map CLASS=BLOCK names one)")
    width = max(len(r.path or "<model>") for r in records)
    lines = [f"{'block at':<{width}}  {'reference -> deploy':<40}  {'recogniser':<11}  max |diff|"]
    for r in records:
        change = f"{r.reference} -> {r.deploy}" if r.swapped else f"{r.reference} (kept)"
        diff = r.reason if not r.swapped else "not reached (unused on this input)" \
            if r.max_abs_diff is None else f"{r.max_abs_diff:.3g}"
        lines.append(f"{r.path or '<model>':<{width}}  {change:<40}  {r.recogniser:<11}  {diff}")
    swapped = sum(r.swapped for r in records)
    kept = len(records) - swapped
    lines.append(f"{swapped} blocks swapped" + (f", {kept} kept as they are (their gates stay "
                                                "float in INT8)" if kept else "")
                 + f"; network output max |diff| {network_diff:.3g}")
    return "\n".join(lines)
