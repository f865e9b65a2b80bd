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
    """Read a golden file, refusing truncated or foreign ``.npz`` files with a clear message."""
    hint = "expected a .golden.npz written by `attn-export BLOCK`; re-export to regenerate it"
    try:
        with np.load(str(path), allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise ModelFileError(f"golden file {path} does not exist") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ModelFileError(f"golden file {path} is corrupt or truncated ({exc}); {hint}") from None
    if "meta" not in arrays:
        raise ModelFileError(f"golden file {path} has no 'meta' entry; {hint}")
    meta = json.loads(str(arrays.pop("meta")))
    cases: dict[str, GoldenCase] = {}
    for key, value in arrays.items():
        kind, case, name = key.split("/", 2)
        entry = cases.setdefault(case, GoldenCase(case, {}, {}))
        (entry.inputs if kind == "in" else entry.outputs)[name] = value
    order = meta.get("cases", sorted(cases))
    missing = [c for c in order if c not in cases or not cases[c].outputs]
    if missing:
        raise ModelFileError(f"golden file {path} lacks cases {missing}; {hint}")
    return Golden([cases[c] for c in order], meta)
