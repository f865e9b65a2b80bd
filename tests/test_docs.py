"""The docs' tables are generated from the registries (a stale one fails here: `make tables`),
and every `attn-export` command on a docs page is accepted by the CLI as written."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_readme import _commands, assert_parses
from tools.update_docs_tables import BLOCKS, NETWORKS, updated_pages

DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.mark.parametrize("page", ["blocks.md", "networks.md"])
def test_generated_table_matches_the_registry(page):
    pages = {path.name: (path, text) for path, text in updated_pages().items()}
    path, expected = pages[page]
    assert path.read_text() == expected, f"{path.name}: generated table is stale: run `make tables`"


def test_the_markers_hold_a_table():
    text = {path.name: text for path, text in updated_pages().items()}
    for page, (start, end) in (("blocks.md", BLOCKS), ("networks.md", NETWORKS)):
        table = text[page].split(start)[1].split(end)[0]
        assert table.count("\n|") > 5, f"{page}: the generated table is empty"


DOC_COMMANDS = [(page.name, command) for page in sorted(DOCS.glob("*.md"))
                for command in _commands(page)]


@pytest.mark.parametrize(("page", "command"), DOC_COMMANDS,
                         ids=[f"{p}:{c[12:60]}" for p, c in DOC_COMMANDS])
def test_docs_command_parses(page, command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_parses(command, tmp_path)


def _build(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d",
                           str(root / "site")], cwd=root, env=env, capture_output=True, text=True,
                          timeout=300)


def test_the_site_builds_strict_and_a_broken_anchor_fails_it(tmp_path):
    # `make docs` in CI is the gate; this keeps `make test` honest about the same config.
    pytest.importorskip("mkdocs", reason="the docs extra is not installed (pip install '.[docs]')")
    root = DOCS.parent
    shutil.copytree(DOCS, tmp_path / "docs")
    shutil.copy(root / "mkdocs.yml", tmp_path / "mkdocs.yml")
    built = _build(tmp_path)
    assert built.returncode == 0, built.stderr[-2000:]
    with (tmp_path / "docs" / "limits.md").open("a") as page:
        page.write("\nSee [the catalog](blocks.md#no-such-heading).\n")
    broken = _build(tmp_path)
    assert broken.returncode != 0 and "no-such-heading" in broken.stderr
