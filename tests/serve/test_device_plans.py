"""One repository, several devices: engines of one model built on Orin (8.7) and Thor (11.0) held
side by side (cc_model_filenames), and the plan for the local GPU picked at serve time.

Engines are built with the fake TensorRT (tests/fake_tensorrt.py) on fake devices whose probed
name, compute capability and CUDA version are set per test; the runner's own sidecar check then
refuses any plan built for another GPU, so a wrong pick cannot pass unnoticed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from attn_export.cli import main
from attn_export.export.engine_from_onnx import BuildOptions, build_engine
from attn_export.runtime import cuda_memory
from attn_export.serve.config_checks import config_problems
from attn_export.serve.device_plans import plan_for_device
from attn_export.serve.repository import scan_repository
from attn_export.serve.served_model import ServedModel
from tests import fake_tensorrt
from tests.relu_onnx import relu_onnx

ORIN = ("Orin", "8.7", "12.6")
THOR = ("Thor", "11.0", "13.0")
H100 = ("NVIDIA H100 80GB HBM3", "9.0", "12.6")
BOTH = {"model.onnx", "model.sm87.plan", "model.sm87.plan.json", "model.sm110.plan",
        "model.sm110.plan.json"}


def on_device(monkeypatch, device: tuple[str, str, str]) -> None:
    """The fake TensorRT, on a GPU that probes as ``device`` (name, capability, CUDA)."""

    class Device(fake_tensorrt.FakeCuda):
        def device(self) -> tuple[str, str, str]:
            return device

    fake_tensorrt.install(monkeypatch, "10.3.0")
    monkeypatch.setattr(cuda_memory, "cuda_backend", lambda prefer="auto": Device())


def relu_export(folder: Path) -> Path:
    """An export folder of a dynamic-batch Relu (report.json as `attn-export BLOCK` writes)."""
    folder.mkdir(parents=True, exist_ok=True)
    relu_onnx(folder / "relu.onnx", ("N", 4, 8, 8))
    (folder / "report.json").write_text(json.dumps(
        {"block": "relu", "files": {"onnx": "relu.onnx"}, "input_shape": [1, 4, 8, 8]}))
    return folder


def build_on(monkeypatch, device, folder: Path, engine_name: str = "relu.fp32.engine",
             **options) -> Path:
    on_device(monkeypatch, device)
    return build_engine(folder / "relu.onnx", BuildOptions(precision="fp32", use_timing_cache=False,
                                                           **options),
                        folder / engine_name).engine_path


def _repo(*args: str):
    return CliRunner().invoke(main, ["repo", *args])


def _config(path: Path):
    return text_format.Parse(path.read_text(), mc.ModelConfig())


@pytest.fixture
def two_device_repo(monkeypatch, tmp_path) -> Path:
    """Two export folders of one model: one built on Orin, one on Thor (given Thor first)."""
    orin, thor = relu_export(tmp_path / "orin"), relu_export(tmp_path / "thor")
    build_on(monkeypatch, ORIN, orin)
    build_on(monkeypatch, THOR, thor)
    out = tmp_path / "models"
    result = _repo(str(thor), str(orin), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "engines for compute capability 8.7, 11.0" in result.output
    return out


def test_one_model_holds_a_plan_per_compute_capability(two_device_repo):
    version = two_device_repo / "relu" / "1"
    assert {p.name for p in version.iterdir()} == BOTH
    cfg = _config(two_device_repo / "relu" / "config.pbtxt")  # what Triton parses
    assert cfg.platform == "tensorrt_plan"
    assert dict(cfg.cc_model_filenames) == {"8.7": "model.sm87.plan", "11.0": "model.sm110.plan"}
    assert cfg.default_model_filename == "model.sm87.plan"  # the lowest, whatever the order given
    sidecar = json.loads((version / "model.sm110.plan.json").read_text())
    assert sidecar["built_with"]["compute_capability"] == "11.0"
    assert [m.problem for m in scan_repository(two_device_repo)] == [None]
    meta = json.loads((two_device_repo / "relu" / "attn-export.json").read_text())
    assert sorted(meta["engines"]) == ["11.0", "8.7"]


def test_one_export_folder_holding_both_engines(monkeypatch, tmp_path):
    folder = relu_export(tmp_path / "relu")
    build_on(monkeypatch, ORIN, folder)
    build_on(monkeypatch, THOR, folder, "relu.fp32.thor.engine")
    out = tmp_path / "models"
    result = _repo(str(folder), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert {p.name for p in (out / "relu" / "1").iterdir()} == BOTH
    assert dict(_config(out / "relu" / "config.pbtxt").cc_model_filenames) == \
        {"8.7": "model.sm87.plan", "11.0": "model.sm110.plan"}
    onnx_out = tmp_path / "onnx"  # an ONNX model keeps the plans for `serve --backend tensorrt`
    assert _repo(str(folder), "--prefer", "onnx", "--out", str(onnx_out)).exit_code == 0
    cfg = _config(onnx_out / "relu" / "config.pbtxt")
    assert (cfg.platform, cfg.default_model_filename) == ("onnxruntime_onnx", "")
    assert dict(cfg.cc_model_filenames) == {"8.7": "model.sm87.plan", "11.0": "model.sm110.plan"}
    assert {p.name for p in (onnx_out / "relu" / "1").iterdir()} == BOTH
    assert [m.problem for m in scan_repository(onnx_out)] == [None]


@pytest.mark.parametrize("device, plan", [(ORIN, "model.sm87.plan"), (THOR, "model.sm110.plan")],
                         ids=["orin", "thor"])
def test_serve_loads_the_plan_for_the_local_gpu(monkeypatch, two_device_repo, device, plan):
    on_device(monkeypatch, device)
    (entry,) = scan_repository(two_device_repo)
    model = ServedModel(entry)
    model.load()
    try:
        assert model.ready, model.reason  # the runner's sidecar check passed for this GPU
        assert model.model_file.name == plan
        assert model.runners[0].sidecar.env.compute_capability == device[1]
        x = np.random.default_rng(0).standard_normal((2, 4, 8, 8)).astype(np.float32)
        np.testing.assert_array_equal(model.runners[0].infer({"input": x})["output"],
                                      np.maximum(x, 0))
    finally:
        for runner in model.runners:
            runner.close()


def test_a_gpu_the_repository_has_no_engine_for_is_refused_in_one_line(monkeypatch, two_device_repo):
    on_device(monkeypatch, H100)
    (entry,) = scan_repository(two_device_repo)
    model = ServedModel(entry)
    model.load()
    assert not model.ready and model.runners == []
    assert model.reason == (
        "model 'relu' has no engine for this GPU (NVIDIA H100 80GB HBM3, compute capability 9.0): "
        "the repository holds engines for compute capability 8.7, 11.0 (cc_model_filenames); build "
        "one here with `attn-export build` and add it with `attn-export repo`")
    onnx = ServedModel(entry, backend="onnxruntime")  # the ONNX of the same model ignores the map
    onnx.load()
    try:
        assert onnx.ready and onnx.model_file.name == "model.onnx"
    finally:
        for runner in onnx.runners:
            runner.close()


def test_the_map_is_not_read_where_tensorrt_is_not_importable(monkeypatch, two_device_repo):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` raises ImportError
    cfg = _config(two_device_repo / "relu" / "config.pbtxt")
    assert plan_for_device(cfg, two_device_repo / "relu" / "1", "relu") is None


def test_the_server_answers_from_the_plan_for_its_gpu(monkeypatch, two_device_repo):
    import tritonclient.http as httpclient

    from tests.serve.conftest import ServerThread

    on_device(monkeypatch, THOR)
    srv = ServerThread(two_device_repo).start()
    try:
        client = httpclient.InferenceServerClient(srv.http)
        x = np.linspace(-1, 1, 256, dtype=np.float32).reshape(1, 4, 8, 8)
        given = httpclient.InferInput("input", list(x.shape), "FP32")
        given.set_data_from_numpy(x)
        out = client.infer("relu", [given]).as_numpy("output")
        np.testing.assert_array_equal(out, np.maximum(x, 0))
        config = client.get_model_config("relu")
        assert config["cc_model_filenames"] == {"8.7": "model.sm87.plan", "11.0": "model.sm110.plan"}
        client.close()
    finally:
        srv.stop()


def test_two_engines_for_one_capability_are_refused(monkeypatch, tmp_path):
    a, b = relu_export(tmp_path / "a"), relu_export(tmp_path / "b")
    build_on(monkeypatch, ORIN, a)
    build_on(monkeypatch, ORIN, b)
    result = _repo(str(a), str(b), "--out", str(tmp_path / "models"))
    assert result.exit_code == 1
    assert "two engines for compute capability 8.7" in result.output
    assert "give each export its own --name" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "models").exists()
    separate = _repo(str(a), str(b), "--name", "relu_a", "--name", "relu_b", "--out",
                     str(tmp_path / "named"))
    assert separate.exit_code == 0, separate.output


def test_engines_whose_profiles_disagree_are_refused(monkeypatch, tmp_path):
    orin, thor = relu_export(tmp_path / "orin"), relu_export(tmp_path / "thor")
    build_on(monkeypatch, ORIN, orin)
    build_on(monkeypatch, THOR, thor, max_shapes="4x4x8x8")
    result = _repo(str(orin), str(thor), "--out", str(tmp_path / "models"))
    assert result.exit_code == 1
    assert "differ in their optimization profiles (min/max)" in result.output
    assert not (tmp_path / "models").exists()


def test_hand_edited_maps_are_checked(two_device_repo):
    cfg_path = two_device_repo / "relu" / "config.pbtxt"
    cfg = _config(cfg_path)
    cfg.cc_model_filenames["sm87"] = "../model.plan"
    (entry,) = scan_repository(two_device_repo)
    problems = config_problems(cfg, entry.spec)
    assert any("key 'sm87' is not a compute capability" in p for p in problems), problems
    assert any("'../model.plan': expected the name of a file" in p for p in problems), problems

    def served_problem(**mapping: str) -> str:
        edited = _config(cfg_path)
        edited.cc_model_filenames.clear()
        edited.cc_model_filenames.update(mapping)
        cfg_path.write_text(text_format.MessageToString(edited))
        return scan_repository(two_device_repo)[0].problem or ""

    assert "no file model.sm90.plan" in served_problem(**{"8.7": "model.sm87.plan",
                                                          "9.0": "model.sm90.plan"})
    swapped = served_problem(**{"8.7": "model.sm110.plan", "11.0": "model.sm87.plan"})
    assert "cc_model_filenames['8.7'] = model.sm110.plan, an engine built for compute capability " \
           "11.0" in swapped
    assert served_problem(**{"8.7": "model.sm87.plan", "11.0": "model.sm110.plan"}) == ""
