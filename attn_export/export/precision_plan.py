"""Which graph, network flags and builder flags each TensorRT version needs for a precision.

TensorRT 10.x still accepts precision as builder flags on an FP32 graph ("weak typing"); 11.x
removed weak typing, so there the precision must be in the ONNX itself (see ``engine_from_onnx``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from attn_export.errors import ValidationError
from attn_export.runtime.trt_version import TrtVersion

PRECISIONS = ("fp32", "fp16", "int8")


FP16_MODES = ("typed", "flag")
"""``typed``: build the float16 ONNX as a strongly typed network (TensorRT 10.x and 11.x).
``flag``: build the float32 ONNX with ``BuilderFlag.FP16`` (weak typing, TensorRT 10.x only)."""


@dataclass(frozen=True)
class PrecisionPlan:
    """How one precision is built for one TensorRT version; pure data, recorded in the sidecar.

    Attributes:
        precision: fp32, fp16 or int8 (also the tolerance row the engine is judged by).
        trt_version: the target TensorRT version as (major, minor, patch); a tuple given here is
            read with :class:`TrtVersion`.
        graph: which ONNX to parse: ``fp32`` (BLOCK.onnx), ``fp16`` (BLOCK.fp16.onnx) or ``qdq``
            (BLOCK.int8.onnx).
        strongly_typed: create the network with ``NetworkDefinitionCreationFlag.STRONGLY_TYPED``
            (10.x; on 11.x every network is strongly typed and the flag is not passed).
        builder_flags: ``trt.BuilderFlag`` names to set.
        cleared_flags: ``trt.BuilderFlag`` names to clear. TF32 (on by default) for every plan:
            TF32 keeps 10 mantissa bits, so FP32 engines would fail the FP32 tolerance and the
            layers FP16 and INT8 plans keep in FP32 (reductions, norms, gates: F1, F2, H9) would
            not be FP32. TensorRT 11.x still has the flag (strongly typed networks honour it).
        pin_fp32_layers: (weak typing only) pin reduction and normalisation layers to FP32 with
            precision constraints, what the float16 ONNX does for ``typed`` builds (F1, H9).
        notes: why the plan is what it is, printed by the CLI.
    """

    precision: str
    trt_version: TrtVersion
    graph: str
    strongly_typed: bool
    builder_flags: tuple[str, ...] = ()
    cleared_flags: tuple[str, ...] = ()
    pin_fp32_layers: bool = False
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "trt_version", TrtVersion(TrtVersion.parse(self.trt_version).triple))

    def to_dict(self) -> dict:
        return {
            "precision": self.precision, "trt_version": str(self.trt_version),
            "graph": self.graph, "strongly_typed": self.strongly_typed,
            "builder_flags": list(self.builder_flags), "cleared_flags": list(self.cleared_flags),
            "pin_fp32_layers": self.pin_fp32_layers, "notes": list(self.notes),
        }


def plan_precision(
    precision: str, trt_version: str | Sequence[int] | TrtVersion, fp16_mode: str = "typed"
) -> PrecisionPlan:
    """Choose how to build ``precision`` for TensorRT ``trt_version`` (10.x or 11.x).

    Args:
        precision: fp32, fp16 or int8.
        trt_version: target TensorRT version (the installed one, or ``--trt-version``).
        fp16_mode: ``typed`` (default: the float16 ONNX that was validated on ONNX Runtime) or
            ``flag`` (``BuilderFlag.FP16`` on the float32 graph; TensorRT 10.x only). Also used for
            the float layers of INT8 engines on 10.x.

    Raises:
        ValidationError: unknown precision or mode, TensorRT older than 10, or ``flag`` on 11.x.
    """
    version = TrtVersion(TrtVersion.parse(trt_version).triple)
    if precision not in PRECISIONS:
        raise ValidationError(f"unknown precision {precision!r}; expected one of "
                              f"{', '.join(PRECISIONS)}")
    if fp16_mode not in FP16_MODES:
        raise ValidationError(f"unknown fp16 mode {fp16_mode!r}; expected one of "
                              f"{', '.join(FP16_MODES)}")
    if version.major < 10:
        raise ValidationError(
            f"TensorRT {version} is not supported: attn-export builds with the "
            "TensorRT 10 tensor API (JetPack 6 ships 10.3); upgrade TensorRT or export ONNX only"
        )
    weak_allowed = version.major == 10
    if fp16_mode == "flag" and not weak_allowed and precision != "fp32":  # fp32 sets no FP16 flag
        raise ValidationError(
            f"--fp16-mode flag needs weak typing, which TensorRT {version.major}.x removed "
            "(BuilderFlag.FP16 is gone); use the default --fp16-mode typed"
        )
    tf32 = ("TF32",)
    if precision == "fp32":
        return PrecisionPlan("fp32", version, "fp32", strongly_typed=not weak_allowed,
                             cleared_flags=tf32,
                             notes=("TF32 cleared so FP32 layers keep FP32 accuracy",))
    if precision == "fp16" and fp16_mode == "flag":
        return PrecisionPlan(
            "fp16", version, "fp32", strongly_typed=False,
            builder_flags=("FP16", "PREFER_PRECISION_CONSTRAINTS"), cleared_flags=tf32,
            pin_fp32_layers=True,
            notes=("weak typing: BuilderFlag.FP16 on the FP32 graph, reductions and "
                   "normalisations pinned to FP32 (F1, H9); TF32 cleared",))
    if precision == "fp16":
        return PrecisionPlan(
            "fp16", version, "fp16", strongly_typed=True, cleared_flags=tf32,
            notes=("strongly typed: the float16 ONNX validated on ONNX Runtime is built as is; "
                   "TF32 cleared so its float32 nodes stay FP32",))
    if weak_allowed and fp16_mode == "flag":
        return PrecisionPlan(
            "int8", version, "qdq", strongly_typed=False, builder_flags=("INT8", "FP16"),
            cleared_flags=tf32,
            notes=("weak typing: Q/DQ graph with BuilderFlag.INT8, float layers free to use "
                   "FP16 (BuilderFlag.FP16); TF32 cleared",))
    return PrecisionPlan(
        "int8", version, "qdq", strongly_typed=True, cleared_flags=tf32,
        notes=("strongly typed explicit quantization: INT8 where the Q/DQ nodes are, FP32 "
               "elsewhere (gates included, F2; TF32 cleared)",))


def precision_onnx_path(onnx_path: str | Path, precision: str) -> Path:
    """``exports/cbam/cbam.onnx`` -> ``cbam.fp16.onnx`` / ``cbam.int8.onnx`` beside it."""
    path = Path(onnx_path)
    return path if precision == "fp32" else path.with_name(f"{path.stem}.{precision}.onnx")
