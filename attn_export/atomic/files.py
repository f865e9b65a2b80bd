"""One file written atomically: a temporary file beside the target, then one rename over it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from attn_export.atomic.errors import output_error


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
        os.chmod(tmp, file_mode())  # exports are for sharing
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise output_error(exc, path.parent, path.name) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def file_mode() -> int:
    """The mode a new artefact gets: 0666 less the process umask (mkstemp alone makes 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text))
