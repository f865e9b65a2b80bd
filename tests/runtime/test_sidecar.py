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
