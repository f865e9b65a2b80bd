"""Engine sidecars: schema, atomic round trip, and the version / GPU compatibility rules."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest

from attn_export.atomic import sha256_file
from attn_export.errors import ModelFileError
from attn_export.export.trt_build.sidecar import write_sidecar
from attn_export.runtime.sidecar import (
    SCHEMA,
    EngineSidecar,
    RuntimeEnv,
    check_compatible,
    compatibility_problems,
    read_sidecar,
    sidecar_path,
)

ORIN = RuntimeEnv("10.3.0", "Orin", "8.7", "12.6", "Linux aarch64")


def make_sidecar(engine_sha: str = "abc", **changes) -> EngineSidecar:
    sidecar = EngineSidecar(
        engine={"file": "cbam.fp16.engine", "sha256": engine_sha, "bytes": 3},
        onnx={"file": "cbam.fp16.onnx", "sha256": "def"},
        precision="fp16",
        plan={"precision": "fp16", "graph": "fp16", "strongly_typed": True},
        built_with=ORIN.to_dict(),
        profiles=[{"name": "input", "min": [1, 64, 32, 32], "opt": [1, 64, 32, 32],
                   "max": [8, 64, 32, 32]}],
        workspace_bytes=1 << 30,
        timing_cache={"path": "/tmp/x.timing-cache", "had_entries": False},
        io=[{"name": "input", "mode": "input", "dtype": "FLOAT", "shape": [-1, 64, 32, 32]}],
        build_time_s=12.5,
        created="2025-01-01T00:00:00+00:00",
    )
    return replace(sidecar, **changes)


def test_sidecar_sits_beside_the_engine_and_round_trips(tmp_path):
    engine = tmp_path / "cbam.fp16.engine"
    engine.write_bytes(b"plan")
    written = write_sidecar(engine, make_sidecar())
    assert written == sidecar_path(engine) == tmp_path / "cbam.fp16.engine.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cbam.fp16.engine",
                                                          "cbam.fp16.engine.json"]
    data = json.loads(written.read_text())
    assert data["schema"] == SCHEMA
    assert data["built_with"]["compute_capability"] == "8.7"
    assert read_sidecar(engine) == make_sidecar()
    assert engine.read_bytes() == b"plan"  # the engine file itself is never touched


def test_missing_sidecar_reads_as_none(tmp_path):
    assert read_sidecar(tmp_path / "model.engine") is None


@pytest.mark.parametrize(
    "content, message",
    [("{not json", "not readable JSON"),
     (json.dumps({"schema": "other/2"}), "schema 'other/2'"),
     (json.dumps([1, 2]), "schema 'list'"),
     (json.dumps({"schema": SCHEMA, "engine": {}}), "lacks \\['onnx'")],
    ids=["bad-json", "other-schema", "not-an-object", "fields-missing"],
)
def test_foreign_sidecars_are_refused(tmp_path, content, message):
    engine = tmp_path / "m.engine"
    sidecar_path(engine).write_text(content)
    with pytest.raises(ModelFileError, match=message):
        read_sidecar(engine)


def test_the_one_hashing_helper_is_atomics(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    assert sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_same_machine_is_compatible():
    assert compatibility_problems(make_sidecar(), ORIN, "abc") == []
    # 10.3 and 10.3.0.30 name the same release
    assert compatibility_problems(make_sidecar(), replace(ORIN, tensorrt="10.3.0.30")) == []


@pytest.mark.parametrize(
    "env, message",
    [
        (replace(ORIN, tensorrt="10.4.0"), "built with TensorRT 10.3.0, this machine has 10.4.0"),
        (replace(ORIN, tensorrt="11.0.0"), "this machine has 11.0.0"),
        (replace(ORIN, gpu="RTX 3090", compute_capability="8.6"),
         "built for compute capability 8.7 \\(Orin\\), this GPU \\(RTX 3090\\) has 8.6"),
        (replace(ORIN, gpu="Orin NX"), "built on Orin, this GPU is Orin NX"),
    ],
    ids=["newer-trt", "next-major", "other-cc", "same-cc-other-gpu"],
)
def test_other_version_or_gpu_is_a_problem(env, message):
    problems = compatibility_problems(make_sidecar(), env)
    assert len(problems) == 1
    assert re.search(message, problems[0]), problems[0]


def test_version_compatible_engines_accept_newer_runtimes_only():
    sidecar = make_sidecar(version_compatible=True)
    assert compatibility_problems(sidecar, replace(ORIN, tensorrt="11.0.0")) == []
    (problem,) = compatibility_problems(sidecar, replace(ORIN, tensorrt="10.2.0"))
    assert "needs a runtime >= 10.3.0" in problem


def test_hardware_compatibility_levels():
    same_cc = make_sidecar(hardware_compatibility="same_compute_capability")
    assert compatibility_problems(same_cc, replace(ORIN, gpu="Orin NX")) == []
    assert compatibility_problems(same_cc, replace(ORIN, compute_capability="8.6"))
    ampere = make_sidecar(hardware_compatibility="ampere_plus")
    assert compatibility_problems(ampere, replace(ORIN, gpu="L4", compute_capability="8.9")) == []
    (problem,) = compatibility_problems(ampere, replace(ORIN, gpu="T4", compute_capability="7.5"))
    assert "needs compute capability >= 8.0" in problem


def test_a_replaced_engine_is_detected_by_its_hash():
    (problem,) = compatibility_problems(make_sidecar(engine_sha="abc"), ORIN, "xyz")
    assert "another build" in problem


def test_check_compatible_lists_every_problem_and_the_fix():
    env = replace(ORIN, tensorrt="10.7.0", gpu="RTX 4090", compute_capability="8.9")
    with pytest.raises(ModelFileError) as info:
        check_compatible("cbam.fp16.engine", make_sidecar(), env)
    message = str(info.value)
    assert "TensorRT 10.3.0" in message and "compute capability 8.7" in message
    assert "attn-export build cbam.fp16.onnx --precision fp16" in message
    check_compatible("cbam.fp16.engine", make_sidecar(), ORIN)  # no error


# --------------------------------------------------------------------------------------------------
# JetPack / L4T, CUDA and compute capability: recorded at build, checked before loading
# --------------------------------------------------------------------------------------------------

JP6_ORIN = RuntimeEnv("10.3.0.30", "Orin", "8.7", "12.6", "Linux aarch64", "36.4.3", "6")
JP72_ORIN = RuntimeEnv("10.16.1.11", "Orin", "8.7", "13.2", "Linux aarch64", "39.2.0", "7.2")
JP72_THOR = RuntimeEnv("10.16.1.11", "Thor", "11.0", "13.2", "Linux aarch64", "39.2.0", "7.2")


def _built_on(env: RuntimeEnv) -> EngineSidecar:
    return EngineSidecar(engine={"file": "m.engine"}, onnx={"file": "m.onnx"}, precision="fp16",
                         plan={}, built_with=env.to_dict(), profiles=[], workspace_bytes=None)


@pytest.mark.parametrize("built, here, expected", [
    (JP6_ORIN, JP72_ORIN, ["TensorRT 10.3.0.30", "CUDA 12.6", "JetPack 6 (L4T r36.4.3), this "
                           "machine is JetPack 7.2 (L4T r39.2.0)"]),
    (JP72_ORIN, JP72_THOR, ["compute capability 8.7 (Orin), this GPU (Thor) has 11.0"]),
    (JP72_ORIN, RuntimeEnv("10.16.1.11", "Orin", "8.7", "12.8", "Linux aarch64", "39.2.0", "7.2"),
     ["built with CUDA 13.2, this machine has CUDA 12.8"]),
    (JP72_ORIN, RuntimeEnv("10.16.1.11", "Orin", "8.7", "13.0", "Linux aarch64", "", ""),
     ["this machine is not a Jetson"]),
], ids=["jp6-on-jp7", "orin-on-thor", "cuda-major", "jetson-on-workstation"])
def test_what_differs_is_named_with_what_to_rebuild(built, here, expected):
    with pytest.raises(ModelFileError) as info:
        check_compatible("m.engine", _built_on(built), here)
    message = str(info.value)
    assert all(e in message for e in expected), message
    assert "\n" not in message and message.endswith("attn-export build m.onnx --precision fp16")


def test_same_jetpack_patch_release_and_cuda_minor_are_compatible():
    here = RuntimeEnv("10.16.1.11", "Orin", "8.7", "13.1", "Linux aarch64", "39.2.1", "7.2")
    assert compatibility_problems(_built_on(JP72_ORIN), here) == []


def test_sidecars_without_l4t_are_not_refused_for_it():
    old = _built_on(JP6_ORIN)
    old.built_with.pop("l4t")
    old.built_with.pop("jetpack")
    here = RuntimeEnv("10.3.0.30", "Orin", "8.7", "12.6", "Linux aarch64", "36.4.3", "6")
    assert old.env.l4t is None and compatibility_problems(old, here) == []


def test_the_runner_refuses_an_engine_of_another_jetpack(monkeypatch, tmp_path):
    """Built under JetPack 6 (L4T r36), loaded under JetPack 7.2: refused before deserialising."""
    from attn_export.export.engine_from_onnx import build_engine
    from attn_export.export.trt_build.settings import BuildOptions
    from attn_export.runtime.tensorrt_runner import TensorRTRunner
    from tests import fake_tensorrt
    from tests.relu_onnx import relu_onnx

    fake_tensorrt.install(monkeypatch, "10.3.0")
    release = tmp_path / "nv_tegra_release"
    monkeypatch.setenv("ATTN_EXPORT_TEGRA_RELEASE", str(release))
    release.write_text("# R36 (release), REVISION: 4.3, GCID: 1, BOARD: generic\n")
    relu_onnx(tmp_path / "m.onnx", (1, 4))
    built = build_engine(tmp_path / "m.onnx", BuildOptions(use_timing_cache=False))
    recorded = built.sidecar.built_with
    assert (recorded["l4t"], recorded["jetpack"], recorded["cuda_runtime"],
            recorded["compute_capability"], recorded["tensorrt"]) == ("36.4.3", "6", "12.6",
                                                                      "8.7", "10.3.0")
    with TensorRTRunner(built.engine_path):
        pass  # same machine: loads
    release.write_text("# R39 (release), REVISION: 2.0, GCID: 1, BOARD: generic\n")
    with pytest.raises(ModelFileError, match=r"built on JetPack 6 \(L4T r36.4.3\), this machine "
                                             r"is JetPack 7.2 \(L4T r39.2.0\)\. Rebuild it here"):
        TensorRTRunner(built.engine_path).load()
