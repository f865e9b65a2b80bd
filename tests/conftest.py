"""Shared fixtures and the auto-skips for TensorRT and GPU tests."""

from __future__ import annotations

import importlib.util

import pytest

from attn_export.modules.registry import block_info

TEST_SHAPE_HW = (16, 16)


def channels_for(name: str) -> int:
    """A width every block accepts (bottlenecks, head counts, group splits)."""
    return block_info(name).default_channels


def exhaustive(cases, keep: int = 1, unpack: bool = False) -> list:
    """Parametrize ``cases`` so the first ``keep`` run in the default suite and the rest are
    marked slow (``make test-slow``): the default suite keeps one representative case per
    behaviour, the slow suite the whole sweep. Put the most demanding case first (odd sizes,
    H != W, batch > 1). ``unpack``: each case is a tuple of several argument values.
    """
    def slow(case):
        return pytest.param(*case if unpack else (case,), marks=pytest.mark.slow)

    return [case if i < keep else slow(case) for i, case in enumerate(cases)]


def pytest_collection_modifyitems(config, items):
    has_trt = importlib.util.find_spec("tensorrt") is not None
    has_gpu = False
    if importlib.util.find_spec("torch") is not None:
        import torch

        has_gpu = torch.cuda.is_available()
    for item in items:
        if item.get_closest_marker("trt") and not has_trt:
            item.add_marker(pytest.mark.skip(
                reason="TensorRT is not importable here (pip install tensorrt on a CUDA machine)"))
        if item.get_closest_marker("gpu") and not has_gpu:
            item.add_marker(pytest.mark.skip(reason="no CUDA device on this machine"))
