"""The FP16 / BF16 precision floor: the same module run in PyTorch at reduced precision.

PyTorch's CPU float16 and bfloat16 kernels (torch >= 2.3) run the whole module in that format:
its distance from the float32 golden output on the same inputs is what the precision costs on this
network, computed independently of our ONNX graph (see :mod:`attn_export.runtime.floor` for how a
graph is judged against it and where it is recorded).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence

import numpy as np

from attn_export.runtime.floor import FLOOR_KINDS, floor_point
from attn_export.runtime.golden import Golden

TORCH_DTYPES = {"fp16": "float16", "bf16": "bfloat16"}


def float_floor_from_torch(module, golden: Golden, input_names: Sequence[str],
                           precision: str = "fp16") -> dict:
    """Run ``module`` in ``precision`` (fp16 or bf16) on every golden case and measure its
    distance from the float32 outputs.

    Returns:
        The ``meta["floor"][precision]`` entry: ``{"kind", "cases": {case: {output: point}}}``,
        or ``{"kind", "unavailable": reason}`` when PyTorch has no CPU kernel in that dtype for
        one of the module's ops (the verdict then falls back to the fixed tolerance table).
    """
    import torch

    from attn_export.runtime.compare import tolerance_for

    dtype = getattr(torch, TORCH_DTYPES[precision])
    kind = FLOOR_KINDS[precision]
    atol = tolerance_for("fp16").atol  # bf16 has no row of its own; fp16's keeps factors comparable
    low = copy.deepcopy(module).eval().to(dtype)
    cases: dict[str, dict] = {}
    try:
        for case in golden.cases:
            args = [torch.from_numpy(np.ascontiguousarray(case.inputs[n])).to(dtype)
                    for n in input_names]
            with torch.inference_mode(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = low(*args)
            outs = out if isinstance(out, (tuple, list)) else (out,)
            cases[case.name] = {
                name: floor_point(o.float().numpy(), case.outputs[name], kind, atol)
                for name, o in zip(case.outputs, outs)}
    except (RuntimeError, TypeError) as exc:  # "not implemented for 'Half'"
        return {"kind": kind, "unavailable": str(exc).splitlines()[0][:200]}
    return {"kind": kind, "cases": cases}


def record_float_floors(module, golden: Golden, input_names: Sequence[str],
                        precisions: Sequence[str] = ("fp16",)) -> None:
    """Store the floors in ``golden.meta["floor"]`` (the golden file then carries them)."""
    floors = golden.meta.setdefault("floor", {})
    for precision in precisions:
        floors[precision] = float_floor_from_torch(module, golden, input_names, precision)
