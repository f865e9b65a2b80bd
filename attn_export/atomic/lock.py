"""The per-folder writers' lock: ``fcntl.flock`` on ``FOLDER/.attn-export.lock``, re-entrant.

A second process waits (with a message) rather than failing: two runs into one folder are usually
a script or a repeated command, and serializing them gives both the result they asked for.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from attn_export.atomic.errors import OutputError, output_error
from attn_export.atomic.files import file_mode

LOCK_NAME = ".attn-export.lock"

_held: dict[str, list] = {}  # realpath -> [fd, depth]: re-entrant within this process
_held_guard = threading.Lock()


@contextlib.contextmanager
def folder_lock(folder: str | Path, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the writers' lock of ``folder`` (created if needed); block while another process has it.

    The lock file exists only while held. A folder this call created and that is empty at
    release is removed again, so a refused or interrupted first export leaves no trace.

    Args:
        folder: the output folder.
        on_wait: called once with a message when another process holds the lock (the CLI prints
            it), so a waiting command never looks hung.
    """
    folder = Path(folder)
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output folder {folder}: {exc.strerror or exc}; choose "
                          "another with --output-dir") from None
    key = os.path.realpath(folder)
    with _held_guard:
        entry = _held.get(key)
        if entry is not None:
            entry[1] += 1
    if entry is not None:
        try:
            yield
        finally:
            with _held_guard:
                entry[1] -= 1
        return
    fd = _acquire(folder, on_wait)
    with _held_guard:
        _held[key] = [fd, 1]
    try:
        yield
    finally:
        with _held_guard:
            _held.pop(key, None)
        _release(folder, fd, created)


def _release(folder: Path, fd: int, created: bool) -> None:
    """Remove the lock file (a waiter then re-opens a fresh one: see :func:`_acquire`) so the
    folder holds only the artefacts, and a folder this run created but left empty; then unlock."""
    with contextlib.suppress(OSError):
        (folder / LOCK_NAME).unlink()
    if created:
        with contextlib.suppress(OSError):
            folder.rmdir()  # only succeeds when empty: a failed first run leaves no trace
    os.close(fd)  # closing the descriptor releases the flock


def _acquire(folder: Path, on_wait: Callable[[str], None] | None) -> int:
    """Lock ``folder``'s lock file; retry when the holder removed the file meanwhile (a lock on an
    unlinked file would exclude nobody)."""
    lock_path = folder / LOCK_NAME
    told = False
    while True:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, file_mode())
        except OSError as exc:
            raise output_error(exc, folder, LOCK_NAME) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            if on_wait is not None and not told:
                on_wait(f"waiting for {holder} to finish writing in {folder} ...")
                told = True
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            same = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    with contextlib.suppress(OSError):  # who holds it, for the next waiter's message
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"attn-export pid {os.getpid()}".encode(), 0)
    return fd
