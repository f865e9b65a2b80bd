"""Fixtures shared by the runtime tests."""

from __future__ import annotations

import pytest

from tests.trt_surface import VERSIONS, missing_reason, read_surface


@pytest.fixture(scope="module", params=VERSIONS)
def real(request) -> dict:
    """The whole surface of one real binding version."""
    reason = missing_reason(request.param)
    if reason:
        pytest.skip(reason)
    return read_surface(request.param)
