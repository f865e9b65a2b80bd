"""The export check the block tests share: export a block to ONNX, refuse forbidden ops, then run the
graph in ONNX Runtime at sizes other than the export shape and compare with the block in PyTorch."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch

from attn_export.export.check import load_onnx, op_types
from attn_export.export.onnx_from_torch import onnx_from_torch
from attn_export.runtime.onnxruntime_runner import OnnxRuntimeRunner


def graph_ops(path: str | Path, forbidden: Iterable[str] = ()) -> dict[str, int]:
    """Op type -> count of the graph at ``path``, failing if any op in ``forbidden`` is there."""
    ops = op_types(load_onnx(path))
    found = sorted(set(forbidden) & set(ops))
    assert not found, f"forbidden ops {found} in {Path(path).name}; its ops: {ops}"
    return ops


def compare_onnx(
    block: torch.nn.Module,
    path: str | Path,
    inputs: Sequence,
    *,
    make_input: Callable[..., torch.Tensor] = torch.randn,
    forbidden: Iterable[str] = (),
    atol: float = 1e-5,
    rtol: float = 1e-5,
) -> dict[str, int]:
    """Check the ONNX file at ``path`` against ``block``; returns its op-type counts.

    Each entry of ``inputs`` (an NCHW shape unless ``make_input`` reads it otherwise) becomes a
    tensor through ``make_input`` (default ``torch.randn``) just before it runs; ONNX Runtime's
    output must match ``block(x)`` under ``torch.no_grad()`` to ``atol``/``rtol``. An empty
    ``inputs`` only checks the ops and opens no session.
    """
    ops = graph_ops(path, forbidden)
    if not inputs:
        return ops
    with OnnxRuntimeRunner(path, ["CPUExecutionProvider"]) as runner:
        input_name = runner.input_spec()[0].name
        output_name = runner.output_names()[0]
        for spec in inputs:
            x = make_input(spec)
            got = torch.from_numpy(runner.infer({input_name: x.numpy()})[output_name])
            with torch.no_grad():
                want = block(x)
            torch.testing.assert_close(got, want, atol=atol, rtol=rtol,
                                       msg=lambda m, s=tuple(x.shape): f"ORT vs torch at {s}: {m}")
    return ops


def export_and_compare(
    block: torch.nn.Module,
    tmp_path: Path,
    export_shape: tuple[int, int, int, int],
    inputs: Sequence,
    *,
    exporter: str = "torchscript",
    opset: int = 17,
    dynamic: str = "all",
    forbidden: Iterable[str] = (),
    atol: float = 1e-5,
    rtol: float = 1e-5,
    make_input: Callable[..., torch.Tensor] = torch.randn,
    filename: str = "block.onnx",
) -> dict[str, int]:
    """Export ``block`` at ``export_shape`` to ``tmp_path / filename``, then ``compare_onnx``."""
    path = onnx_from_torch(block, export_shape, Path(tmp_path) / filename, opset=opset,
                           exporter=exporter, dynamic=dynamic)
    return compare_onnx(block, path, inputs, make_input=make_input, forbidden=forbidden,
                        atol=atol, rtol=rtol)
