"""Golden files: validation inputs and the PyTorch outputs for them, in one ``.npz``.

They let an ONNX file or an engine be checked later on a machine without torch (a Jetson). Arrays
are stored as ``in/<case>/<input>`` and ``out/<case>/<output>``; ``meta`` holds JSON (no pickle).
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from attn_export.atomic import write_atomic
from attn_export.errors import ModelFileError
from attn_export.runtime.base import Feed


@dataclass
class GoldenCase:
    name: str
    inputs: Feed
    outputs: Feed


@dataclass
class Golden:
    cases: list[GoldenCase]
    meta: dict = field(default_factory=dict)


def save_golden(path: str | Path, golden: Golden) -> None:
    arrays = {"meta": np.array(json.dumps(golden.meta))}
    for case in golden.cases:
        arrays.update({f"in/{case.name}/{k}": v for k, v in case.inputs.items()})
        arrays.update({f"out/{case.name}/{k}": v for k, v in case.outputs.items()})

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)

    write_atomic(Path(path), write)


def load_golden(path: str | Path) -> Golden:
    """Read a golden file, refusing truncated, foreign, empty or non-finite ones with one line."""
    hint = "expected a .golden.npz written by `attn-export BLOCK`; re-export to regenerate it"
    try:
        with np.load(str(path), allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except TypeError:  # np.load on a .npy returns an array, which is no context manager
        raise ModelFileError(f"golden file {path} is a single .npy array, not a golden .npz; "
                             f"{hint}") from None
    except FileNotFoundError:
        raise ModelFileError(f"golden file {path} does not exist") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        why = "not an .npz archive" if "pickle" in str(exc) else str(exc)
        raise ModelFileError(f"golden file {path} is corrupt or truncated ({why}); {hint}") from None
    if "meta" not in arrays:
        raise ModelFileError(f"golden file {path} has no 'meta' entry; {hint}")
    try:
        meta = json.loads(str(arrays.pop("meta")))
        cases = _cases(arrays)
    except (ValueError, TypeError):
        raise ModelFileError(f"golden file {path} has entries of another layout; {hint}") from None
    order = meta.get("cases", sorted(cases))
    if not order:
        raise ModelFileError(f"golden file {path} holds no cases, so it cannot show anything; "
                             f"{hint}")
    missing = [c for c in order if c not in cases or not cases[c].outputs or not cases[c].inputs]
    if missing:
        raise ModelFileError(f"golden file {path} lacks cases {missing}; {hint}")
    for case in (cases[c] for c in order):
        for kind, feed in (("input", case.inputs), ("output", case.outputs)):
            for name, array in feed.items():
                if np.iscomplexobj(array) or (np.issubdtype(array.dtype, np.floating)
                                              and not np.isfinite(array).all()):
                    raise ModelFileError(f"golden file {path}: {kind} {name!r} of case "
                                         f"{case.name!r} is complex or not finite; {hint}")
    return Golden([cases[c] for c in order], meta)


def _cases(arrays: dict) -> dict[str, GoldenCase]:
    cases: dict[str, GoldenCase] = {}
    for key, value in arrays.items():
        kind, case, name = key.split("/", 2)
        if kind not in ("in", "out"):
            raise ValueError(key)
        entry = cases.setdefault(case, GoldenCase(case, {}, {}))
        (entry.inputs if kind == "in" else entry.outputs)[name] = value
    return cases
