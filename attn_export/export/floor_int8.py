"""The INT8 precision floor: the float32 graph with the same quantization simulated in float.

What INT8 costs at this calibration is the float32 network with every tensor the Q/DQ graph
quantizes rounded to its calibrated INT8 grid (``clip(round(x / s), -128, 127) * s``), everything
else in float32, gates float as in our plan. The scales are read from the Q/DQ graph itself
(tensor by tensor, node by node), and the simulation is built on the *float32* graph, so it shares
no node, weight or kernel with the graph it judges: a changed constant, a dropped op, or an
integer kernel that rounds differently shows up as a distance from this floor.

The simulation runs on the float32 ONNX rather than on the PyTorch module: the calibrated scales
are keyed by ONNX tensor names, and the module is gone by the time the INT8 graph is calibrated
(a later ``attn-export`` step); on the same tensors the two computations are the same arithmetic.

The contrast (``meta["floor"]["int8"]["contrast"]``) is the same simulation of a graph calibrated
with the gates quantized too: the cost of quantizing the gates (F2) on this network.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from attn_export.runtime.floor import FLOOR_KINDS, floor_point
from attn_export.runtime.golden import Golden

INT8_MIN, INT8_MAX = -128, 127


def _constant(model, name: str) -> np.ndarray | None:
    from onnx import numpy_helper

    for tensor in model.graph.initializer:
        if tensor.name == name:
            return numpy_helper.to_array(tensor)
    for node in model.graph.node:
        if node.op_type == "Constant" and name in node.output:
            return numpy_helper.to_array(node.attribute[0].t)
    return None


def quantized_inputs(qdq) -> dict[tuple[str, int], tuple[np.ndarray, int, str]]:
    """``{(node name, input index): (scale, axis, source tensor)}`` for every input of a non-Q/DQ
    node of the Q/DQ graph that reads a DequantizeLinear (the source: what was quantized)."""
    producers = {o: n for n in qdq.graph.node for o in n.output}
    found = {}
    for node in qdq.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        for i, name in enumerate(node.input):
            dq = producers.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            scale = _constant(qdq, dq.input[1])
            axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
            q = producers.get(dq.input[0])
            source = q.input[0] if q is not None and q.op_type == "QuantizeLinear" else dq.input[0]
            if scale is not None:
                found[(node.name, i)] = (np.asarray(scale, np.float32), axis, source)
    return found


def _fake_quant_array(values: np.ndarray, scale: np.ndarray, axis: int) -> np.ndarray:
    if scale.ndim == 1 and scale.size > 1:
        shape = [1] * values.ndim
        shape[axis] = scale.size
        scale = scale.reshape(shape)
    return (np.clip(np.round(values / scale), INT8_MIN, INT8_MAX) * scale).astype(np.float32)


def fake_quant_model(fp32, qdq):
    """A copy of the float32 graph with the Q/DQ graph's quantization simulated in float."""
    import onnx
    from onnx import helper, numpy_helper

    from attn_export.export.fp16_from_onnx import name_nodes

    model = onnx.ModelProto()
    model.CopyFrom(fp32)
    name_nodes(model.graph)
    plan = quantized_inputs(qdq)
    nodes, added = [], []
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            entry = plan.get((node.name, i))
            if entry is None or not name:
                continue
            scale, axis, _ = entry
            tag = f"{name}__fq__{node.name}__{i}"
            weight = _constant(model, name)
            if weight is not None and weight.dtype.kind == "f":
                added.append(numpy_helper.from_array(_fake_quant_array(weight, scale, axis), tag))
            else:
                s = numpy_helper.from_array(np.asarray(scale.reshape(()), np.float32), tag + "_s")
                lo = numpy_helper.from_array(np.array(INT8_MIN, np.float32), tag + "_lo")
                hi = numpy_helper.from_array(np.array(INT8_MAX, np.float32), tag + "_hi")
                added += [s, lo, hi]
                nodes += [helper.make_node("Div", [name, s.name], [tag + "_d"], name=tag + "/Div"),
                          helper.make_node("Round", [tag + "_d"], [tag + "_r"], name=tag + "/Round"),
                          helper.make_node("Clip", [tag + "_r", lo.name, hi.name], [tag + "_c"],
                                           name=tag + "/Clip"),
                          helper.make_node("Mul", [tag + "_c", s.name], [tag], name=tag + "/Mul")]
            node.input[i] = tag
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(added)
    return model


def _simulated(fp32_path: Path, qdq_path: Path, golden: Golden) -> dict:
    import onnx
    import onnxruntime as ort

    sim = fake_quant_model(onnx.load(str(fp32_path)), onnx.load(str(qdq_path)))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(sim.SerializeToString(), sess_options=options,
                                   providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    kind = FLOOR_KINDS["int8"]
    from attn_export.runtime.compare import tolerance_for

    atol = tolerance_for("int8").atol
    cases = {}
    for case in golden.cases:
        outs = dict(zip(names, session.run(names, {k: v.astype(np.float32)
                                                   for k, v in case.inputs.items()})))
        cases[case.name] = {name: floor_point(outs[name], expected, kind, atol)
                            for name, expected in case.outputs.items() if name in outs}
    return cases


def record_int8_floor(golden: Golden, fp32_path: str | Path, qdq_path: str | Path,
                      gates_quantized: Callable[[Path], Path] | None = None) -> dict:
    """Simulate the Q/DQ graph's quantization on the float32 graph and store it in
    ``golden.meta["floor"]["int8"]``; ``gates_quantized(folder)`` writes a Q/DQ graph calibrated
    with the gates quantized into ``folder`` and returns its path (the contrast)."""
    import tempfile

    entry: dict = {"kind": FLOOR_KINDS["int8"], "cases": _simulated(Path(fp32_path),
                                                                    Path(qdq_path), golden)}
    if gates_quantized is not None:
        with tempfile.TemporaryDirectory() as tmp:
            entry["contrast"] = _simulated(Path(fp32_path), gates_quantized(Path(tmp)), golden)
            entry["contrast_kind"] = "fake-quant-int8, gates quantized"
    golden.meta.setdefault("floor", {})["int8"] = entry
    return entry
