"""Shared fixtures and the auto-skips for TensorRT and GPU tests."""

from __future__ import annotations

import importlib.util

import pytest

from attn_export.modules.registry import block_info

TEST_SHAPE_HW = (16, 16)


def channels_for(name: str) -> int:
    """A width every block accepts (bottlenecks, head counts, group splits)."""
    return block_info(name).default_channels


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
