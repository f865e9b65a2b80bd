"""Which L4T (JetPack) release this is, and which TensorRT it ships.

On a Jetson, ``/etc/nv_tegra_release`` names the L4T release (``# R36 (release), REVISION: 4.3,
...`` is r36.4.3). Engines and the TensorRT bindings must match it: JetPack's TensorRT lives in the
image for the system Python, and a pip ``tensorrt`` wheel built for x86 or SBSA does not run there.
``ATTN_EXPORT_TEGRA_RELEASE`` points at another file (tests; a container that mounts the host's
file elsewhere).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from attn_export.runtime.jetson import RELEASE_RE, tegra_release_path

# (L4T major, minor) -> (JetPack, TensorRT major.minor, CUDA major.minor): r35.4, r36.2-36.5 as
# sourced in research/jetson-docker-models.md A1.1; r35.1/35.2/35.3/35.5/35.6 from NVIDIA's JetPack
# archive (5.0.2 shipped TensorRT 8.4, every 5.1.x 8.5); r38.2/38.4 (JetPack 7.0/7.1, Thor only)
# and r39.2 (JetPack 7.2, Orin and Thor) from NVIDIA's JetPack 7 archive pages and the OE4T
# meta-tegra release notes (research/jetson-2026.md). Releases not listed carry no expectation.
L4T_TENSORRT = {
    (35, 1): ("5.0.2", "8.4", "11.4"), (35, 2): ("5.1", "8.5", "11.4"),
    (35, 3): ("5.1.1", "8.5", "11.4"), (35, 4): ("5.1.2", "8.5", "11.4"),
    (35, 5): ("5.1.3", "8.5", "11.4"), (35, 6): ("5.1.4", "8.5", "11.4"),
    (36, 2): ("6.0 DP", "8.6", "12.2"), (36, 3): ("6.0", "8.6", "12.2"),
    (36, 4): ("6.1/6.2", "10.3", "12.6"), (36, 5): ("6.2.1", "10.3", "12.6"),
    (38, 2): ("7.0", "10.13", "13.0"), (38, 4): ("7.1", "10.13", "13.0"),
    (39, 2): ("7.2", "10.16", "13.2"),
}

@dataclass(frozen=True)
class L4TRelease:
    """One parsed L4T release: ``36.4.3`` with what it implies."""

    major: int
    minor: int
    patch: int

    @property
    def version(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"

    @property
    def jetpack(self) -> str | None:
        entry = L4T_TENSORRT.get((self.major, self.minor))
        return entry[0] if entry else None

    @property
    def tensorrt(self) -> str | None:
        """TensorRT ``major.minor`` JetPack ships for this release, or None if not known."""
        entry = L4T_TENSORRT.get((self.major, self.minor))
        return entry[1] if entry else None

    @property
    def cuda(self) -> str | None:
        """CUDA ``major.minor`` JetPack ships for this release, or None if not known."""
        entry = L4T_TENSORRT.get((self.major, self.minor))
        return entry[2] if entry else None


def parse_tegra_release(text: str) -> L4TRelease | None:
    """``# R36 (release), REVISION: 4.3, GCID: ...`` -> L4TRelease(36, 4, 3); None if unreadable."""
    match = RELEASE_RE.search(text)
    if not match:
        return None
    return L4TRelease(int(match[1]), int(match[2]), int(match[3] or 0))


def read_l4t_release(path: Path | None = None) -> tuple[Path, L4TRelease | None, bool]:
    """(path read, release or None, whether the file exists): a Jetson without a readable file
    is reported as such, not mistaken for a workstation."""
    path = path or tegra_release_path()
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return path, None, False
    return path, parse_tegra_release(text), True


def tensorrt_matches(trt_version: str, release: L4TRelease) -> bool | None:
    """Whether TensorRT ``10.3.0.30`` is the one JetPack ships for ``release`` (None: unknown)."""
    expected = release.tensorrt
    if expected is None:
        return None
    return ".".join(trt_version.split(".")[:2]) == expected
