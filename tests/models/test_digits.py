"""The trained digits network: its committed weights, its reproducibility, its accuracy table."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("sklearn")

from attn_export.models.digits import WEIGHTS, DigitsNet, digits_net, digits_split, top1  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _tool(name: str):
    if f"tools_{name}" in sys.modules:
        return sys.modules[f"tools_{name}"]
    spec = importlib.util.spec_from_file_location(f"tools_{name}", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


def test_split_is_fixed_and_disjoint():
    x_train, y_train, x_test, y_test = digits_split()
    assert x_train.shape == (1400, 1, 32, 32) and x_test.shape == (397, 1, 32, 32)
    assert -1.0 <= x_train.min() and x_train.max() <= 1.0
    assert set(np.unique(y_test)) == set(range(10))
    again = digits_split()
    np.testing.assert_array_equal(again[2], x_test)
    train_rows = {r.tobytes() for r in x_train}
    assert sum(r.tobytes() in train_rows for r in x_test) < 10  # digits has a few duplicates


def test_committed_weights_are_trained():
    """Loads strictly and classifies the held-out split: random weights score ~10%."""
    assert WEIGHTS.stat().st_size < 200 * 1024
    net = digits_net(pretrained=True)
    _, _, x_test, y_test = digits_split()
    with torch.no_grad():
        acc = top1(net(torch.from_numpy(x_test)).numpy(), y_test)
    assert acc >= 0.98
    with torch.no_grad():
        untrained = top1(DigitsNet().eval()(torch.from_numpy(x_test)).numpy(), y_test)
    assert untrained < 0.5


def test_training_is_reproducible():
    train = _tool("train_digits").train
    a = train(1, progress=lambda _: None).state_dict()
    b = train(1, progress=lambda _: None).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_accuracy_table_in_the_docs_is_what_the_tool_measures():
    """The docs table is generated: ``python tools/accuracy.py --markdown docs/accuracy.md``."""
    tool = _tool("accuracy")
    rows = tool.measure(progress=lambda _: None)
    by = {r.label: r.top1 for r in rows}
    assert by["INT8, gates float"] >= by["PyTorch fp32"] - 0.01
    assert tool.markdown(rows, 397) in (ROOT / "docs" / "accuracy.md").read_text()


def test_accuracy_tool_on_a_subset():
    tool = _tool("accuracy")
    rows = tool.measure(limit=40, progress=lambda _: None)
    labels = [r.label for r in rows]
    assert labels[:6] == ["PyTorch fp32", "ONNX fp32", "ONNX fp16", "INT8, gates float",
                          "INT8, gates quantized", "ORT default"]
    by = {r.label: r for r in rows}
    assert by["ONNX fp32"].agreement == 1.0 and by["ONNX fp32"].rel_l2 < 1e-5
    assert 0 < by["ONNX fp16"].rel_l2 < 1e-2
    # INT8 moves the logits more than FP16 does: a quantized graph that changed nothing is broken
    assert by["INT8, gates float"].rel_l2 > by["ONNX fp16"].rel_l2
    assert all(0.0 <= r.top1 <= 1.0 for r in rows)
