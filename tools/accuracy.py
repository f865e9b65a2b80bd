"""``make accuracy``: top-1 of the trained digits network at every precision, and the baseline.

    python tools/accuracy.py [--limit N] [--markdown docs/accuracy.md]

The network (``attn_export/models/digits.py``, CBAM + SE + CBAM, weights committed) is measured
on its 397 held-out images in PyTorch fp32, then exported the way ``attn-export model`` exports
it (deploy forms, torchscript at opset 17, dynamic batch, onnxslim) and run on ONNX Runtime as
FP32, FP16, INT8 with the attention gates float (our plan, F2) and INT8 with the gates quantized,
all calibrated on 64 training images. Beside them, what a user gets from plain ONNX Runtime
static quantization of the reference export: its default op set, a ModelOpt-like set
(Conv/Gemm/MatMul/Add/Mul/pools, Sigmoid excluded), and Conv/Gemm only.

Every figure is measured when the command runs; nothing is written by hand. ``--markdown``
rewrites the table between the markers in that file.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CALIB_SAMPLES = 64
BEGIN, END = "<!-- accuracy-table:begin -->", "<!-- accuracy-table:end -->"
MODELOPT_LIKE = ["Conv", "Gemm", "MatMul", "Add", "Mul", "AveragePool", "GlobalAveragePool",
                 "MaxPool"]


def _session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_logits(path: Path, x: np.ndarray) -> np.ndarray:
    session = _session(path)
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[i:i + 128]})[0]
                           for i in range(0, len(x), 128)])


def row(label: str, what: str, logits: np.ndarray, labels: np.ndarray, base: np.ndarray) -> Row:
    """Top-1, agreement of the arg-max with PyTorch fp32, and the logits' relative L2 distance."""
    from attn_export.models.digits import top1

    agree = float((logits.argmax(1) == base.argmax(1)).mean())
    rel_l2 = float(np.linalg.norm(logits - base) / max(np.linalg.norm(base), 1e-30))
    return Row(label, what, top1(logits, labels), agree, rel_l2)


def export_pair(net, folder: Path) -> tuple[Path, Path]:
    """(deploy export, reference export), each simplified as ``attn-export model`` does."""
    import torch

    from attn_export.export.onnx_from_torch import onnx_from_torch
    from attn_export.export.simplified_onnx import simplified_onnx
    from attn_export.modules import to_deploy

    paths = []
    for label, module in (("deploy", to_deploy(copy.deepcopy(net),
                                               example_input=torch.zeros(2, 1, 32, 32))),
                          ("reference", net)):
        raw = onnx_from_torch(module, (1, 1, 32, 32), folder / f"{label}.raw.onnx", 17,
                              dynamic="batch")
        paths.append(simplified_onnx(raw, folder / f"{label}.onnx"))
    return paths[0], paths[1]


@dataclass(frozen=True)
class Row:
    label: str
    what: str
    top1: float
    agreement: float
    rel_l2: float


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over one batch of calibration images."""

    def __init__(self, name: str, batch: np.ndarray) -> None:
        self.feeds = [{name: batch}]

    def get_next(self):
        return self.feeds.pop() if self.feeds else None


def ort_static(reference: Path, out: Path, calib: np.ndarray, op_types: list[str] | None) -> Path:
    """Plain ``quantize_static`` with ONNX Runtime's defaults, but for the op set."""
    import logging

    from onnxruntime.quantization import quantize_static

    name = _session(reference).get_inputs()[0].name
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its "consider pre-processing" advice, twice per call
    try:
        quantize_static(str(reference), str(out), _Reader(name, calib),
                        op_types_to_quantize=op_types)
    finally:
        root.setLevel(level)
    return out


def measure(limit: int | None = None, progress=print) -> list[Row]:
    """One row per graph, PyTorch fp32 first."""
    import torch

    from attn_export.export.precision import write_fp16_onnx, write_int8_onnx
    from attn_export.models.digits import digits_net, digits_split

    x_train, _, x_test, y_test = digits_split()
    if limit:
        x_test, y_test = x_test[:limit], y_test[:limit]
    calib = x_train[:CALIB_SAMPLES]
    net = digits_net(pretrained=True)
    with torch.no_grad():
        base = net(torch.from_numpy(x_test)).numpy()
    rows = [row("PyTorch fp32", "the trained network", base, y_test, base)]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "calib").mkdir()
        np.save(folder / "calib" / "train.npy", calib)
        progress("exporting the deploy and reference graphs")
        deploy, reference = export_pair(net, folder)
        graphs = [("ONNX fp32", "deploy export, ONNX Runtime", deploy)]
        write_fp16_onnx(deploy, folder / "fp16.onnx", sample_feeds=[{"input": calib}])
        graphs.append(("ONNX fp16", "our FP16 graph", folder / "fp16.onnx"))
        for gates, label in ((False, "INT8, gates float"), (True, "INT8, gates quantized")):
            out = folder / f"int8_{gates}.onnx"
            progress(f"quantizing: {label}")
            write_int8_onnx(deploy, out, calib_data=folder / "calib", quantize_gates=gates)
            graphs.append((label, "our plan" if not gates else "our plan with F2 overridden",
                           out))
        for label, ops in (("ORT default", None), ("ORT ModelOpt-like", MODELOPT_LIKE),
                           ("ORT Conv/Gemm", ["Conv", "Gemm"])):
            progress(f"quantizing: {label}")
            out = ort_static(reference, folder / f"{label.replace(' ', '_').replace('/', '_')}.onnx",
                             calib, ops)
            what = ("plain quantize_static of the reference export, "
                    + ("its default op set" if ops is None else ", ".join(ops)))
            graphs.append((label, what, out))
        for label, what, path in graphs:
            rows.append(row(label, what, onnx_logits(path, x_test), y_test, base))
    return rows


def markdown(rows: list[Row], held_out: int) -> str:
    lines = [f"| graph | what it is | top-1 ({held_out} held out) | vs fp32 | same answer as "
             "fp32 | logits rel L2 |", "|---|---|---|---|---|---|"]
    base = rows[0].top1
    for r in rows:
        lines.append(f"| {r.label} | {r.what} | {r.top1 * 100:.2f}% | {(r.top1 - base) * 100:+.2f} "
                     f"| {r.agreement * 100:.2f}% | {r.rel_l2:.2e} |")
    return "\n".join(lines)


def write_markdown(path: Path, table: str) -> None:
    text = path.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{path} has no {BEGIN} ... {END} markers to put the table between")
    head, rest = text.split(BEGIN, 1)
    path.write_text(f"{head}{BEGIN}\n{table}\n{END}{rest.split(END, 1)[1]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, help="measure on the first N held-out images only")
    parser.add_argument("--markdown", type=Path, help="write the table into this file's markers")
    args = parser.parse_args()
    start = time.perf_counter()
    rows = measure(args.limit, progress=lambda m: print(f"[accuracy] {m}", file=sys.stderr))
    held_out = args.limit or 397
    table = markdown(rows, held_out)
    print(table)
    print(f"(measured in {time.perf_counter() - start:.0f} s)", file=sys.stderr)
    if args.markdown:
        write_markdown(args.markdown, table)


if __name__ == "__main__":
    main()
