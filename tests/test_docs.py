"""The docs' tables are generated from the registries; a stale one fails here (`make tables`)."""

import pytest

from tools.update_docs_tables import BLOCKS, NETWORKS, updated_pages


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
