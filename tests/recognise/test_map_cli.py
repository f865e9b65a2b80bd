"""``--map CLASS=BLOCK[:SOURCE]`` on ``model`` and ``scan``: validated early, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from attn_export.cli import main
from tests.recognise import nets

NETS = Path(nets.__file__)


@pytest.mark.parametrize("text, expected", [
    ("cbam_block", "expected CLASS=BLOCK[:SOURCE]"),
    ("=cbam", "expected CLASS=BLOCK[:SOURCE]"),
    ("cbam_block=nosuch", "nosuch"),
    ("cbam_block=cbam:nosuch", "cbam has no layout 'nosuch'"),
], ids=["no-equals", "no-class", "unknown-block", "unknown-source"])
def test_a_bad_map_is_refused_before_anything_is_built(text, expected, tmp_path):
    result = CliRunner().invoke(main, ["model", f"{NETS}:lookalike_net", "--map", text,
                                       "--output-dir", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert expected in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_a_map_naming_no_class_of_the_network_is_one_line(tmp_path):
    result = CliRunner().invoke(main, ["scan", f"{NETS}:lookalike_net", "--input-shape",
                                       "1x3x16x16", "--map", "NoSuchAttention=cbam"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "error: --map 'NoSuchAttention=cbam': the network holds no module of class "
        "'NoSuchAttention'; `attn-export scan NETWORK` lists its attention-like modules and "
        "their classes"]


def test_a_mapped_class_is_converted_as_mapped():
    result = CliRunner().invoke(main, ["scan", f"{NETS}:pasted_net", "--input-shape",
                                       "1x3x16x16", "--map", "seed_listings.cbam_block=cbam"])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if line.split()[1:2] == ["cbam_block"]]
    assert len(rows) == 1 and rows[0].split()[2:5] == ["map", "cbam", rows[0].split()[4]]
    assert rows[0].rstrip().endswith("swap")


def test_model_with_map_reports_the_mapped_block(tmp_path):
    result = CliRunner().invoke(main, ["model", f"{NETS}:lookalike_net", "--input-shape",
                                       "1x3x16x16", "--map", "LookalikeCBAM=cbam",
                                       "--output-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "LookalikeCBAM -> 'cbam'" in result.output and "outputs differ" in result.output
    assert "Traceback" not in result.output
