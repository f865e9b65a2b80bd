"""The recipes under docker/ follow the image policy, and each rule fires on a recipe that breaks it."""

from __future__ import annotations

import pytest
from dockerfile_policy import (
    DOCKER,
    base_violations,
    copied_requirements,
    jetson_violations,
    parse,
    pip_installs,
    pip_violations,
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
    df = parse((DOCKER / name).read_text(), {"BASE": "localhost/base:test"})
    assert df.parent_images[0] == "localhost/base:test"


def test_pip_installs_only_from_the_requirements_files(recipe):
    _name, df = recipe
    assert len(pip_installs(df)) >= 2
    assert pip_violations(df) == []


def test_every_copied_requirements_file_exists_and_is_pinned(recipe):
    _name, df = recipe
    files = copied_requirements(df)
    assert files
    for path in files:
        lines = requirement_lines(path)
        assert lines and all("==" in ln for ln in lines), path


def test_serving_contract_user_and_no_baked_certificate(recipe):
    _name, df = recipe
    assert runtime_violations(df) == []


def test_jetson_image_has_no_torch_no_pip_tensorrt_and_numpy_below_2():
    df = parse((DOCKER / "Dockerfile.jetson").read_text())
    requirements = [ln for p in copied_requirements(df) for ln in requirement_lines(p)]
    assert jetson_violations(df, requirements) == []


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
    assert len(runtime) == 7, runtime  # entrypoint, cmd, healthcheck, expose, root, ENV, COPY
    jetson = jetson_violations(df, ["torch==2.5.1", "tensorrt-cu12==10.3.0", "numpy==2.2.6"])
    assert len(jetson) == 5, jetson  # torch, tensorrt (requirements), import, pip torch, numpy 2
