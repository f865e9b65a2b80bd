"""torch -> ONNX with either exporter, refusing what an exporter cannot honour instead of hiding it.

Default exporter: ``torchscript``. Measured on torch 2.13 (see docs/compatibility.md): it emits
exactly the requested opset from 11 to 21, while the dynamo exporter builds opset 18 and converts
down; that conversion fails for ``ReduceMean``/``ReduceMax`` (axes moved from attribute to input),
which every attention block uses, and the dynamo exporter then silently keeps opset 18. We detect
that and raise.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import warnings
from pathlib import Path

from attn_export.atomic import write_atomic
from attn_export.errors import ExportError, ShapeModeError

OPSETS = range(11, 22)
EXPORTERS = ("torchscript", "dynamo")
DEFAULT_EXPORTER = "torchscript"
DYNAMO_NATIVE_OPSET = 18
INPUT_NAME, OUTPUT_NAME = "input", "output"
MAX_IR_VERSION = 10  # onnxruntime 1.31 reads IR <= 13; opset 21 needs IR 10; onnx 1.23 writes 14


def check_opset(opset: int, exporter: str = DEFAULT_EXPORTER) -> None:
    """Refuse an opset or exporter outside what we export and test."""
    if exporter not in EXPORTERS:
        raise ExportError(f"unknown exporter {exporter!r}; expected one of {', '.join(EXPORTERS)}")
    if opset not in OPSETS:
        raise ExportError(
            f"opset {opset} is out of range; expected {OPSETS.start}..{OPSETS.stop - 1} "
            "(TensorRT 8.5+ parses 11..17, 10.x up to 20)"
        )


def dynamic_dims(dynamic: str) -> dict[int, str]:
    """Axis -> symbolic name of the input dims that ``dynamic`` frees."""
    modes = {"none": {}, "batch": {0: "N"}, "all": {0: "N", 2: "H", 3: "W"}}
    if dynamic not in modes:
        raise ShapeModeError(f"unknown shape mode {dynamic!r}; expected one of none, batch, all")
    return modes[dynamic]


def _trace_shape(shape: tuple[int, ...], dynamic: str) -> tuple[int, ...]:
    # torch.export specialises any dim of size 1 to a constant; trace dynamic dims at size >= 2.
    return tuple(max(d, 2) if i in dynamic_dims(dynamic) else d for i, d in enumerate(shape))


@contextlib.contextmanager
def _fds_muted():
    """The TorchScript exporter dumps its whole IR graph through C++ streams when it fails; our
    ExportError says what failed in one line, so file descriptors 1 and 2 are muted meanwhile."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 1)
        os.dup2(devnull.fileno(), 2)
    try:
        yield
    finally:
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)


@contextlib.contextmanager
def _quiet():
    """The exporters print progress and deprecation notes; keep the CLI's output ours."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo",
                                               "onnxscript", "torch.fx.experimental.symbolic_shapes")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), _fds_muted():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def io_names(module) -> tuple[list[str], list[str], dict[str, tuple[int, ...]]]:
    """Input names, output names and the extra inputs' trailing shapes of ``module``.

    A block with more than one input (``dia``: the map and the LSTM state; ``sca``: the map and a
    decoder state) declares ``extra_input_shapes()`` (name -> shape without the batch dim, in
    ``forward``'s order after the map) and ``output_names``; every other module has one input
    ``input`` and one output ``output``.
    """
    declare = getattr(module, "extra_input_shapes", None)
    extras = dict(declare()) if callable(declare) else {}
    outputs = list(getattr(module, "output_names", (OUTPUT_NAME,)))
    return [INPUT_NAME, *extras], outputs, extras


def _export(module, example, tmp: Path, opset: int, exporter: str, dynamic: str) -> None:
    import torch

    dims = dynamic_dims(dynamic)
    inputs, outputs, extras = io_names(module)
    batch = {0: dims[0]} if 0 in dims else {}
    args = (example, *(torch.randn(example.shape[0], *shape) for shape in extras.values()))
    if exporter == "torchscript":
        axes = None
        if dims:
            axes = {INPUT_NAME: dims, outputs[0]: dims}
            axes.update({name: batch for name in [*inputs[1:], *outputs[1:]] if batch})
        torch.onnx.export(module, args, str(tmp), opset_version=opset, dynamo=False,
                          input_names=inputs, output_names=outputs,
                          dynamic_axes=axes, do_constant_folding=True)
        return
    shapes = None
    if dims:
        made = {name: torch.export.Dim(name, min=1) for name in dims.values()}
        shapes = [{axis: made[name] for axis, name in dims.items()}]
        shapes += [{0: made[dims[0]]} if batch else {} for _ in extras]
    program = torch.onnx.export(module, args, None, opset_version=opset, dynamo=True,
                                input_names=inputs, output_names=outputs,
                                dynamic_shapes=_rename_shapes(module, shapes), verbose=False,
                                optimize=True)
    program.save(str(tmp), external_data=False)


def _rename_shapes(module, shapes):
    """dynamic_shapes is keyed by forward's argument names, which vary between blocks."""
    if not shapes:
        return None
    import inspect

    names = list(inspect.signature(module.forward).parameters)
    return dict(zip(names, shapes))


def _read_opset(path: Path) -> tuple[int, object]:
    import onnx

    from attn_export.runtime.onnx_file import default_opset

    model = onnx.load(str(path))
    return default_opset(model, -1), model


def onnx_from_torch(
    module,
    input_shape: tuple[int, int, int, int],
    path: str | Path,
    opset: int = 17,
    exporter: str = DEFAULT_EXPORTER,
    dynamic: str = "none",
) -> Path:
    """Export ``module`` (eval mode) to ``path`` with input ``input`` and output ``output``.

    Args:
        module: the deploy (or reference) block or a network holding blocks.
        input_shape: NCHW export shape; dims freed by ``dynamic`` become symbolic.
        path: the ``.onnx`` to write (atomically: a failed export leaves nothing behind).
        opset: 11..21.
        exporter: ``torchscript`` (default) or ``dynamo``.
        dynamic: ``none``, ``batch`` or ``all`` (batch, H and W).

    Raises:
        ExportError: the exporter failed or could not produce the requested opset.
    """
    import onnx
    import torch

    check_opset(opset, exporter)
    path = Path(path)
    example = torch.randn(_trace_shape(tuple(input_shape), dynamic))
    module = module.eval()

    def write(tmp: Path) -> None:
        try:
            with _quiet(), torch.no_grad():
                _export(module, example, tmp, opset, exporter, dynamic)
        except Exception as exc:  # exporters raise many unrelated types; report them as one
            text = str(exc).strip().split(" [Caused by")[0]
            first = text.splitlines()[0][:300] if text else type(exc).__name__
            raise ExportError(f"{exporter} export at opset {opset} failed: {first}") from exc
        got, model = _read_opset(tmp)
        if got != opset:
            raise ExportError(
                f"the {exporter} exporter could not produce opset {opset} (it converts down from "
                f"{DYNAMO_NATIVE_OPSET} and the conversion failed, leaving opset {got}); use "
                f"--exporter torchscript for opsets below {DYNAMO_NATIVE_OPSET}, or --opset >= "
                f"{DYNAMO_NATIVE_OPSET}"
            )
        if model.ir_version > MAX_IR_VERSION:
            model.ir_version = MAX_IR_VERSION
            onnx.save(model, str(tmp))

    write_atomic(path, write)
    return path


def exporter_versions() -> dict[str, str]:
    """Versions recorded in the report, so a graph can be reproduced."""
    import onnx
    import onnxruntime
    import torch

    versions = {"torch": torch.__version__, "onnx": onnx.__version__,
                "onnxruntime": onnxruntime.__version__}
    for name in ("onnxslim", "onnxsim", "onnxscript"):
        with contextlib.suppress(ImportError):
            versions[name] = __import__(name).__version__
    versions["python"] = sys.version.split()[0]
    return versions
