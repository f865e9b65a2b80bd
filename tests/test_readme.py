"""The README is the five-minute page: short, its Quickstart exactly the two commands, its links
live, and every `attn-export` command in it accepted by the CLI as written."""

import re
import shlex
from pathlib import Path

import click
import pytest

from attn_export.cli import main

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MAX_LINES = 250


def _fenced_blocks(text: str) -> list[str]:
    return re.findall(r"^```[a-z]*\n(.*?)^```", text, re.S | re.M)


def _commands(page: Path) -> list[str]:
    """The ``attn-export ...`` lines of the page's code blocks, comments cut."""
    lines = [line.split("  #")[0].strip() for block in _fenced_blocks(page.read_text())
             for line in block.splitlines()]
    return [line for line in lines if line.startswith("attn-export ")]


def _anchors(page: Path) -> set[str]:
    """Heading ids as MkDocs' toc extension makes them (lower case, punctuation dropped)."""
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
    slugs = set()
    for heading in re.findall(r"^#{1,6} (.+)$", text, re.M):
        slug = re.sub(r"[^\w\s-]", "", heading.replace("`", "")).strip().lower()
        slugs.add(re.sub(r"[-\s]+", "-", slug))
    return slugs


def test_quickstart_holds_exactly_two_commands():
    section = re.search(r"^## Quickstart(.*?)^## ", README.read_text(), re.S | re.M).group(1)
    block = re.search(r"```[a-z]*\n(.*?)```", section, re.S).group(1)
    assert [line for line in block.splitlines() if line.strip()] == ["make demo", "make test"]


def test_readme_is_a_five_minute_read():
    lines = README.read_text().count("\n")
    assert lines < MAX_LINES, f"README.md has {lines} lines; move detail to a docs/ page"


def test_every_verb_has_an_example():
    verbs = {shlex.split(c)[1] for c in _commands(README)}
    missing = set(main.commands) - verbs - {"export"}  # `attn-export BLOCK` is the export example
    assert not missing, f"README has no example of: {', '.join(sorted(missing))}"


def test_relative_links_reach_a_file_and_heading():
    links = re.findall(r"\]\(([^)#\s]+)(?:#([^)\s]+))?\)", README.read_text())
    local = [(path, anchor) for path, anchor in links if "://" not in path]
    assert local, "the README links into docs/"
    for path, anchor in local:
        target = ROOT / path
        assert target.is_file(), f"README links to {path}, which does not exist"
        if anchor:
            assert anchor in _anchors(target), f"README links to {path}#{anchor}: no such heading"


def _parse(args: list[str]) -> None:
    """Parse ``args`` as the CLI would (options, choices, shapes, --set values), invoking nothing."""
    with main.make_context("attn-export", list(args)) as ctx:
        name, cmd, rest = main.resolve_command(ctx, ctx.protected_args + ctx.args)
        cmd.make_context(name, rest, parent=ctx).close()


def assert_parses(command: str, folder: Path) -> None:
    """``command`` (``attn-export ...``) is accepted by the CLI as written, run from ``folder``.

    Paths the command reads are created empty there when click says they do not exist: this
    checks the verb, the flags and their values, not that the files hold a model.
    """
    args = shlex.split(command)[1:]
    for _ in range(5):
        try:
            return _parse(args)
        except click.BadParameter as exc:
            found = re.match(r"(File|Directory|Path) '(.+)' does not exist", exc.message)
            if not found:
                raise
            target = folder / found.group(2)
            if found.group(1) == "Directory":
                target.mkdir(parents=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.touch()
    pytest.fail(f"{command}: still missing paths after creating five")


@pytest.mark.parametrize("command", _commands(README))
def test_readme_command_parses(command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_parses(command, tmp_path)


def test_the_tier_table_lists_the_registry():
    from attn_export.modules.registry import list_blocks

    text = README.read_text()
    rows = dict(re.findall(r"^\| (\d) \| ([a-z_, ]+) \|$", text, re.M))
    assert {int(t): names.split(", ") for t, names in rows.items()} == \
        {t: sorted(list_blocks(tier=t)) for t in (1, 2, 3)}, "README's tier table is stale"
    assert f"{len(list_blocks())} blocks in three tiers" in text
