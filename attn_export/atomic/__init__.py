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

from attn_export.atomic.errors import OutputError, output_error
from attn_export.atomic.faults import FAULT_ENV, fault_point
from attn_export.atomic.files import write_atomic, write_text_atomic
from attn_export.atomic.hashing import sha256_file
from attn_export.atomic.lock import LOCK_NAME, folder_lock
from attn_export.atomic.transaction import (
    JOURNAL_NAME,
    STAGING_PREFIX,
    ArtefactSet,
    recover,
    staging_folders,
)

__all__ = ["FAULT_ENV", "JOURNAL_NAME", "LOCK_NAME", "STAGING_PREFIX", "ArtefactSet", "OutputError",
           "fault_point", "folder_lock", "output_error", "recover", "sha256_file",
           "staging_folders", "write_atomic", "write_text_atomic"]
