"""Atomic writes: a failed or interrupted step never leaves half a file, or half a set, behind.

Two levels:

- :func:`write_atomic` writes one file through a temporary file beside it and renames it over
  the target (same folder, so the rename never crosses a filesystem).
- :class:`ArtefactSet` writes a whole *set* of files (an export's ONNX, golden file and report; a
  precision graph and the report update; an engine and its sidecar; a serving repository) as one
  transaction. Every file is written by a callback into a staging folder created *inside* the
  target folder, so the final ``os.replace`` calls never cross a filesystem (Docker volumes, NFS,
  a tmpfs ``/tmp``: ``os.replace`` across filesystems fails with EXDEV). The caller validates the
  staged files, then :meth:`ArtefactSet.commit` moves them into place:

  1. every staged file is fsynced and a journal (``COMMIT.json``: what moves, what is removed) is
     written atomically into the staging folder: from here on the set is decided;
  2. the files are renamed into place and stale files of the previous set removed; SIGINT and
     SIGTERM are deferred through steps 1-3 (a Ctrl-C lands after the last rename, not between
     two of them);
  3. the journal and the staging folder are removed.

  An exception or Ctrl-C before the commit discards the staging folder: the previous set is intact
  and nothing new appears. A process killed outright (SIGKILL, power loss) during step 2 leaves
  the journal; the next :class:`ArtefactSet` on that folder finishes those renames first (roll
  forward), so the folder again holds one complete set. Readers never need the journal: the
  report records every artefact's sha256, and ``attn-export validate`` refuses a model and golden
  file that do not belong together.

  Writers are serialized per folder by :func:`folder_lock` (``fcntl.flock`` on
  ``FOLDER/.attn-export.lock``, present only while held), which :class:`ArtefactSet` takes for
  its whole life.
  The lock is re-entrant within a process, so a command can hold it across several sets (export,
  then the precision graph that reads the export) and a second process waits, with a message,
  until the first one is done. We wait rather than refuse: two runs into one folder are usually a
  script or a repeated command, and serializing them gives both the result they asked for, in
  order (the last one's set stays), where refusing would turn a harmless overlap into a failure.

Usage::

    with ArtefactSet(out, remove=["cbam.fp16.onnx"]) as txn:
        onnx_path = txn.write("cbam.onnx", lambda tmp: onnx.save(model, str(tmp)))
        check(onnx_path)                       # validate the staged file
        txn.write_text("report.json", text)
    # committed on a clean exit; discarded on any exception (the folder is as it was)

Errors writing a set (no space, read-only folder, permission) are :class:`OutputError` with one
line that names the folder and the fix.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from attn_export.errors import AttnExportError
from attn_export.termination import redeliver

LOCK_NAME = ".attn-export.lock"
STAGING_PREFIX = ".attn-export-staging-"
JOURNAL_NAME = "COMMIT.json"
FAULT_ENV = "ATTN_EXPORT_FAULT_AT"
"""Test hook: when this environment variable names a fault point (see :func:`fault_point`), the
process sends itself a real SIGINT there, so tests can interrupt every stage deterministically."""
FAULT_SIGNAL_ENV = "ATTN_EXPORT_FAULT_SIGNAL"
"""Test hook: the signal :func:`fault_point` sends, ``TERM`` for SIGTERM (default ``INT``)."""


class OutputError(AttnExportError):
    """The output folder cannot take the files: no space, read-only, no permission.

    ``errno`` keeps the cause, so a set staging a file through :func:`write_atomic` can restate
    the error for the folder the user named rather than the staging folder.
    """

    def __init__(self, message: str, errno_code: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno_code


def fault_point(name: str) -> None:
    """Deliver a real SIGINT here when ``ATTN_EXPORT_FAULT_AT`` is ``name`` (fault-injection tests).

    Costs one environment lookup otherwise. The signal goes through the normal handler, so what
    the user sees after a Ctrl-C at this point is exactly what the test sees.
    """
    if os.environ.get(FAULT_ENV) == name:
        os.kill(os.getpid(), getattr(signal, "SIG" + os.environ.get(FAULT_SIGNAL_ENV, "INT")))


def output_error(exc: OSError | OutputError, folder: Path, what: str = "") -> OutputError:
    """One line for an OSError met while writing into ``folder``: what happened and the fix."""
    code = exc.errno
    target = f" {what}" if what else ""
    if code in (errno.ENOSPC, errno.EDQUOT):
        message = (f"no space left on the device of {folder} while writing{target}; free some "
                   "space or choose another --output-dir (nothing was changed)")
    elif code == errno.EROFS:
        message = f"{folder} is on a read-only filesystem; choose another --output-dir"
    elif code in (errno.EACCES, errno.EPERM):
        message = f"no permission to write in {folder}; choose another --output-dir"
    else:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        message = f"cannot write{target} in {folder}: {why}; choose another --output-dir"
    return OutputError(message, code)


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise output_error(exc, path.parent, path.name) from None
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; exports are for sharing
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise output_error(exc, path.parent, path.name) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text))


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (engines and golden files can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# -- the per-folder lock ------------------------------------------------------------------------

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
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
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


# -- the transaction ----------------------------------------------------------------------------

class ArtefactSet:
    """A set of files written together into ``folder``: all of them land, or none (see module doc).

    Args:
        folder: the target folder (created if needed).
        remove: names in ``folder`` that the new set supersedes (e.g. a stale BLOCK.fp16.onnx
            derived from the previous BLOCK.onnx); removed at commit, kept if the set is discarded.
        on_wait: see :func:`folder_lock`.
    """

    def __init__(self, folder: str | Path, remove: Iterable[str] = (),
                 on_wait: Callable[[str], None] | None = None) -> None:
        self.folder = Path(folder)
        self.remove = [n for n in remove]
        self._on_wait = on_wait
        self._names: list[str] = []
        self._staging: Path | None = None
        self._lock: contextlib.AbstractContextManager | None = None
        self.committed = False
        self._decided = False

    def __enter__(self) -> ArtefactSet:
        self._lock = folder_lock(self.folder, self._on_wait)
        self._lock.__enter__()
        try:
            recover(self.folder)
            self._staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.folder))
        except OSError as exc:
            self._lock.__exit__(None, None, None)
            raise output_error(exc, self.folder) from None
        except BaseException:
            self._lock.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None and not self.committed:
                self.commit()
        finally:
            # once the journal is written the set is decided: a commit that failed midway keeps
            # its staging folder so the next writer rolls it forward (see recover)
            if self._staging is not None and not self.committed and not self._decided:
                shutil.rmtree(self._staging, ignore_errors=True)
            assert self._lock is not None
            self._lock.__exit__(None, None, None)

    def path(self, name: str) -> Path:
        """Where ``name`` is staged (valid until commit): validate the staged file here."""
        if self._staging is None:
            raise RuntimeError("ArtefactSet used outside its with-block")
        return self._staging / name

    def write(self, name: str, write: Callable[[Path], None]) -> Path:
        """Stage ``name`` by calling ``write(staged_path)``; returns the staged path."""
        if "/" in name or name.startswith(".") or name == JOURNAL_NAME:
            raise ValueError(f"artefact name {name!r} must be a plain file name")
        staged = self.path(name)
        try:
            write(staged)
            os.chmod(staged, 0o666 & ~_umask())
        except (OSError, OutputError) as exc:  # OutputError: a nested write_atomic in staging
            raise output_error(exc, self.folder, name) from None
        if name not in self._names:
            self._names.append(name)
        fault_point(f"staged:{name}")
        return staged

    def register(self, name: str) -> Path:
        """Add a file some library call already wrote at :meth:`path` ``(name)`` to the set."""
        if not self.path(name).is_file():
            raise FileNotFoundError(f"{name} was not staged at {self.path(name)}")
        return self.write(name, lambda _tmp: None)

    def write_text(self, name: str, text: str) -> Path:
        return self.write(name, lambda tmp: tmp.write_text(text))

    def final_path(self, name: str) -> Path:
        return self.folder / name

    def scratch(self) -> Path:
        """A folder for intermediate files on the target's filesystem, deleted with the staging
        folder (never moved into place): a rename from here into the set never crosses devices."""
        scratch = self.path("scratch")
        scratch.mkdir(exist_ok=True)
        return scratch

    def commit(self) -> list[Path]:
        """Move every staged file into place (see the module docstring); returns the final paths."""
        assert self._staging is not None
        staging = self._staging
        with _signals_deferred():  # a Ctrl-C from here on lands after the set did
            try:
                for name in self._names:
                    _fsync(staging / name)
                journal = {"moves": self._names, "remove": [n for n in self.remove
                                                            if n not in self._names]}
                write_text_atomic(staging / JOURNAL_NAME, json.dumps(journal))
                _fsync(staging)
            except (OSError, OutputError) as exc:
                raise output_error(exc, self.folder) from None
            self._decided = True
            fault_point("commit:journal")
            _roll_forward(self.folder, staging, journal, midway=fault_point)
            self.committed = True
        return [self.folder / n for n in self._names]


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _roll_forward(folder: Path, staging: Path, journal: dict,
                  midway: Callable[[str], None] | None = None) -> None:
    for i, name in enumerate(journal["moves"]):
        if (staging / name).exists():
            os.replace(staging / name, folder / name)
        if midway is not None and i == 0:
            midway("commit:first-move")
    for name in journal["remove"]:
        (folder / name).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        _fsync(folder)
    shutil.rmtree(staging, ignore_errors=True)


def recover(folder: str | Path) -> list[str]:
    """Finish or discard what a killed writer left in ``folder``; call with the folder's lock held.

    A staging folder with a journal was decided (roll its renames forward); one without was not
    (delete it). Returns the names of the staging folders handled, for tests and logs.
    """
    folder = Path(folder)
    handled = []
    for staging in sorted(folder.glob(STAGING_PREFIX + "*")):
        journal_path = staging / JOURNAL_NAME
        if journal_path.is_file():
            try:
                journal = json.loads(journal_path.read_text())
            except (OSError, ValueError):
                journal = None
            if journal is not None:
                _roll_forward(folder, staging, journal)
        shutil.rmtree(staging, ignore_errors=True)
        handled.append(staging.name)
    return handled


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM until the block ends, then deliver them: a few renames must not be
    split by a Ctrl-C. Outside the main thread signals cannot be handled here; nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, lambda signum, _frame: pending.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(pending):
            redeliver(sig, previous[sig])  # not raise_signal: PID 1 drops a default SIGTERM


def staging_folders(folder: str | Path) -> list[Path]:
    """Leftover staging folders in ``folder`` (a test asserts there are none after any outcome)."""
    return sorted(Path(folder).glob(STAGING_PREFIX + "*"))

