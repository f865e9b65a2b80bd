"""Engine builds through the fake TensorRT of each real binding version (10.3, 10.13, 11.4).

The fake (``tests/fake_tensorrt.py``) has exactly the real classes, members, signatures and enums
of each version (``tests/runtime/test_trt_surface.py`` checks it against the real wheels), and
the documented return values our code must check. What runs for real here: our build code, the
ONNX graphs, the sidecar and timing cache files, and ONNX Runtime behind the fake execution.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from attn_export.errors import ExportError, ModelFileError, ValidationError
from attn_export.export.engine_from_onnx import build_engine, engine_from_onnx
from attn_export.export.precision_plan import PrecisionPlan, plan_precision
from attn_export.export.profiles import InputProfile
from attn_export.export.trt_build.build import pin_fp32_layers
from attn_export.export.trt_build.settings import BuildOptions, builder_settings
from attn_export.runtime.onnxruntime_runner import OnnxRuntimeRunner
from attn_export.runtime.sidecar import read_sidecar
from tests import fake_tensorrt

VERSIONS = ("10.3.0", "10.13.0.35", "10.16.1.11", "11.4.0.106")


def gate_onnx(path: Path, batch="N") -> Path:
    """Conv -> ReduceMean -> Sigmoid gate -> Mul: a weighted op, a reduction and a gate."""
    k = np.random.default_rng(0).standard_normal((4, 4, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["input", "k"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("ReduceMean", ["c"], ["m"], axes=[2, 3], keepdims=1, name="mean"),
             helper.make_node("Sigmoid", ["m"], ["g"], name="gate"),
             helper.make_node("Mul", ["c", "g"], ["output"], name="apply")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 4, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, 4, 8, 8])],
        [numpy_helper.from_array(k, "k")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(path))
    (path.parent / "report.json").write_text(json.dumps({"input_shape": [1, 4, 8, 8]}))
    return path


@pytest.fixture
def source(tmp_path):
    return gate_onnx(tmp_path / "blk.onnx")


def run_engine(engine: Path, x: np.ndarray, **kwargs) -> np.ndarray:
    from attn_export.runtime.tensorrt_runner import TensorRTRunner

    with TensorRTRunner(engine, **kwargs) as runner:
        return runner.infer({"input": x})["output"]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("precision, mode", [("fp32", "typed"), ("fp32", "flag"),
                                             ("fp16", "typed"), ("fp16", "flag"),
                                             ("int8", "typed")],
                         ids=["fp32", "fp32-flag", "fp16", "fp16-flag", "int8"])
def test_build_then_run_each_precision(monkeypatch, tmp_path, source, version, precision, mode):
    fake_tensorrt.install(monkeypatch, version)
    options = BuildOptions(precision=precision, fp16_mode=mode, timing_cache=tmp_path / "t.cache")
    if mode == "flag" and precision != "fp32" and version.startswith("11"):
        with pytest.raises(ValidationError, match="11.x removed"):
            build_engine(source, options)
        return
    with pytest.warns(UserWarning, match="seeded") if precision == "int8" else _no_warning():
        built = build_engine(source, options)
    plan = json.loads(built.engine_path.read_bytes())
    assert "TF32" not in plan["flags"]  # cleared for every precision
    assert read_sidecar(built.engine_path).precision == precision
    x = np.random.default_rng(1).standard_normal((3, 4, 8, 8)).astype(np.float32)
    want = OnnxRuntimeRunner(built.graph_path, ["CPUExecutionProvider"]).infer({"input": x})
    np.testing.assert_allclose(run_engine(built.engine_path, x), want["output"], rtol=1e-6)


@contextlib.contextmanager
def _no_warning():
    """An fp32/fp16 build has nothing to calibrate or degrade: any warning it gives is a bug."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    assert not caught, [str(w.message) for w in caught]


@pytest.mark.parametrize("version", VERSIONS)
def test_a_refused_timing_cache_is_replaced_not_a_crash(monkeypatch, tmp_path, source, version):
    """Before: set_timing_cache failed, get_timing_cache() returned None and the build died with
    an AttributeError after the engine was written and before its sidecar."""
    fake_tensorrt.install(monkeypatch, version)
    cache = tmp_path / "t.cache"
    cache.write_text(json.dumps({"device": "Another GPU", "entries": ["theirs"]}))
    with pytest.warns(UserWarning) as caught:
        built = build_engine(source, BuildOptions(timing_cache=cache))
    assert [str(w.message).split(";")[0] for w in caught] == [
        f"timing cache {cache} was made for another device or TensorRT version"]
    assert built.sidecar_path.is_file() and not built.sidecar.timing_cache["had_entries"]
    saved = json.loads(cache.read_text())
    assert saved == {"device": fake_tensorrt.DEVICE, "entries": ["tactics:blk.onnx"]}


def test_the_timing_cache_is_reused_and_merged(monkeypatch, tmp_path, source):
    trt = fake_tensorrt.install(monkeypatch, "10.13.0.35")
    cache = tmp_path / "t.cache"
    build_engine(source, BuildOptions(timing_cache=cache))
    again = build_engine(source, BuildOptions(timing_cache=cache))
    assert again.sidecar.timing_cache["had_entries"] is True
    # another build saves meanwhile: its entries are merged, not lost
    original = trt.Builder.build_serialized_network

    def concurrent(self, network, config):
        cache.write_text(json.dumps({"device": fake_tensorrt.DEVICE, "entries": ["other"]}))
        return original(self, network, config)

    monkeypatch.setattr(trt.Builder, "build_serialized_network", concurrent)
    build_engine(source, BuildOptions(timing_cache=cache))
    assert "other" in json.loads(cache.read_text())["entries"]


def test_a_cache_that_cannot_be_merged_is_said(monkeypatch, tmp_path, source):
    trt = fake_tensorrt.install(monkeypatch, "10.3.0")
    cache = tmp_path / "t.cache"
    original = trt.Builder.build_serialized_network

    def foreign(self, network, config):
        cache.write_text(json.dumps({"device": "Another GPU", "entries": ["theirs"]}))
        return original(self, network, config)

    monkeypatch.setattr(trt.Builder, "build_serialized_network", foreign)
    with pytest.warns(UserWarning, match="cannot be merged"):
        built = build_engine(source, BuildOptions(timing_cache=cache))
    assert built.sidecar_path.is_file()
    assert json.loads(cache.read_text())["device"] == fake_tensorrt.DEVICE


def test_an_invalid_profile_is_refused_before_building(monkeypatch, tmp_path, source):
    """``add_optimization_profile`` returns -1 for an invalid profile; the build used to go on."""
    fake_tensorrt.install(monkeypatch, "11.4.0.106")
    plan = plan_precision("fp32", "11.4")
    bad = [InputProfile("input", (4, 4, 8, 8), (1, 4, 8, 8), (8, 4, 8, 8))]  # min > opt
    engine = tmp_path / "blk.fp32.engine"
    with pytest.raises(ValidationError, match="rejected the optimization profile"):
        engine_from_onnx(source, engine, plan, bad, builder_settings(plan, BuildOptions()))
    assert not engine.exists()


@pytest.mark.parametrize("version", VERSIONS)
def test_config_options_reach_the_builder(monkeypatch, source, version):
    fake_tensorrt.install(monkeypatch, version)
    built = build_engine(source, BuildOptions(
        workspace_mib=64, optimization_level=5, hardware_compatibility="ampere_plus",
        version_compatible=True, use_timing_cache=False))
    plan = json.loads(built.engine_path.read_bytes())
    assert plan["pools"] == {"WORKSPACE": 64 << 20} and plan["optimization_level"] == 5
    assert plan["hardware"] == "AMPERE_PLUS" and "VERSION_COMPATIBLE" in plan["flags"]
    assert plan["profile"]["input"] == [[1, 4, 8, 8], [1, 4, 8, 8], [8, 4, 8, 8]]


def test_hardware_level_a_version_lacks_is_refused_by_name(monkeypatch, source):
    fake_tensorrt.install(monkeypatch, "10.3.0")
    options = BuildOptions(hardware_compatibility="same_compute_capability", use_timing_cache=False)
    with pytest.raises(ValidationError, match="10.3.0 lacks HardwareCompatibilityLevel"):
        build_engine(source, options)
    fake_tensorrt.install(monkeypatch, "10.13.0.35")
    assert build_engine(source, options).sidecar.hardware_compatibility == "same_compute_capability"


def test_parser_errors_name_the_node_and_op(monkeypatch, tmp_path):
    fake_tensorrt.install(monkeypatch, "10.3.0")
    node = helper.make_node("NoSuchOp", ["input"], ["output"], name="/weird/op", domain="custom")
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("custom", 1)])
    onnx.save(model, str(tmp_path / "bad.onnx"))
    with pytest.raises(ExportError, match=r"node /weird/op \(NoSuchOp\)"):
        build_engine(tmp_path / "bad.onnx", BuildOptions(use_timing_cache=False))


def test_layer_precision_is_never_reached_on_11(monkeypatch):
    """An asserted invariant: no 11.x (or strongly typed) plan pins layers, and the pinning code
    refuses in words where ILayer.precision does not exist."""
    for precision in ("fp32", "fp16", "int8"):
        assert not plan_precision(precision, "11.4").pin_fp32_layers
    forged = PrecisionPlan("fp16", (11, 4, 0), "fp32", strongly_typed=True, pin_fp32_layers=True)
    with pytest.raises(ValidationError, match="only weakly typed 10.x"):
        builder_settings(forged, BuildOptions(precision="fp16"))
    trt11 = fake_tensorrt.fake_tensorrt("11.4.0.106")
    with pytest.raises(ExportError, match="no per-layer precision"):
        pin_fp32_layers(trt11, trt11.Builder(None).create_network(0))


def test_weak_typing_pins_the_reduction_on_10(monkeypatch, source):
    trt = fake_tensorrt.install(monkeypatch, "10.3.0")
    pinned = []
    original = trt.Builder.build_serialized_network

    def spy(self, network, config):
        pinned.extend(layer.type.name for layer in network._layers if layer.precision is not None)
        return original(self, network, config)

    monkeypatch.setattr(trt.Builder, "build_serialized_network", spy)
    build_engine(source, BuildOptions(precision="fp16", fp16_mode="flag", use_timing_cache=False))
    assert pinned == ["REDUCE"]


def test_version_compatible_engines_and_the_lean_runtime(monkeypatch, tmp_path, source):
    fake_tensorrt.install(monkeypatch, "10.13.0.35")
    x = np.ones((1, 4, 8, 8), np.float32)
    vc = build_engine(source, BuildOptions(version_compatible=True, use_timing_cache=False))
    assert run_engine(vc.engine_path, x).shape == (1, 4, 8, 8)  # embedded lean runtime allowed
    lean = build_engine(source, BuildOptions(version_compatible=True, exclude_lean_runtime=True,
                                             use_timing_cache=False),
                        tmp_path / "lean.engine")
    monkeypatch.delenv("ATTN_EXPORT_TRT_LEAN_RUNTIME", raising=False)
    with pytest.raises(ModelFileError, match="--exclude-lean-runtime and needs TensorRT's lean"):
        run_engine(lean.engine_path, x)
    library = tmp_path / "libnvinfer_lean.so.10"
    library.write_bytes(b"\x7fELF")
    assert run_engine(lean.engine_path, x, lean_runtime=library).shape == (1, 4, 8, 8)
    monkeypatch.setenv("ATTN_EXPORT_TRT_LEAN_RUNTIME", str(library))
    assert run_engine(lean.engine_path, x).shape == (1, 4, 8, 8)


def test_an_int8_engine_of_a_graph_that_quantizes_nothing_says_so(monkeypatch, tmp_path):
    """A Conv on a 1x1 map (a GEMV) feeding a gate: F2 and the GEMV rule keep it all float."""
    fake_tensorrt.install(monkeypatch, "11.4.0.106")
    k = np.random.default_rng(0).standard_normal((4, 4, 1, 1)).astype(np.float32)
    nodes = [helper.make_node("ReduceMean", ["input"], ["p"], axes=[2, 3], keepdims=1),
             helper.make_node("Conv", ["p", "k"], ["c"], name="fc"),
             helper.make_node("Sigmoid", ["c"], ["g"]),
             helper.make_node("Mul", ["input", "g"], ["output"])]
    graph = helper.make_graph(
        nodes, "se", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4, 8, 8])],
        [numpy_helper.from_array(k, "k")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(tmp_path / "se.onnx"))
    with pytest.warns(UserWarning, match="quantizes nothing"):
        built = build_engine(tmp_path / "se.onnx", BuildOptions(precision="int8",
                                                                use_timing_cache=False))
    assert any("this INT8 engine computes in float" in note for note in built.notes)
