"""The graphs a bench times: the one-pass floor, and a block's naive and deploy exports.

The floor is one ``Mul`` reading the input once and writing one output of the same size: no graph
over that tensor can do less, so "3.5x floor" says how many full passes a graph costs. The naive
graph is the reference form exported as published (TorchScript, opset 17: the stages
``attn-export BLOCK --variant reference`` runs); the deploy graph is what ``attn-export BLOCK`` writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

FLOOR = "floor"
NAIVE = "naive"
DEPLOY = "deploy"
BENCH_OPSET = 17


@dataclass(frozen=True)
class Graph:
    """A graph to time: its role (floor, naive, deploy, model), the file, its input name."""

    role: str
    path: Path
    input_name: str = "input"


def floor_onnx(shape: tuple[int, ...], path: str | Path, input_name: str = "input") -> Path:
    """Write the one-pass floor, ``output = input * 1.5``, for a float32 input of ``shape``."""
    import onnx
    from onnx import TensorProto, helper

    from attn_export.atomic import write_atomic
    from attn_export.export.onnx_from_torch import MAX_IR_VERSION

    scale = helper.make_tensor("scale", TensorProto.FLOAT, [], [1.5])
    node = helper.make_node("Mul", [input_name, "scale"], ["output"])
    graph = helper.make_graph(
        [node], "floor",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, list(shape))],
        initializer=[scale])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", BENCH_OPSET)])
    model.ir_version = MAX_IR_VERSION
    onnx.checker.check_model(model)
    return write_atomic(Path(path), lambda tmp: onnx.save(model, str(tmp)))


def block_onnx(block: str, shape: tuple[int, int, int, int], variant: str, folder: Path,
               kwargs: dict | None = None, seed: int = 0) -> Path:
    """Export ``block`` (``variant`` = deploy or reference) at a static ``shape`` as the CLI does:
    seeded weights, TorchScript at opset 17, onnxslim."""
    from attn_export.export.onnx_from_torch import onnx_from_torch
    from attn_export.export.pipeline import ExportRequest, resolve
    from attn_export.export.simplified_onnx import simplified_onnx
    from attn_export.export.sources import build_block

    req = resolve(ExportRequest(block=block, input_shape=tuple(shape), variant=variant,
                                kwargs=dict(kwargs or {}), seed=seed, opset=BENCH_OPSET,
                                output_dir=folder))
    module = build_block(req)
    stem = f"{block}.{variant}.{'x'.join(map(str, shape))}"
    raw = onnx_from_torch(module, req.input_shape, folder / f"{stem}.raw.onnx", BENCH_OPSET,
                          "torchscript", "none")
    return simplified_onnx(raw, folder / f"{stem}.onnx")


def block_graphs(block: str, shape: tuple[int, int, int, int], folder: Path,
                 kwargs: dict | None = None, naive: bool = True) -> list[Graph]:
    """The floor, the naive (unless ``naive`` is false) and the deploy graph of ``block``."""
    folder = Path(folder)
    tag = "x".join(map(str, shape))
    graphs = [Graph(FLOOR, floor_onnx(shape, folder / f"floor.{tag}.onnx"))]
    if naive:
        graphs.append(Graph(NAIVE, block_onnx(block, shape, "reference", folder, kwargs)))
    graphs.append(Graph(DEPLOY, block_onnx(block, shape, "deploy", folder, kwargs)))
    return graphs
