"""ONNX -> TensorRT network (Polygraphy's ``network_from_onnx``), with parser errors that name the
node: ``node NAME (OP): DESC``, name and op read from the ONNX graph where a binding lacks them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from attn_export.errors import ExportError
from attn_export.export.trt_build.settings import BuilderSettings
from attn_export.runtime.trt_logger import capture_log, get_trt_logger


def describe_parser_error(nodes: Sequence[tuple[str, str]], index: int, desc: str,
                          node_name: str = "", node_op: str = "") -> str:
    """One parser error as ``node NAME (OP): DESC``; name and op from the ONNX graph when the
    TensorRT binding does not give them (``ParserError.node_name`` exists from TensorRT 10)."""
    if not node_name and 0 <= index < len(nodes):
        node_name = nodes[index][0]
    if not node_op and 0 <= index < len(nodes):
        node_op = nodes[index][1]
    if not node_name and not node_op:
        return desc.strip()
    return f"node {node_name or f'#{index}'} ({node_op or '?'}): {desc.strip()}"


def parser_errors(parser, graph_path: Path) -> list[str]:
    import onnx

    model = onnx.load(str(graph_path), load_external_data=False)
    nodes = [(n.name, n.op_type) for n in model.graph.node]
    messages = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        name = err.node_name() if hasattr(err, "node_name") else ""
        op = err.node_operator() if hasattr(err, "node_operator") else ""
        messages.append(describe_parser_error(nodes, int(err.node()), str(err.desc()), name, op))
    return messages


def network_from_onnx(trt, builder, settings: BuilderSettings, graph_path: Path):
    """A network with ``settings.network_flags``, parsed from ``graph_path``; returns (network,
    parser): the parser owns the weights the network points at, so it must outlive the build.

    Raises:
        ExportError: the parser refused the graph (up to five errors, each naming its node).
    """
    flags = 0
    for name in settings.network_flags:
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, get_trt_logger(trt))
    with capture_log(trt) as log:
        parsed = parser.parse_from_file(str(graph_path))
    if not parsed:
        errors = parser_errors(parser, graph_path) or log.errors() or ["no reason given"]
        raise ExportError(f"TensorRT {trt.__version__} cannot parse {graph_path.name}: "
                          + "; ".join(errors[:5]))
    return network, parser
