"""`make int8-gate-plans`: a CBAM-augmented YOLO at INT8, our plan against Ultralytics' own.

Ultralytics' INT8 export (ModelOpt on TensorRT 11, its calibrator before) keeps only the detection
head's Sigmoid out of INT8, so the attention gates of a CBAM-augmented YOLO are quantized. This
builds YOLOv8n with Ultralytics' CBAM after each backbone C2f stage (seeded weights and BatchNorm
statistics, no download), exports it with ``attn-export model`` (CBAMs recognised, swapped,
proven), and quantizes the same FP32 graph on the same calibration set two ways, both with ONNX
Runtime's static quantization and the same TensorRT Q/DQ options:

* ours: F2, every attention gate and its multiply float (plus GEMVs and mean convs);
* ultralytics: every node of the quantized op types in INT8 except the head's class Sigmoid.

It prints the gate error of each CBAM (max |gate_int8 - gate_fp32| over the calibration inputs,
the same measure ``model --precision int8`` reports) and the output cosine of each plan.

    python tools/int8_gate_plans.py [--size 128] [--samples 16] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAD_SIGMOID = re.compile(r"^/model/model\.\d+/Sigmoid(_\d+)?$")
"""The Detect head's class-score Sigmoid (``cls.sigmoid()`` in ``Detect._inference``): a node
directly in the head's scope, not inside one of its convolutions (those are SiLU's)."""


def _quantize_ultralytics(fp32: Path, out: Path, feeds: list) -> list[str]:
    """Ultralytics' plan: the quantized op types everywhere but the head's Sigmoid."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from attn_export.export.fp16_from_onnx import name_nodes
    from attn_export.export.int8_from_onnx import QUANTIZED_OP_TYPES, TRT_QDQ_OPTIONS, FeedReader

    model = onnx.load(str(fp32))
    name_nodes(model.graph)
    head = [n.name for n in model.graph.node if n.op_type == "Sigmoid" and
            HEAD_SIGMOID.match(n.name)]
    options = dict(TRT_QDQ_OPTIONS)
    options["OpTypesToExcludeOutputQuantization"] = sorted({n.op_type for n in model.graph.node})
    quantize_static(model, str(out), FeedReader(feeds), quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=list(QUANTIZED_OP_TYPES), per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    nodes_to_exclude=head, calibrate_method=CalibrationMethod.MinMax,
                    extra_options=options)
    return head


def _cosine(fp32: Path, int8: Path, feeds: list) -> float:
    import numpy as np
    import onnxruntime as ort

    a = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"])
    worst = 1.0
    for feed in feeds:
        x, y = a.run(None, feed)[0].ravel(), b.run(None, feed)[0].ravel()
        worst = min(worst, float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y) + 1e-30)))
    return worst


def compare_plans(size: int = 128, samples: int = 16, workdir: Path | None = None) -> dict:
    """Export the CBAM YOLO and measure both plans; returns the figures."""
    sys.path.insert(0, str(ROOT))
    from attn_export.export.check import load_onnx
    from attn_export.export.int8_from_onnx import int8_from_onnx, seeded_calibration_feeds
    from attn_export.export.network_precision import network_proxies
    from attn_export.export.pipeline import export, resolve
    from attn_export.export.profiles import onnx_input_specs
    from attn_export.export.request import network_request

    workdir = Path(workdir or tempfile.mkdtemp(prefix="int8-gate-plans-"))
    result = export(resolve(network_request(str(ROOT / "tests/recognise/nets.py:yolo_cbam"),
                                            input_shape=(1, 3, size, size), output_dir=workdir)))
    blocks = [s.path for s in result.swaps]
    specs = onnx_input_specs(load_onnx(result.onnx_path))
    feeds = seeded_calibration_feeds(specs, {specs[0].name: (1, 3, size, size)}, count=samples)
    ours = workdir / "ours.int8.onnx"
    theirs = workdir / "ultralytics.int8.onnx"
    int8_from_onnx(result.onnx_path, ours, feeds, "seeded")
    head = _quantize_ultralytics(result.onnx_path, theirs, feeds)
    figures = {"blocks": blocks, "head_sigmoids_excluded": head, "samples": samples,
               "input": [1, 3, size, size]}
    for plan, path in (("ours", ours), ("ultralytics", theirs)):
        errors, _ = network_proxies(result.onnx_path, path, feeds, blocks, classify=False)
        figures[plan] = {"gate_error": errors, "cosine": _cosine(result.onnx_path, path, feeds)}
    return figures


def format_figures(f: dict) -> str:
    width = max(len(b) for b in f["blocks"])
    lines = [f"CBAM-YOLOv8n {'x'.join(map(str, f['input']))}, {f['samples']} seeded calibration "
             f"inputs; Ultralytics' plan excludes only {', '.join(f['head_sigmoids_excluded'])}",
             f"{'gate error of':<{width}}  {'ours (F2)':>10}  {'ultralytics':>11}  ratio"]
    for block in f["blocks"]:
        a, b = f["ours"]["gate_error"].get(block), f["ultralytics"]["gate_error"].get(block)
        ratio = f"{b / a:.1f}x" if a and b else "-"
        lines.append(f"{block:<{width}}  {a:>10.3g}  {b:>11.3g}  {ratio}")
    lines.append(f"{'output cosine':<{width}}  {f['ours']['cosine']:>10.6f}  "
                 f"{f['ultralytics']['cosine']:>11.6f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    figures = compare_plans(args.size, args.samples)
    print(format_figures(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
