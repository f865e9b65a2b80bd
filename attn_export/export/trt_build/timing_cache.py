"""The timing cache: where it lives, loading it into a build, merging and saving it after.

TensorRT times candidate kernels ("tactics") during every build; the timing cache keeps those
timings so a later build of a similar graph skips them. One file per TensorRT version and GPU
(timings carry across neither), under ``$ATTN_EXPORT_CACHE``, else ``$XDG_CACHE_HOME/attn-export``,
else ``~/.cache/attn-export``. In a container run with ``--user`` HOME is often ``/``, where
``/.cache`` cannot be made: the cache is an optimisation, so an unusable default folder costs one
warning line naming the folder and the fix, never the build, and nothing about the cache can fail
a build once its engine is committed.
"""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from pathlib import Path

from attn_export.atomic import write_atomic
from attn_export.errors import AttnExportError, ValidationError
from attn_export.runtime.sidecar import RuntimeEnv

CACHE_ENV = "ATTN_EXPORT_CACHE"
CACHE_FIX = (f"set {CACHE_ENV} to a writable folder (in a container, mount a writable volume, "
             f"e.g. -v $PWD/cache:/data/cache -e {CACHE_ENV}=/data/cache)")


def cache_dir() -> Path:
    """``$ATTN_EXPORT_CACHE``, else ``$XDG_CACHE_HOME/attn-export``, else ``~/.cache/attn-export``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "attn-export"


def default_timing_cache_path(env: RuntimeEnv, directory: Path | None = None) -> Path:
    """One cache per TensorRT version and GPU: tactic timings do not carry across either."""
    gpu = re.sub(r"[^A-Za-z0-9]+", "-", env.gpu).strip("-").lower() or "gpu"
    cc = env.compute_capability.replace(".", "")
    return (directory or cache_dir()) / f"trt-{env.tensorrt}-{gpu}-sm{cc}.timing-cache"


def folder_problem(folder: Path) -> str | None:
    """Why files cannot be written in ``folder`` (created if missing), or None when they can.
    Probed by writing, since permission bits do not tell (root, read-only mounts, ACLs)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-"):
            pass
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def usable_timing_cache(path: Path, explicit: bool) -> Path | None:
    """``path`` when its folder can take the cache. An unusable default folder is a warning (the
    build goes on without a cache); an unusable ``--timing-cache`` the user named is an error,
    raised before anything is built."""
    problem = folder_problem(path.parent)
    if problem is None:
        return path
    if explicit:
        raise ValidationError(f"cannot write the timing cache {path} ({problem}); pass "
                              "--timing-cache in a writable folder, or --no-timing-cache")
    warnings.warn(f"timing cache folder {path.parent} cannot be used ({problem}); building "
                  f"without a timing cache: {CACHE_FIX}", UserWarning, stacklevel=3)
    return None


def read_timing_cache(path: Path) -> bytes:
    """The cache bytes, or b"" when there is no cache yet (or it cannot be read: warned)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""
    except OSError as exc:
        warnings.warn(f"cannot read timing cache {path} ({exc.strerror}); building without it",
                      UserWarning, stacklevel=2)
        return b""


def write_timing_cache(path: Path, data: bytes) -> bool:
    """Save atomically (a build killed mid-write never leaves a truncated cache). Returns False,
    with one warning line, when the folder cannot take it: the engine is already written."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda tmp: tmp.write_bytes(data))
    except (OSError, AttnExportError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        warnings.warn(f"the engine is built, but its timing cache could not be saved in "
                      f"{path.parent} ({why}): {CACHE_FIX}", UserWarning, stacklevel=2)
        return False
    return True


def attach_timing_cache(config, path: Path | None) -> tuple[bytes, bool]:
    """Load ``path`` into the config's timing cache; returns the bytes read and whether TensorRT
    took them. A cache TensorRT refuses (another device or version) is replaced by an empty one,
    so the build still records its tactics and the refused file is overwritten with a cache this
    machine can use."""
    if path is None:
        return b"", False
    loaded = read_timing_cache(path)
    if config.set_timing_cache(config.create_timing_cache(loaded), ignore_mismatch=False):
        return loaded, True
    warnings.warn(f"timing cache {path} was made for another device or TensorRT version; "
                  "building without it (it is replaced by this build's cache)", UserWarning,
                  stacklevel=3)
    if not config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False):
        warnings.warn("TensorRT refused an empty timing cache; this build's tactics are not "
                      "saved", UserWarning, stacklevel=3)
    return loaded, False


def save_timing_cache(config, path: Path, seen: bytes) -> None:
    """Merge what another build saved meanwhile (``ITimingCache.combine``), then save. A cache
    from another device is not merged (``ignore_mismatch=False``): TensorRT warns that mixing
    device properties can give functional and performance bugs. ``get_timing_cache`` returns None
    when no cache is attached: then nothing is saved. Never raises for the file system: it runs
    after the engine is committed."""
    cache = config.get_timing_cache()
    if cache is None:
        return
    on_disk = read_timing_cache(path)
    if on_disk and on_disk != seen:
        if not cache.combine(config.create_timing_cache(on_disk), ignore_mismatch=False):
            warnings.warn(f"timing cache {path} changed during the build and cannot be merged "
                          "(another device or TensorRT version); it is replaced by this build's "
                          "cache", UserWarning, stacklevel=3)
    write_timing_cache(path, bytes(cache.serialize()))
