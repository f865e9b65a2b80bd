"""Verdicts on the user's data: held-out ``--calib-data`` samples, seeded maps far outside the data
reported apart, and natural images (scikit-learn's photographs and digits)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from attn_export.cli import main
from attn_export.export.heldout import heldout_indices, input_kinds, split_calibration
from attn_export.runtime.golden import load_golden
from attn_export.runtime.natural_inputs import digits, natural_cases, photographs

USER_NET = '''
from torch import nn
from attn_export.modules.cbam import CBAMReference


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU())
        self.att = CBAMReference(16, ratio=4)
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        return self.head(self.att(self.stem(x)).mean((2, 3)))


def build():
    return Net()
'''


@pytest.mark.parametrize("count, held", [(1, []), (2, [1]), (3, [2]), (4, [3]), (9, [3, 7]),
                                         (64, [3, 7, 11, 15, 19, 23, 27, 31])],
                         ids=["one", "two", "three", "four", "nine", "capped"])
def test_heldout_indices(count, held):
    assert heldout_indices(count) == held
    calib, out = split_calibration([{"i": np.array(i)} for i in range(count)])
    assert len(calib) + len(out) == count and all(int(f["i"]) in held for f in out)


def test_seeded_maps_far_outside_the_data_are_out_of_range():
    data = np.linspace(-1, 2, 100, dtype=np.float32)
    cases = [("normal", np.random.default_rng(0).standard_normal(100).astype(np.float32)),
             ("relu_large", np.linspace(0, 30, 100, dtype=np.float32)), ("mine", data)]
    kinds = input_kinds(cases, ["normal", "relu_large"], [], ["mine"])
    assert kinds == {"normal": "seeded", "relu_large": "user-out-of-range",
                     "mine": "user-heldout"}
    assert input_kinds(cases, ["normal", "relu_large"], [], [])["relu_large"] == "seeded"
    natural = input_kinds(cases, ["normal", "relu_large"], ["mine"], [])
    assert natural["relu_large"] == "user-out-of-range" and natural["mine"] == "natural"


def test_natural_images_are_shaped_to_the_input():
    photo = photographs((2, 3, 24, 40))
    assert photo.shape == (2, 3, 24, 40) and photo.dtype == np.float32
    assert -2.2 < photo.min() < 0 < photo.max() < 2.7  # ImageNet-normalised
    assert not np.allclose(photo[0], photo[1])  # the two photographs
    maps = digits((1, 5, 16, 16))
    assert maps.min() >= 0 and maps.max() <= 1 and len({float(m.sum()) for m in maps[0]}) == 5
    assert natural_cases((1, 8, 16, 16))[0][0] == "digits@1x8x16x16"


def test_user_data_judges_on_heldout_samples_and_keeps_seeded_maps_apart(tmp_path):
    net = tmp_path / "net.py"
    net.write_text(USER_NET)
    calib = tmp_path / "calib"
    calib.mkdir()
    images = photographs((8, 3, 32, 32)) * 0.5 + 0.5  # a network trained on about [-1, 2]
    rng = np.random.default_rng(0)
    for i in range(8):
        jitter = rng.standard_normal(images[i].shape).astype(np.float32) * 0.05
        np.save(calib / f"img{i}.npy", (images[i] + jitter)[None])
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["model", f"{net}:build", "--input-shape", "1x3x32x32",
                                       "--precision", "int8", "--calib-data", str(calib),
                                       "--natural-inputs", "--output-dir", str(out)])
    assert "Traceback" not in result.output, result.output
    gold = load_golden(out / "net.golden.npz")
    kinds = gold.meta["input_kinds"]
    assert kinds["heldout3@1x3x32x32"] == kinds["heldout7@1x3x32x32"] == "user-heldout"
    assert kinds["relu_large@1x3x32x32"] == "user-out-of-range"
    assert kinds["photo@1x3x32x32"] == "natural"
    held = gold.cases[[c.name for c in gold.cases].index("heldout3@1x3x32x32")].inputs["input"]
    np.testing.assert_array_equal(held, np.load(calib / "img3.npy"))  # the very sample
    assert "6 samples from" in result.output and "(2 more held out for validation)" in \
        result.output  # calibration never read the held-out samples
    report = json.loads((out / "report.json").read_text())
    rows = report["int8"]["metrics"]
    apart = [r for r in rows if r["input_kind"] == "user-out-of-range"]
    assert apart and all(r["passed"] for r in apart)  # reported apart: they decide nothing
    assert "reported apart" in result.output
    used = {u["kind"] for u in report["inputs_used"]}
    assert {"seeded", "natural", "user-heldout", "user-out-of-range"} <= used


def test_natural_inputs_validate_and_calibrate_a_block(tmp_path):
    """--natural-inputs: a digits case judged beside the seeded maps, and INT8 calibrated on
    other natural samples (never the validated one) instead of seeded maps."""
    out = tmp_path / "cbam"
    result = CliRunner().invoke(main, ["cbam", "--input-shape", "1x16x16x16", "--natural-inputs",
                                       "--precision", "int8", "--output-dir", str(out)])
    assert "Traceback" not in result.output, result.output
    assert "calibration: 16 natural images (scikit-learn's digits" in result.output
    gold = load_golden(out / "cbam.golden.npz")
    assert gold.meta["input_kinds"]["digits@1x16x16x16"] == "natural"
    # calibrated on digits in [0, 1]: the post-ReLU map of magnitude 30 is reported apart
    assert gold.meta["input_kinds"]["relu_large@1x16x16x16"] == "user-out-of-range"
    assert result.exit_code == 0 and "reported apart" in result.output
    report = json.loads((out / "report.json").read_text())
    row = next(r for r in report["int8"]["metrics"] if r["case"] == "digits@1x16x16x16")
    assert row["input_kind"] == "natural" and row["floor"]["kind"] == "fake-quant-int8"
