"""Parser-error text, engine paths, the graph the plan parses and the sidecar of a build."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from attn_export.atomic import sha256_file
from attn_export.errors import ValidationError
from attn_export.export.precision import graph_kind
from attn_export.export.precision_plan import plan_precision
from attn_export.export.profiles import InputProfile
from attn_export.export.trt_build.graph import engine_path_for, export_shapes_near, prepare_graph
from attn_export.export.trt_build.parse import describe_parser_error
from attn_export.export.trt_build.settings import (
    DEFAULT_WORKSPACE_MIB,
    BuildOptions,
    builder_settings,
)
from attn_export.export.trt_build.sidecar import make_sidecar, write_sidecar
from attn_export.runtime.sidecar import RuntimeEnv, read_sidecar
from tests.export.onnx_graphs import small_onnx

ENV = RuntimeEnv("10.3.0", "Orin (nvgpu)", "8.7", "12.6", "Linux aarch64")


NODES = [("/fc/Gemm", "Gemm"), ("/custom/Op", "MyOp")]


@pytest.mark.parametrize(
    "args, expected",
    [
        ((1, "No importer registered for op: MyOp"),
         "node /custom/Op (MyOp): No importer registered for op: MyOp"),
        ((1, "bad", "/given", "GivenOp"), "node /given (GivenOp): bad"),
        ((7, "out of range"), "out of range"),
        ((-1, " graph-level "), "graph-level"),
    ],
    ids=["from-graph", "from-binding", "index-out-of-range", "no-node"],
)
def test_parser_errors_name_the_node_and_op(args, expected):
    assert describe_parser_error(NODES, *args) == expected


def test_engine_paths():
    assert engine_path_for(Path("e/cbam/cbam.onnx"), "fp16") == Path("e/cbam/cbam.fp16.engine")
    assert engine_path_for(Path("e/cbam/cbam.int8.onnx"), "int8") == Path("e/cbam/cbam.int8.engine")


def test_export_shape_comes_from_the_report(tmp_path):
    assert export_shapes_near(tmp_path / "m.onnx") == {}
    (tmp_path / "report.json").write_text(json.dumps({"input_shape": [1, 64, 32, 32]}))
    assert export_shapes_near(tmp_path / "m.onnx") == {"input": (1, 64, 32, 32)}


def test_prepare_graph_writes_or_reuses_the_plans_graph(tmp_path):
    source = small_onnx(tmp_path / "blk.onnx")
    fp16 = prepare_graph(source, plan_precision("fp16", "10.3"), BuildOptions(), {})
    assert fp16 == tmp_path / "blk.fp16.onnx" and graph_kind(onnx.load(str(fp16))) == "fp16"
    assert prepare_graph(fp16, plan_precision("fp16", "11.0"), BuildOptions(), {}) == fp16
    assert prepare_graph(source, plan_precision("fp16", "10.3", "flag"), BuildOptions(),
                         {}) == source
    with pytest.warns(UserWarning, match="seeded"):
        qdq = prepare_graph(source, plan_precision("int8", "11.0"), BuildOptions(),
                            {"input": (1, 4, 8, 8)})
    assert qdq == tmp_path / "blk.int8.onnx" and graph_kind(onnx.load(str(qdq))) == "qdq"
    with pytest.raises(ValidationError, match="is a fp16 graph but the int8 plan"):
        prepare_graph(fp16, plan_precision("int8", "11.0"), BuildOptions(), {})


def test_prepare_graph_reuses_the_graph_the_export_validated(tmp_path):
    import os

    source = small_onnx(tmp_path / "blk.onnx")
    plan = plan_precision("int8", "10.3")
    with pytest.warns(UserWarning, match="seeded"):
        qdq = prepare_graph(source, plan, BuildOptions(), {"input": (1, 4, 8, 8)})
    os.utime(qdq, (1e9 + 10, 1e9 + 10))
    os.utime(source, (1e9, 1e9))
    assert prepare_graph(source, plan, BuildOptions(), {}) == qdq  # reused: no warning, no shape
    assert qdq.stat().st_mtime == 1e9 + 10
    calib = tmp_path / "calib"
    calib.mkdir()
    np.save(calib / "a.npy", np.ones((4, 8, 8), np.float32))
    prepare_graph(source, plan, BuildOptions(calib_data=calib), {})  # --calib-data re-quantizes
    assert qdq.stat().st_mtime > 1e9 + 10
    os.utime(source, None)  # BLOCK.onnx re-exported after the graph: stale, rewritten
    fp16 = prepare_graph(source, plan_precision("fp16", "10.3"), BuildOptions(), {})
    assert fp16.stat().st_mtime >= source.stat().st_mtime


def test_sidecar_records_the_build(tmp_path):
    engine = tmp_path / "blk.fp16.engine"
    engine.write_bytes(b"serialized plan")
    graph = small_onnx(tmp_path / "blk.fp16.onnx")
    plan = plan_precision("fp16", "10.3")
    options = BuildOptions(precision="fp16", version_compatible=True)
    settings = builder_settings(plan, options)
    profile = [InputProfile("input", (1, 4, 8, 8), (2, 4, 8, 8), (8, 4, 8, 8))]
    io = [{"name": "input", "mode": "input", "dtype": "FLOAT", "shape": [-1, 4, 8, 8]}]
    sidecar = make_sidecar(engine, graph, plan, ENV, profile, settings, io, 3.21,
                           tmp_path / "t.cache", True, options)
    write_sidecar(engine, sidecar)
    back = read_sidecar(engine)
    assert back == sidecar
    assert back.engine == {"file": "blk.fp16.engine", "sha256": sha256_file(engine), "bytes": 15}
    assert back.onnx["file"] == "blk.fp16.onnx"
    assert back.built_with["compute_capability"] == "8.7" and back.built_with["tensorrt"] == "10.3.0"
    assert back.plan["network_flags"] == ["STRONGLY_TYPED"]
    assert "VERSION_COMPATIBLE" in back.plan["builder_flags"] and back.version_compatible
    assert back.profiles[0]["max"] == [8, 4, 8, 8]
    assert back.workspace_bytes == DEFAULT_WORKSPACE_MIB << 20
    assert back.timing_cache["had_entries"] is True and back.build_time_s == 3.21
    assert back.created.endswith("+00:00") and back.tool.startswith("attn-export ")
    assert engine.read_bytes() == b"serialized plan"  # metadata never enters the plan file
