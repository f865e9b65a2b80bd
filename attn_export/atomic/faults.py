"""Fault points: named places where a test can deliver a real Ctrl-C (``ATTN_EXPORT_FAULT_AT``)."""

from __future__ import annotations

import os
import signal

FAULT_ENV = "ATTN_EXPORT_FAULT_AT"
"""Test hook: when this environment variable names a fault point (see :func:`fault_point`), the
process sends itself a real SIGINT there, so tests can interrupt every stage deterministically."""
FAULT_SIGNAL_ENV = "ATTN_EXPORT_FAULT_SIGNAL"
"""Test hook: the signal :func:`fault_point` sends, ``TERM`` for SIGTERM (default ``INT``)."""


def fault_point(name: str) -> None:
    """Deliver a real SIGINT here when ``ATTN_EXPORT_FAULT_AT`` is ``name`` (fault-injection tests).

    Costs one environment lookup otherwise. The signal goes through the normal handler, so what
    the user sees after a Ctrl-C at this point is exactly what the test sees.
    """
    if os.environ.get(FAULT_ENV) == name:
        os.kill(os.getpid(), getattr(signal, "SIG" + os.environ.get(FAULT_SIGNAL_ENV, "INT")))
