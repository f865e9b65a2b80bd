"""The precision plan per TensorRT version."""

from __future__ import annotations

import pytest

from attn_export.errors import ValidationError
from attn_export.export.precision_plan import PrecisionPlan, plan_precision, precision_onnx_path
from attn_export.runtime.trt_version import TrtVersion


@pytest.mark.parametrize(
    "precision, version, mode, graph, typed, flags",
    [
        ("fp32", "10.3", "typed", "fp32", False, ()),
        ("fp32", "11.0", "typed", "fp32", True, ()),
        ("fp16", "10.3.0.30", "typed", "fp16", True, ()),
        ("fp16", "10.3", "flag", "fp32", False, ("FP16", "PREFER_PRECISION_CONSTRAINTS")),
        ("fp16", "11.2", "typed", "fp16", True, ()),
        ("int8", "10.3", "typed", "qdq", True, ()),
        ("int8", "10.15", "flag", "qdq", False, ("INT8", "FP16")),
        ("int8", "11.0", "typed", "qdq", True, ()),
    ],
    ids=["fp32-10", "fp32-11", "fp16-10-typed", "fp16-10-flag", "fp16-11", "int8-10-typed",
         "int8-10-flag", "int8-11"],
)
def test_plan_per_trt_version(precision, version, mode, graph, typed, flags):
    plan = plan_precision(precision, version, mode)
    assert (plan.graph, plan.strongly_typed, plan.builder_flags) == (graph, typed, flags)
    assert plan.pin_fp32_layers == (mode == "flag" and precision == "fp16")
    assert plan.cleared_flags == ("TF32",)  # every plan: "FP32 elsewhere" must mean FP32
    assert plan.to_dict()["trt_version"] == ".".join(map(str, TrtVersion.parse(version).triple))
    # TensorRT 11 removed weak typing: no precision flag may appear in an 11.x plan
    if version.startswith("11"):
        assert not {"FP16", "INT8"} & set(plan.builder_flags)


@pytest.mark.parametrize(
    "args, message",
    [(("fp16", "11.0", "flag"), "TensorRT 11.x removed"), (("int8", "11.4", "flag"), "11.x removed"),
     (("fp16", "8.6"), "not supported"),
     (("bf16", "10.3"), "unknown precision"), (("fp16", "10.3", "auto"), "unknown fp16 mode"),
     (("fp16", "ten"), "cannot read TensorRT version")],
    ids=["flag-on-11", "int8-flag-on-11", "trt8", "bf16", "mode", "version-text"],
)
def test_plan_refuses(args, message):
    with pytest.raises(ValidationError, match=message):
        plan_precision(*args)


def test_fp32_with_flag_mode_is_planned_on_11():
    """FP32 sets no FP16 flag, so ``--fp16-mode flag`` has nothing to refuse on 11.x."""
    assert plan_precision("fp32", "11.4", "flag") == plan_precision("fp32", "11.4", "typed")


def test_the_plan_reads_versions_with_trt_version():
    """Whatever form the version comes in, the plan holds (major, minor, patch) as a TrtVersion."""
    assert plan_precision("fp32", "10").trt_version == TrtVersion((10, 0, 0))
    assert plan_precision("fp32", "10.16.1.11").trt_version == TrtVersion((10, 16, 1))
    assert plan_precision("fp32", (11, 1)).trt_version.triple == (11, 1, 0)
    assert plan_precision("fp16", TrtVersion.parse("10.3.0.30")).to_dict()["trt_version"] == \
        "10.3.0"
    forged = PrecisionPlan("fp16", (11, 4, 0, 106), "fp16", strongly_typed=True)
    assert forged.trt_version.major == 11 and str(forged.trt_version) == "11.4.0"
    with pytest.raises(ValidationError, match="expected MAJOR"):
        plan_precision("fp32", "latest")


def test_precision_paths():
    assert precision_onnx_path("exports/cbam/cbam.onnx", "fp16").name == "cbam.fp16.onnx"
    assert precision_onnx_path("exports/cbam/cbam.onnx", "int8").name == "cbam.int8.onnx"
    assert precision_onnx_path("exports/cbam/cbam.onnx", "fp32").name == "cbam.onnx"
