"""The README is the five-minute page: its Quickstart is exactly the two commands."""

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_quickstart_holds_exactly_two_commands():
    section = re.search(r"^## Quickstart(.*?)^## ", README.read_text(), re.S | re.M).group(1)
    block = re.search(r"```[a-z]*\n(.*?)```", section, re.S).group(1)
    assert [line for line in block.splitlines() if line.strip()] == ["make demo", "make test"]
