"""`make bench` writes the end-to-end table into the speed page, labelled with its conditions."""

from tools.bench_blocks import MARKERS, main


def test_bench_writes_the_table_between_the_markers(tmp_path):
    page = tmp_path / "speed.md"
    page.write_text(f"# Speed\n\nbefore\n\n{MARKERS[0]}\nold table\n{MARKERS[1]}\n\nafter\n")
    assert main(["--blocks", "se", "--shapes", "1x32x16x16", "--rounds", "2",
                 "--threads", "1", "--write", str(page)]) == 0
    text = page.read_text()
    section = text.split(MARKERS[0])[1].split(MARKERS[1])[0]
    assert "old table" not in section and text.startswith("# Speed\n\nbefore") and "after" in text
    assert "load average" in section and "ONNX Runtime" in section
    row = next(line for line in section.splitlines() if line.startswith("| se | 1x32x16x16 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert len(cells) == 9 and float(cells[2]) > 0 and float(cells[6]) > 0
    assert cells[8] in ("faster", "same within noise", "**slower**")
    named = "`se` at 1x32x16x16" in section
    assert named == (cells[8] != "faster"), "the not-faster sentence must name exactly those rows"
