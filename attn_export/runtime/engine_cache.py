"""One deserialised engine per plan file and device, shared by the runners that serve it.

A server with N instances of one model would otherwise hold N copies of the engine's weights; on
a Jetson, where the GPU shares the CPU's memory, that is N times the model in RAM. Triton's
TensorRT backend shares one ``ICudaEngine`` per device and gives each instance its own
``IExecutionContext``; :func:`share_engine` does the same. An engine is keyed by the plan's
resolved path, size and modification time (a rebuilt plan is a new engine) and the device, and
is dropped when the last runner holding it releases it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from attn_export.runtime.trt_engine import OpenedEngine

_LOCK = threading.Lock()
_SHARED: dict[tuple, _Entry] = {}


@dataclass
class _Entry:
    opened: OpenedEngine
    users: int = 0


def engine_key(path: str | Path, device: int = 0) -> tuple:
    """What makes two plan files the same engine: the file itself, unchanged, on one device."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    return str(resolved), stat.st_size, stat.st_mtime_ns, device


def share_engine(path: str | Path, load: Callable[[], OpenedEngine], device: int = 0
                 ) -> tuple[tuple, OpenedEngine]:
    """The shared engine of ``path`` on ``device``, loaded with ``load()`` by the first caller.

    Returns the key to pass to :func:`release_engine` and the engine. Loading happens under the
    lock, so N instances starting together deserialise once.
    """
    key = engine_key(path, device)
    with _LOCK:
        entry = _SHARED.get(key)
        if entry is None:
            entry = _SHARED[key] = _Entry(load())
        entry.users += 1
        return key, entry.opened


def release_engine(key: tuple) -> None:
    """One user fewer; the engine (and its runtimes) go when none is left."""
    with _LOCK:
        entry = _SHARED.get(key)
        if entry is None:
            return
        entry.users -= 1
        if entry.users <= 0:
            del _SHARED[key]


def shared_engines() -> dict[tuple, int]:
    """Key -> number of users, for diagnostics and tests."""
    with _LOCK:
        return {key: entry.users for key, entry in _SHARED.items()}
