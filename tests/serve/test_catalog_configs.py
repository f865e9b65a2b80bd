"""Every catalog block in every shape mode it supports yields a Triton config that parses and
passes the load-time checks against the real exported graph's I/O.

Exported at a tiny shape with the TorchScript exporter only (no simplification or validation:
the block matrix test covers those), so the whole catalog takes well under a minute.
"""

from __future__ import annotations

import json

import pytest

from attn_export.export.onnx_from_torch import onnx_from_torch
from attn_export.modules.factory import create_block
from attn_export.modules.registry import BLOCKS, list_blocks
from attn_export.serve.config import BatchOptions, parse_config, to_pbtxt
from attn_export.serve.config_checks import check_config
from attn_export.serve.repository import plan_model, source_from_export
from tests.conftest import TEST_SHAPE_HW, channels_for

CASES = [(name, mode) for name in list_blocks() for mode in BLOCKS[name].shape_modes]


@pytest.mark.parametrize("name, mode", CASES, ids=[f"{n}-{m}" for n, m in CASES])
def test_block_config_parses_and_passes_the_checks(tmp_path, name, mode):
    channels, hw = channels_for(name), (8, 8)
    kwargs = {}
    if BLOCKS[name].needs_geometry:  # as the pipeline does: pools sized from the export geometry
        hw = TEST_SHAPE_HW
        kwargs["input_size"] = hw
    onnx_from_torch(create_block(name, channels, **kwargs), (1, channels, *hw), tmp_path / f"{name}.onnx",
                    dynamic=mode)
    (tmp_path / "report.json").write_text(json.dumps({"block": name, "files": {"onnx": f"{name}.onnx"}}))
    planned = plan_model(name, source_from_export(tmp_path), "plan", BatchOptions(max_queue_delay_us=100))
    cfg = parse_config(to_pbtxt(planned.config))
    check_config(cfg, planned.spec)
    assert cfg.max_batch_size == (0 if mode == "none" else 8)
    dims = list(cfg.input[0].dims)
    if mode == "none":
        assert dims == [1, channels, *hw]
    else:
        assert dims[0] == channels and (dims[1:] == [-1, -1]) == (mode == "all")
