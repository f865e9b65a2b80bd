"""Regenerate the README's block table from the registry (`make readme`)."""

import re
from pathlib import Path

from attn_export.cli import markdown_table

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- blocks:start -->", "<!-- blocks:end -->"


def updated(text: str) -> str:
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    return pattern.sub(lambda _: f"{START}\n{markdown_table()}\n{END}", text)


if __name__ == "__main__":
    README.write_text(updated(README.read_text()))
