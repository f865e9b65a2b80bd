"""Regenerate the README's block table from the registry (`make readme`)."""

import re
from pathlib import Path

from attn_export.commands.list import markdown_table
from attn_export.commands.model import markdown_table as networks_table

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- blocks:start -->", "<!-- blocks:end -->"
NETWORKS = "<!-- networks:start -->", "<!-- networks:end -->"


def updated(text: str) -> str:
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    text = pattern.sub(lambda _: f"{START}\n{markdown_table()}\n{END}", text)
    nets = re.compile(re.escape(NETWORKS[0]) + ".*?" + re.escape(NETWORKS[1]), re.S)
    return nets.sub(lambda _: f"{NETWORKS[0]}\n{networks_table()}\n{NETWORKS[1]}", text)


if __name__ == "__main__":
    README.write_text(updated(README.read_text()))
