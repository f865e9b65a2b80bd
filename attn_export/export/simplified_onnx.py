"""Graph simplification (constant folding, shape-op elimination) with a choice of simplifier."""

from __future__ import annotations

import contextlib
import io
import shutil
from pathlib import Path

from attn_export.atomic import write_atomic
from attn_export.errors import ExportError, MissingDependencyError

SIMPLIFIERS = ("onnxslim", "onnxsim", "none")
DEFAULT_SIMPLIFIER = "onnxslim"  # a pure wheel on every platform; onnxsim has no aarch64/py3.12 wheel


def _slim(model):
    try:
        import onnxslim
    except ImportError as exc:
        raise MissingDependencyError(
            "onnxslim is not installed; `pip install onnxslim` or use --simplifier none"
        ) from exc
    return onnxslim.slim(model)


def _onnxsim(model):
    try:
        import onnxsim
    except ImportError as exc:
        raise MissingDependencyError(
            "onnxsim is not installed; `pip install 'attn-export[onnxsim]'` or use "
            "--simplifier onnxslim (the default)"
        ) from exc
    simplified, ok = onnxsim.simplify(model)
    if not ok:
        raise ExportError("onnxsim could not verify its simplified graph; use --simplifier onnxslim")
    return simplified


def simplified_onnx(source: str | Path, target: str | Path, simplifier: str = DEFAULT_SIMPLIFIER) -> Path:
    """Write ``source`` simplified by ``simplifier`` to ``target`` (atomically)."""
    import onnx

    if simplifier not in SIMPLIFIERS:
        raise ExportError(
            f"unknown simplifier {simplifier!r}; expected one of {', '.join(SIMPLIFIERS)}"
        )
    if simplifier == "none":
        return write_atomic(target, lambda tmp: shutil.copyfile(source, tmp))
    model = onnx.load(str(source))
    ir_version = model.ir_version
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            simplified = (_slim if simplifier == "onnxslim" else _onnxsim)(model)
    except (MissingDependencyError, ExportError):
        raise
    except Exception as exc:  # simplifiers raise whatever their passes raise
        raise ExportError(f"{simplifier} failed: {str(exc).splitlines()[0][:300]}") from exc
    simplified.ir_version = min(simplified.ir_version, ir_version)  # keep what onnxruntime reads
    return write_atomic(target, lambda tmp: onnx.save(simplified, str(tmp)))
