"""attn-export repo: Triton's layout, configs checked like Triton checks them, atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from attn_export.atomic import sha256_file
from attn_export.cli import main
from attn_export.export.trt_build.sidecar import write_sidecar
from attn_export.runtime.sidecar import EngineSidecar
from attn_export.serve.config import BatchOptions, ConfigError, ModelSpec, engine_max_batch
from attn_export.serve.config_checks import config_problems
from attn_export.serve.engine_spec import engine_spec
from attn_export.serve.repository import plan_model, scan_repository, source_from_export
from tests.serve.conftest import mixed_export


def _repo(*args: str):
    return CliRunner().invoke(main, ["repo", *args])


def _config(path: Path):
    return text_format.Parse(path.read_text(), mc.ModelConfig())


def test_layout_and_config_from_a_real_export(exports, tmp_path):
    out = tmp_path / "models"
    result = _repo(str(exports["se"]), str(exports["mixed"]), "--out", str(out), "--instances", "2",
                   "--max-queue-delay-us", "100", "--max-batch", "4")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["mixed", "se"]
    assert {p.name for p in (out / "se" / "1").iterdir()} == {"model.onnx", "model.golden.npz"}
    cfg = _config(out / "se" / "config.pbtxt")
    assert (cfg.name, cfg.platform, cfg.max_batch_size) == ("se", "onnxruntime_onnx", 4)
    assert list(cfg.input[0].dims) == [64, 32, 32] and cfg.input[0].data_type == mc.TYPE_FP32
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 100 and cfg.instance_group[0].count == 2
    mixed = _config(out / "mixed" / "config.pbtxt")
    assert [(t.name, mc.DataType.Name(t.data_type)) for t in mixed.input] == \
        [("x", "TYPE_FP16"), ("idx", "TYPE_INT64")]
    assert all(m.problem is None for m in scan_repository(out))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary folder left behind"


def test_static_batch_model_gets_max_batch_zero_and_refuses_max_batch(tmp_path):
    static = mixed_export(tmp_path / "static", batch=2)
    assert _repo(str(static), "--out", str(tmp_path / "r")).exit_code == 0
    cfg = _config(tmp_path / "r" / "mixed" / "config.pbtxt")
    assert cfg.max_batch_size == 0 and list(cfg.input[0].dims) == [2, 4]
    assert not cfg.HasField("dynamic_batching")
    result = _repo(str(static), "--out", str(tmp_path / "r2"), "--max-batch", "4")
    assert result.exit_code == 1 and "batch dim is fixed" in result.output
    assert not (tmp_path / "r2").exists()


def test_refusals_leave_nothing_behind(exports, tmp_path):
    out = tmp_path / "r"
    bad = tmp_path / "not-an-export"
    bad.mkdir()
    result = _repo(str(exports["mixed"]), str(bad), "--out", str(out))
    assert result.exit_code == 1 and "no report.json" in result.output and not out.exists()
    for name in ("../escape", "a/b", ".hidden"):
        result = _repo(str(exports["mixed"]), "--name", name, "--out", str(out))
        assert result.exit_code == 1 and "is not allowed" in result.output, name
    result = _repo(str(exports["mixed"]), str(exports["mixed"]), "--out", str(out))
    assert result.exit_code == 1 and "appear twice" in result.output
    assert list(tmp_path.iterdir()) == [bad]


def test_existing_repository_is_replaced_only_with_force(exports, tmp_path):
    out = tmp_path / "r"
    assert _repo(str(exports["mixed"]), "--out", str(out)).exit_code == 0
    again = _repo(str(exports["se"]), "--out", str(out))
    assert again.exit_code == 1 and "--force" in again.output
    assert _repo(str(exports["se"]), "--out", str(out), "--force").exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == ["se"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


def _fake_engine_export(folder: Path, max_batch: int, min_batch: int = 1) -> Path:
    """An export folder holding an engine file and the sidecar `attn-export build` writes. The
    plan bytes are not a real engine (TensorRT cannot run here); the generator reads only the
    sidecar, and the server's TensorRT load is expected to fail with the reason."""
    mixed_export(folder)
    engine = folder / "mixed.fp32.engine"
    engine.write_bytes(b"not a real plan")
    write_sidecar(engine, EngineSidecar(
        engine={"file": engine.name, "sha256": sha256_file(engine), "bytes": engine.stat().st_size},
        onnx={"file": "mixed.onnx", "sha256": ""}, precision="fp32", plan={}, built_with={
            "tensorrt": "10.3.0", "gpu": "Orin", "compute_capability": "8.7"},
        profiles=[{"name": "x", "min": [min_batch, 4], "opt": [2, 4], "max": [max_batch, 4]},
                  {"name": "idx", "min": [min_batch, 3], "opt": [2, 3], "max": [max_batch + 2, 3]}],
        workspace_bytes=None,
        io=[{"name": "x", "mode": "input", "dtype": "float16", "shape": [-1, 4]},
            {"name": "idx", "mode": "input", "dtype": "int64", "shape": [-1, 3]},
            {"name": "y", "mode": "output", "dtype": "float16", "shape": [-1, 4]},
            {"name": "s", "mode": "output", "dtype": "int64", "shape": [-1, 3]}]))
    return folder


def test_plan_max_batch_follows_the_engine_profiles(tmp_path):
    folder = _fake_engine_export(tmp_path / "e", max_batch=4)
    out = tmp_path / "r"
    assert _repo(str(folder), "--out", str(out)).exit_code == 0
    cfg = _config(out / "mixed" / "config.pbtxt")
    assert (cfg.platform, cfg.max_batch_size) == ("tensorrt_plan", 4)  # min over inputs of max[0]
    assert list(cfg.instance_group[0].profile) == ["0"]
    assert cfg.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    files = {p.name for p in (out / "mixed" / "1").iterdir()}
    assert files == {"model.onnx", "model.plan", "model.plan.json"}
    onnx_out = tmp_path / "r-onnx"
    assert _repo(str(folder), "--out", str(onnx_out), "--prefer", "onnx", "--max-batch", "16").exit_code == 0
    assert _config(onnx_out / "mixed" / "config.pbtxt").platform == "onnxruntime_onnx"


def test_inconsistent_engine_and_max_batch_are_refused_with_the_reason(tmp_path):
    folder = _fake_engine_export(tmp_path / "e", max_batch=4)
    result = _repo(str(folder), "--out", str(tmp_path / "r"), "--max-batch", "8")
    assert result.exit_code == 1
    assert ("configuration specified max-batch 8 but TensorRT engine only supports max-batch 4"
            in result.output)
    assert not (tmp_path / "r").exists()
    # a hand-edited config is refused the same way by the checks the server runs at load
    spec = engine_spec("mixed", folder / "mixed.fp32.engine")
    cfg = plan_model("mixed", source_from_export(folder), "plan", BatchOptions()).config
    cfg.max_batch_size = 16
    assert any("only supports max-batch 4" in p for p in config_problems(cfg, spec))
    cfg.max_batch_size, cfg.input[0].dims[0] = 4, 5
    assert any("dim 0 is 5, the model fixes it to 4" in p for p in config_problems(cfg, spec))
    min_two = _fake_engine_export(tmp_path / "m", max_batch=8, min_batch=2)
    result = _repo(str(min_two), "--out", str(tmp_path / "r"))
    assert result.exit_code == 1 and "profile starts at batch 2" in result.output


def test_engine_rule_details():
    import numpy as np

    from attn_export.runtime.base import TensorSpec
    from attn_export.serve.model_io import ModelIO

    f32 = np.dtype("float32")
    io = ModelIO((TensorSpec("a", f32, (None, 3)), TensorSpec("b", f32, (None, 2))),
                 (TensorSpec("y", np.dtype("float32"), (None, 3)),))
    profiles = [{"name": "a", "min": [1, 3], "opt": [4, 3], "max": [16, 3]},
                {"name": "b", "min": [1, 2], "opt": [4, 2], "max": [6, 2]}]
    assert engine_max_batch(ModelSpec("m", "tensorrt_plan", io, profiles)) == 6
    with pytest.raises(ConfigError, match="invalid profile"):
        engine_max_batch(ModelSpec("m", "tensorrt_plan", io, profiles), [1])
    static = ModelIO((TensorSpec("a", np.dtype("float32"), (1, 3)),), io.outputs)
    assert engine_max_batch(ModelSpec("m", "tensorrt_plan", static, profiles)) == 0


def test_server_reports_an_unloadable_engine_as_not_ready(tmp_path):
    import tritonclient.http as httpclient

    from tests.serve.conftest import ServerThread

    folder = _fake_engine_export(tmp_path / "e", max_batch=4)
    out = tmp_path / "r"
    assert _repo(str(folder), "--out", str(out)).exit_code == 0
    srv = ServerThread(out).start()
    try:
        client = httpclient.InferenceServerClient(srv.http)
        assert not client.is_model_ready("mixed")
        reason = {m["name"]: m["reason"] for m in srv.server.core.index()}["mixed"]
        assert "TensorRT" in reason or "engine" in reason, reason
        client.close()
    finally:
        srv.stop()
    forced = ServerThread(out, backend="onnxruntime").start()  # the repository holds model.onnx too
    try:
        assert httpclient.InferenceServerClient(forced.http).is_model_ready("mixed")
    finally:
        forced.stop()
    meta = json.loads((out / "mixed" / "attn-export.json").read_text())
    assert meta["precision"] == "fp32"
