"""An export into another mount (a Docker volume, tmpfs) must work: os.replace cannot cross mounts.

Found by make docker-test: `docker run -v $PWD/exports:/out IMAGE cbam --output-dir /out/cbam`
failed with EXDEV while the scratch folder lived in the container's /tmp.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from attn_export.export.pipeline import ExportRequest, export_block

SHM = Path("/dev/shm")


@pytest.mark.skipif(not SHM.is_dir() or os.stat(SHM).st_dev == os.stat(tempfile.gettempdir()).st_dev,
                    reason="needs /dev/shm on another filesystem than the temp folder")
def test_export_into_another_filesystem(tmp_path):
    out = Path(tempfile.mkdtemp(dir=SHM, prefix="attn-export-test-"))
    try:
        result = export_block(ExportRequest(block="se", input_shape=(1, 16, 8, 8), output_dir=out / "se"))
        assert result.passed
        assert sorted(p.name for p in (out / "se").iterdir()) == ["report.json", "se.golden.npz", "se.onnx"]
    finally:
        import shutil

        shutil.rmtree(out, ignore_errors=True)
