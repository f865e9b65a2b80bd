"""The one TensorRT version type: parsed once, compared the same way everywhere.

TensorRT versions arrive as ``trt.__version__`` (``10.3.0.30``, ``10.14.1.48.post1``), as a flag
(``--trt-version 10.3``), from a sidecar or as a tuple. Comparisons come in two kinds: "is this the
same release" (a plan's ``10.3`` names every ``10.3.x.y`` build; TensorRT plans only load on the
exact build they were made with when the sidecar gives the full version) and "is it at least"
(version-compatible plans run on newer runtimes). Both live here so no caller splits strings.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from attn_export.errors import ValidationError

_VERSION_RE = re.compile(r"\s*(\d+)((?:\.\d+)*)([.+\-]?[A-Za-z][\w.+\-]*)?\s*")


@dataclass(frozen=True, order=True)
class TrtVersion:
    """A TensorRT version as its numeric parts (``10.3.0.30`` -> ``(10, 3, 0, 30)``).

    Ordering compares the parts as tuples, so ``10.3 < 10.3.0.30 < 10.13``. A suffix such as
    ``.post1`` is not a number TensorRT's compatibility depends on and is dropped.
    """

    parts: tuple[int, ...]

    @classmethod
    def parse(cls, version: str | Sequence[int] | TrtVersion) -> TrtVersion:
        """``"10.3"``, ``"10.3.0.30"``, ``"10.14.1.48.post1"``, ``(11, 0)`` -> TrtVersion.

        Raises:
            ValidationError: the text is not MAJOR[.MINOR[.PATCH[.BUILD]]].
        """
        if isinstance(version, TrtVersion):
            return version
        if isinstance(version, str):
            match = _VERSION_RE.fullmatch(version)
            if not match:
                raise ValidationError(
                    f"cannot read TensorRT version {version!r}; expected MAJOR[.MINOR[.PATCH]], "
                    "e.g. 10.3 (JetPack 6), 10.16 (JetPack 7.2) or 11.4")
            numbers = [int(match[1]), *(int(p) for p in match[2].split(".") if p)]
        else:
            numbers = [int(p) for p in version]
            if not numbers:
                raise ValidationError("an empty TensorRT version; expected MAJOR[.MINOR[.PATCH]]")
        return cls(tuple(numbers))

    @property
    def major(self) -> int:
        return self.parts[0]

    @property
    def minor(self) -> int:
        return self.parts[1] if len(self.parts) > 1 else 0

    @property
    def patch(self) -> int:
        return self.parts[2] if len(self.parts) > 2 else 0

    @property
    def triple(self) -> tuple[int, int, int]:
        """(major, minor, patch): what a precision plan targets."""
        return self.major, self.minor, self.patch

    @property
    def release(self) -> str:
        """``MAJOR.MINOR``: what JetPack and the lint tables name."""
        return f"{self.major}.{self.minor}"

    def same_release(self, other: str | Sequence[int] | TrtVersion) -> bool:
        """Equal on every part both give: ``10.3`` matches ``10.3.0.30``, not ``10.13``."""
        other = TrtVersion.parse(other)
        n = min(len(self.parts), len(other.parts))
        return self.parts[:n] == other.parts[:n]

    def at_least(self, other: str | Sequence[int] | TrtVersion) -> bool:
        return self.parts >= TrtVersion.parse(other).parts

    def __str__(self) -> str:
        return ".".join(map(str, self.parts))


def trt_version(trt) -> TrtVersion:
    """The version of an imported ``tensorrt`` module (or the lean / dispatch runtime)."""
    return TrtVersion.parse(str(trt.__version__))
