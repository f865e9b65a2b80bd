"""The TensorRT calls a build makes, per version and option, decided without TensorRT."""

from __future__ import annotations

import pytest

from attn_export.errors import ValidationError
from attn_export.export.precision_plan import plan_precision
from attn_export.export.trt_build.settings import (
    DEFAULT_WORKSPACE_MIB,
    BuilderSettings,
    BuildOptions,
    builder_settings,
    layers_to_pin,
)


@pytest.mark.parametrize(
    "precision, version, mode, network, flags",
    [
        ("fp16", "10.3", "typed", ("STRONGLY_TYPED",), ()),
        ("fp16", "10.3", "flag", (), ("FP16", "PREFER_PRECISION_CONSTRAINTS")),
        ("fp16", "11.0", "typed", (), ()),
        ("int8", "10.3", "flag", (), ("INT8", "FP16")),
        ("int8", "11.1", "typed", (), ()),
        ("fp32", "10.3", "typed", (), ()),
    ],
    ids=["fp16-10-typed", "fp16-10-flag", "fp16-11", "int8-10-flag", "int8-11", "fp32-10"],
)
def test_builder_settings_per_version(precision, version, mode, network, flags):
    plan = plan_precision(precision, version, mode)
    settings = builder_settings(plan, BuildOptions(precision=precision, fp16_mode=mode))
    assert settings.network_flags == network  # 11.x: strongly typed always, flag not passed
    assert settings.builder_flags == flags
    assert settings.workspace_bytes == DEFAULT_WORKSPACE_MIB << 20
    assert settings.pin_fp32_layers == (mode == "flag" and precision == "fp16")
    assert settings.cleared_flags == ("TF32",)


def test_compatibility_options_become_flags_and_levels():
    plan = plan_precision("fp16", "10.3")
    settings = builder_settings(plan, BuildOptions(
        version_compatible=True, exclude_lean_runtime=True, workspace_mib=256,
        hardware_compatibility="same_compute_capability", optimization_level=5))
    assert settings == BuilderSettings(
        network_flags=("STRONGLY_TYPED",),
        builder_flags=("VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME"),
        cleared_flags=("TF32",), workspace_bytes=256 << 20,
        hardware_compatibility_level="SAME_COMPUTE_CAPABILITY",
        optimization_level=5)
    assert builder_settings(plan, BuildOptions(workspace_mib=None)).workspace_bytes is None


@pytest.mark.parametrize(
    "options, jetson, message",
    [
        (BuildOptions(hardware_compatibility="ampere_plus"), True, "not supported on JetPack"),
        (BuildOptions(hardware_compatibility="turing"), False, "unknown hardware compatibility"),
        (BuildOptions(exclude_lean_runtime=True), False, "add --version-compatible"),
        (BuildOptions(workspace_mib=0), False, "positive number of MiB"),
        (BuildOptions(optimization_level=6), False, "0..5"),
    ],
    ids=["hw-on-jetson", "hw-level", "lean-without-vc", "workspace", "opt-level"],
)
def test_builder_settings_refusals(options, jetson, message):
    with pytest.raises(ValidationError, match=message):
        builder_settings(plan_precision("fp16", "10.3"), options, jetson=jetson)


def test_layers_pinned_under_weak_typing():
    assert layers_to_pin(["CONVOLUTION", "REDUCE", "ACTIVATION", "NORMALIZATION"]) == [1, 3]
