"""ArtefactSet: several files staged inside the target folder, then committed as one set.

The commit journals the moves (``COMMIT.json``) before renaming, defers SIGINT/SIGTERM across the
renames, and a later writer rolls a journalled set forward: see the package docstring.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from attn_export.atomic.errors import OutputError, output_error
from attn_export.atomic.faults import fault_point
from attn_export.atomic.files import file_mode, write_text_atomic
from attn_export.atomic.lock import folder_lock
from attn_export.termination import redeliver

STAGING_PREFIX = ".attn-export-staging-"
JOURNAL_NAME = "COMMIT.json"


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
            os.chmod(staged, file_mode())
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
