"""The recipes under docker/ follow the image policy, and each rule fires on a recipe that breaks it."""

from __future__ import annotations

import pytest
from dockerfile_policy import (
    DOCKER,
    JETPACKS,
    base_violations,
    copied_requirements,
    jetpack6_numpy_violations,
    jetson_violations,
    parse,
    pip_installs,
    pip_violations,
    python_stage_base,
    requirement_lines,
    runtime_violations,
)

RECIPES = ["Dockerfile.jetson", "Dockerfile"]


@pytest.fixture(params=RECIPES)
def recipe(request):
    return request.param, parse((DOCKER / request.param).read_text())


def test_bases_are_the_pinned_defaults_and_stages_chain(recipe):
    name, df = recipe
    assert base_violations(df, name) == []


def test_base_is_replaceable_with_a_build_arg(recipe):
    name, _df = recipe
    arg = "BASE" if name == "Dockerfile" else "BASE_JP7"
    df = parse((DOCKER / name).read_text(), {arg: "localhost/base:test"})
    assert python_stage_base(df) == "localhost/base:test"


@pytest.mark.parametrize("jetpack", sorted(JETPACKS))
def test_jetpack_build_arg_picks_the_base_and_its_requirements(jetpack):
    """JetPack 7.2 by default, JetPack 6 with --build-arg JETPACK=6: each on NVIDIA's documented
    base, each with its own pinned requirements file."""
    text = (DOCKER / "Dockerfile.jetson").read_text()
    df = parse(text, {"JETPACK": jetpack})
    assert python_stage_base(df) == JETPACKS[jetpack]
    assert [p.name for p in copied_requirements(df, {"JETPACK": jetpack})] == [
        f"requirements-jetson-jp{jetpack}.txt", f"requirements-jetson-jp{jetpack}-ort-gpu.txt"]
    assert python_stage_base(parse(text)) == JETPACKS["7"]  # the default target


def test_pip_installs_only_from_the_requirements_files(recipe):
    _name, df = recipe
    assert len(pip_installs(df)) >= 2
    assert pip_violations(df) == []


def test_every_copied_requirements_file_exists_and_is_pinned(recipe):
    name, df = recipe
    for jetpack in (sorted(JETPACKS) if name == "Dockerfile.jetson" else ["-"]):
        files = copied_requirements(df, {"JETPACK": jetpack})
        assert files
        for path in files:
            lines = requirement_lines(path)
            assert lines and all("==" in ln for ln in lines), path


def test_serving_contract_user_and_no_baked_certificate(recipe):
    _name, df = recipe
    assert runtime_violations(df) == []


@pytest.mark.parametrize("jetpack", sorted(JETPACKS))
def test_jetson_image_has_no_torch_and_no_pip_tensorrt(jetpack):
    df = parse((DOCKER / "Dockerfile.jetson").read_text(), {"JETPACK": jetpack})
    requirements = [ln for p in copied_requirements(df, {"JETPACK": jetpack})
                    for ln in requirement_lines(p)]
    assert jetson_violations(df, requirements) == []
    if jetpack == "6":
        assert jetpack6_numpy_violations(requirements) == []


BAD = """ARG BASE=ubuntu:latest
FROM ${BASE} AS python
FROM debian:12 AS other
ENV PIP_CERT=/etc/ssl/ca.pem
COPY ca.pem /etc/ssl/
RUN pip install torch==2.5.1 && python3 -c "import tensorrt"
RUN pip install -r requirements.txt
USER root
ENTRYPOINT ["python3"]
"""


def test_each_rule_fires_on_a_recipe_that_breaks_it():
    df = parse(BAD)
    assert len(base_violations(df, "Dockerfile.jetson")) == 2  # ubuntu:latest, stray debian stage
    assert len(pip_violations(df)) == 2  # a bare package, a file outside docker/
    runtime = runtime_violations(df)
    # entrypoint (no init), cmd, healthcheck, image ENV, expose, root, ENV PIP_CERT, COPY
    assert len(runtime) == 8, runtime
    jetson = jetson_violations(df, ["torch==2.5.1", "tensorrt-cu12==10.3.0", "numpy==2.2.6"])
    assert len(jetson) == 4, jetson  # torch, tensorrt (requirements), import, pip torch
    assert len(jetpack6_numpy_violations(["numpy==2.2.6"])) == 1


def test_a_healthcheck_pinned_to_port_8000_is_refused():
    df = parse('''HEALTHCHECK CMD ["python3", "-c", "urlopen('http://127.0.0.1:8000/v2/health/ready')"]\n''')
    assert any("HEALTHCHECK" in v for v in runtime_violations(df))
