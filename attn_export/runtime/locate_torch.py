"""``validate --locate`` against PyTorch: the first module whose ONNX output leaves its bound.

An ONNX graph and the module it was exported from share no node-level reference, but the exporter
names every node after the module that made it (:func:`attn_export.runtime.locate.module_path`).
Each module's output is captured with a forward hook and compared with the ONNX tensor of the last
node of that module's scope with the same shape. Hooks fire when a module *finishes*, so children
come before their parent: the first module, in that order, whose output leaves the bound is the
innermost one where the error starts (a changed constant in a Conv shows in that Conv; one in a
block's own arithmetic shows in the block). Needs torch (imported lazily).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from attn_export.errors import ValidationError
from attn_export.runtime.locate import (
    LOCAL_BOUND,
    Location,
    NodeError,
    _load,
    _rel_l2,
    block_of,
    module_path,
    run_all_tensors,
)


def _captured(module, args) -> tuple[list[str], dict, dict]:
    """Run ``module`` once with hooks: module paths in completion order, outputs, input ranges."""
    import torch

    order: list[str] = []
    outputs: dict[str, np.ndarray] = {}
    ranges: dict[str, list[float]] = {}
    handles = []

    def hook(name):
        def record(_mod, inputs, out):
            if name in outputs:
                return  # a module called twice: its first call is the one located
            out = out[0] if isinstance(out, (tuple, list)) else out
            if not isinstance(out, torch.Tensor) or not out.is_floating_point():
                return
            order.append(name)
            outputs[name] = out.detach().float().numpy().copy()
            first = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
            if first is not None and first.is_floating_point() and first.numel():
                ranges[name] = [float(first.min()), float(first.max())]
        return record

    for name, sub in module.named_modules():
        if name:
            handles.append(sub.register_forward_hook(hook(name)))
    try:
        with torch.inference_mode():
            module(*args)
    finally:
        for handle in handles:
            handle.remove()
    return order, outputs, ranges


def locate_against_torch(onnx_path: str | Path, module, feed: Mapping[str, np.ndarray],
                         input_names: Sequence[str], precision: str = "fp32", case: str = "",
                         blocks: Sequence[str] = (), prepare=None) -> Location:
    """Find the first module whose ONNX output differs from PyTorch's beyond the bound.

    Args:
        onnx_path: the graph judged (any precision; ``prepare`` rounds FP16).
        module: the PyTorch module it was exported from (eval mode, same weights).
        feed: one golden input; ``input_names``: the module's positional inputs, in order.
        precision: the bound (:data:`attn_export.runtime.locate.LOCAL_BOUND`); the error here is
            accumulated, so FP16/INT8 graphs are better located against their FP32 sibling.
        case / blocks / prepare: as for :func:`attn_export.runtime.locate.locate_against_onnx`.
    """
    import torch

    model = _load(onnx_path)
    run = prepare(model) if prepare else model
    values = run_all_tensors(run, feed)
    args = [torch.from_numpy(np.ascontiguousarray(feed[n], dtype=np.float32))
            for n in input_names]
    order, outputs, ranges = _captured(module.eval(), args)
    scopes: dict[str, list] = {}
    for node in model.graph.node:
        path = module_path(node)
        while path:
            scopes.setdefault(path, []).append(node)
            path = path.rsplit(".", 1)[0] if "." in path else ""
    bound = LOCAL_BOUND.get(precision, LOCAL_BOUND["fp32"])
    errors: list[NodeError] = []
    for name in order:
        node = _output_node(scopes.get(name, []), values, outputs[name].shape)
        if node is None:
            continue
        acc, max_abs = _rel_l2(values[node.output[0]], outputs[name])
        errors.append(NodeError(node.name, node.op_type, name, acc, max_abs, acc))
    if not errors:
        raise ValidationError(f"no node of {onnx_path} maps to a module of the given network "
                              "(node names carry no module paths); export it with attn-export")
    bad = next((e for e in errors if e.rel_l2 > bound), None)
    first = _own_first_node(scopes.get(bad.module_path, []), bad.module_path) if bad else None
    return Location(
        first.name if first else None, first.op_type if first else None,
        bad.module_path if bad else None,
        {"input": ranges[bad.module_path]} if bad and bad.module_path in ranges else {},
        errors, block_of(bad.module_path, blocks) if bad else None,
        f"{Path(onnx_path).name} vs PyTorch", case, bound, bad.rel_l2 if bad else None, errors)


def _output_node(nodes: list, values: Mapping[str, np.ndarray], shape: tuple):
    """The last node of a module's scope whose first output has the module output's shape."""
    for node in reversed(nodes):
        out = values.get(node.output[0]) if node.output else None
        if out is not None and tuple(np.shape(out)) == tuple(shape) and \
                np.asarray(out).dtype.kind == "f":
            return node
    return None


def _own_first_node(nodes: list, path: str):
    """The module's first own op (not a child's); a leaf module's first node."""
    own = [n for n in nodes if module_path(n) == path]
    return (own or nodes or [None])[0]
