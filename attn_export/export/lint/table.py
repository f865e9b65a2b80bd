"""The TensorRT ONNX-parser support table (``export/trt_support.json``): versions, aliases,
inheritance. Every version's entry cites its sources in the file itself."""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

from attn_export.errors import AttnExportError, ValidationError
from attn_export.runtime.trt_version import TrtVersion


class UnknownTrtVersionError(AttnExportError, ValueError):
    """A TensorRT version the support table does not describe."""


@functools.lru_cache(maxsize=1)
def table_data() -> dict[str, Any]:
    text = (resources.files("attn_export") / "export" / "trt_support.json").read_text("utf-8")
    return json.loads(text)


def table_versions() -> list[str]:
    """The versions the table describes itself (no aliases), oldest first."""
    return sorted(table_data()["versions"], key=TrtVersion.parse)


def known_versions() -> list[str]:
    """Version keys of the table plus their aliases (``10`` = latest 10.x), oldest first."""
    return table_versions() + sorted(table_data()["aliases"])


def resolve_trt_version(version: str) -> str:
    """Map ``10.3``, ``10.3.0.26``, ``10``, ``10.x``, ``11``, ``10.16`` ... to a key of the table.

    A full version (``10.16.1.11``) is read as its release (``10.16``), which is either a key or an
    alias (``notes`` in the json says why an alias borrows another release's table).

    Raises:
        UnknownTrtVersionError: the table does not describe that version.
    """
    data = table_data()
    v = str(version).strip().lower().removeprefix("tensorrt").removeprefix("trt").strip(" -_v")
    if v in data["aliases"]:
        return data["aliases"][v]
    if v in data["versions"]:
        return v
    try:
        parsed = TrtVersion.parse(v)
    except ValidationError:
        parsed = None
    if parsed is not None and len(parsed.parts) > 1:
        release = parsed.release
        if release in data["versions"]:
            return release
        if release in data["aliases"]:
            return data["aliases"][release]
    raise UnknownTrtVersionError(
        f"no support table for TensorRT {version!r}; expected one of: "
        f"{', '.join(known_versions())} ('10' and '10.x' mean the latest 10.x, '11' and "
        "'11.x' the latest 11.x); add the version to attn_export/export/trt_support.json"
    )


def alias_note(version: str) -> str | None:
    """Why ``version`` is read with another release's table (the json's ``notes``), if it is."""
    notes = table_data().get("notes", {})
    v = str(version).strip().lower().removeprefix("tensorrt").removeprefix("trt").strip(" -_v")
    if v in notes:
        return notes[v]
    try:
        return notes.get(TrtVersion.parse(v).release)
    except ValidationError:
        return None


@functools.cache
def support_table(trt_version: str) -> dict[str, Any]:
    """The merged entry for a version: inherited keys resolved, ``ops`` merged per operator."""
    key = resolve_trt_version(trt_version)
    entry = table_data()["versions"][key]
    if "inherits" not in entry:
        return {**entry, "key": key}
    parent = support_table(entry["inherits"])
    merged = {**parent, **{k: v for k, v in entry.items() if k != "ops"}, "key": key}
    merged["ops"] = {**parent["ops"], **entry.get("ops", {})}
    merged["sources"] = entry.get("sources", []) + parent.get("sources", [])
    merged["derived"] = " ".join(filter(None, (entry.get("derived"), parent.get("derived"))))
    return merged
