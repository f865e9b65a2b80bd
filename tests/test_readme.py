"""The README is generated where it can be and checked where it cannot."""

import re

from tools.update_readme import README, updated


def test_block_table_matches_the_registry():
    text = README.read_text()
    assert updated(text) == text, "README block table is stale: run `make readme`"


def test_quickstart_holds_exactly_two_commands():
    section = re.search(r"^## Quickstart(.*?)^## ", README.read_text(), re.S | re.M).group(1)
    block = re.search(r"```[a-z]*\n(.*?)```", section, re.S).group(1)
    assert [line for line in block.splitlines() if line.strip()] == ["make demo", "make test"]
