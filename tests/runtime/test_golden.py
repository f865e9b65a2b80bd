import numpy as np
import pytest

from attn_export.errors import ModelFileError
from attn_export.runtime.golden import Golden, GoldenCase, load_golden, save_golden


def _golden():
    x = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4)
    return Golden([GoldenCase("normal@1x2x3x4", {"input": x}, {"output": x * 2})],
                  {"block": "se", "cases": ["normal@1x2x3x4"]})


def test_round_trip(tmp_path):
    path = tmp_path / "g.npz"
    save_golden(path, _golden())
    back = load_golden(path)
    assert back.meta["block"] == "se"
    assert np.array_equal(back.cases[0].outputs["output"], _golden().cases[0].outputs["output"])
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left


def test_truncated_file_is_refused_clearly(tmp_path):
    path = tmp_path / "g.npz"
    save_golden(path, _golden())
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(ModelFileError, match="corrupt or truncated"):
        load_golden(path)


def test_foreign_npz_and_missing_file(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, a=np.zeros(2))
    with pytest.raises(ModelFileError, match="no 'meta'"):
        load_golden(path)
    with pytest.raises(ModelFileError, match="does not exist"):
        load_golden(tmp_path / "missing.npz")
