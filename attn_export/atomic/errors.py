"""The one error a write into an output folder raises, and the OSError -> one-line translation."""

from __future__ import annotations

import errno
from pathlib import Path

from attn_export.errors import AttnExportError


class OutputError(AttnExportError):
    """The output folder cannot take the files: no space, read-only, no permission.

    ``errno`` keeps the cause, so a set staging a file through :func:`write_atomic` can restate
    the error for the folder the user named rather than the staging folder.
    """

    def __init__(self, message: str, errno_code: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno_code


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
