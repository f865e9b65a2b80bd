"""Whether this is a Jetson, and which L4T / JetPack: what engines and the TensorRT import depend on.

``/etc/nv_tegra_release`` names the L4T release (``# R36 (release), REVISION: 4.3, ...`` is
r36.4.3); ``ATTN_EXPORT_TEGRA_RELEASE`` points at another file (tests, or a container that mounts
the host's file elsewhere). Inside a container the file is there when the image is an L4T one or
the NVIDIA runtime mounts it; JetPack's TensorRT, CUDA and GPU libraries come from the host only
with ``--runtime nvidia``.
"""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

TEGRA_RELEASE_ENV = "ATTN_EXPORT_TEGRA_RELEASE"
DEFAULT_TEGRA_RELEASE = "/etc/nv_tegra_release"

JETPACK_SERIES = {35: "5", 36: "6", 38: "7.0/7.1", 39: "7.2"}
"""L4T major -> JetPack series (r38 was Thor only; r39.2 is JetPack 7.2 for Orin and Thor)."""

RELEASE_RE = re.compile(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*(\d+)(?:\.(\d+))?")
"""The release line of ``/etc/nv_tegra_release``: major, revision minor, optional patch."""


def tegra_release_path() -> Path:
    return Path(os.environ.get(TEGRA_RELEASE_ENV) or DEFAULT_TEGRA_RELEASE)


def l4t_release(path: Path | None = None) -> str:
    """``36.4.3`` on a Jetson, ``""`` elsewhere (or when the file names no release we can read)."""
    try:
        text = (path or tegra_release_path()).read_text(errors="replace")
    except OSError:
        return ""
    match = RELEASE_RE.search(text)
    return f"{match[1]}.{match[2]}.{match[3] or 0}" if match else ""


def jetpack_series(l4t: str) -> str:
    """``36.4.3`` -> ``6``; ``""`` when unknown."""
    major = l4t.split(".")[0]
    return JETPACK_SERIES.get(int(major), "") if major.isdigit() else ""


def is_jetson() -> bool:
    """A Jetson (L4T): the release file exists, or the kernel is a Tegra one."""
    return tegra_release_path().exists() or "tegra" in platform.release().lower()
