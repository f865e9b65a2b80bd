"""Regenerate the generated tables of the docs pages from the registries (`make tables`).

The block catalog (`attn-export list --markdown`) lives in docs/blocks.md and the network table
(`attn-export model list --markdown`) in docs/networks.md, each between its marker comments;
tests/test_docs.py fails when either is stale.
"""

import re
from pathlib import Path

from attn_export.commands.list import markdown_table as blocks_table
from attn_export.commands.model import markdown_table as networks_table

DOCS = Path(__file__).resolve().parent.parent / "docs"
BLOCKS_PAGE = DOCS / "blocks.md"
NETWORKS_PAGE = DOCS / "networks.md"
BLOCKS = "<!-- blocks:start -->", "<!-- blocks:end -->"
NETWORKS = "<!-- networks:start -->", "<!-- networks:end -->"


def _replace(text: str, markers: tuple[str, str], table: str) -> str:
    """Put ``table`` between the two markers; fail loudly if the page lost them."""
    start, end = markers
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise SystemExit(f"the markers {start} ... {end} are missing: put them back where the table goes")
    return pattern.sub(lambda _: f"{start}\n{table}\n{end}", text)


def updated_pages() -> dict[Path, str]:
    """Each generated page's text as it should be, keyed by path."""
    return {
        BLOCKS_PAGE: _replace(BLOCKS_PAGE.read_text(), BLOCKS, blocks_table()),
        NETWORKS_PAGE: _replace(NETWORKS_PAGE.read_text(), NETWORKS, networks_table()),
    }


if __name__ == "__main__":
    for page, text in updated_pages().items():
        if page.read_text() != text:
            page.write_text(text)
            print(f"updated {page.relative_to(DOCS.parent)}")
