"""Reading a state_dict from a checkpoint file: the one reader every loader uses.

``attn-export convert`` (one block), ``load_pretrained`` and ``attn-export model`` (a whole
network) all read through :func:`read_state_dict`, so a file one of them accepts the others accept
too: the ``state_dict`` / ``model`` / ``state_dict_ema`` wrappers of training scripts are unwrapped
and DataParallel's (and timm's EMA wrapper's) ``module.`` prefix is dropped.
``torch.load(weights_only=True)`` always: a pickled whole model is refused with how to save a
state_dict instead (loading it would run code from the file).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from attn_export.errors import CheckpointError

StateDict = dict[str, Any]

WRAPPERS = ("state_dict", "model", "state_dict_ema")
"""Keys under which training scripts store the weights (first match wins: the live weights of a
checkpoint holding both ``state_dict`` and ``state_dict_ema``)."""


def _refusal(path: Path, exc: Exception) -> CheckpointError:
    text = str(exc)
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if found and found.group(1).startswith("ultralytics"):
        return CheckpointError(
            f"{path} pickles a whole Ultralytics model ({found.group(1)}), which "
            "torch.load(weights_only=True) refuses (it would run code from the file); save its "
            "state_dict instead: python -c \"import torch; from ultralytics import YOLO; "
            f"torch.save(YOLO('{path.name}').model.state_dict(), '{path.stem}_state_dict.pt')\""
        )
    if found:
        return CheckpointError(
            f"{path} pickles a Python object ({found.group(1)}), not a state_dict; "
            "torch.load(weights_only=True) refuses it. Save the weights with "
            "torch.save(model.state_dict(), path)"
        )
    first = text.strip().splitlines()[0][:200] if text.strip() else type(exc).__name__
    return CheckpointError(f"cannot read checkpoint {path}: {first}; expected a file saved with "
                           "torch.save(model.state_dict(), path)")


def read_state_dict(path_or_sd: str | Path | Mapping[str, Any]) -> StateDict:
    """The state_dict in a file (or the mapping given), unwrapped and without ``module.``.

    Raises:
        CheckpointError: the file cannot be read, pickles an object, or holds no state_dict.
    """
    if isinstance(path_or_sd, Mapping):
        obj: Any = path_or_sd
    else:
        import torch

        path = Path(path_or_sd)
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises pickle, zip, OS and runtime errors alike
            raise _refusal(path, exc) from None
    unwrapped = True
    while unwrapped and isinstance(obj, Mapping):  # {"model": {"state_dict": ...}} nests too
        key = next((k for k in WRAPPERS if isinstance(obj.get(k), Mapping)), None)
        unwrapped = key is not None
        obj = obj[key] if unwrapped else obj
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path_or_sd} holds a {type(obj).__name__}, not a state_dict "
                              "(a mapping of names to tensors)")
    if not all(hasattr(v, "shape") for v in obj.values()):
        raise CheckpointError(f"{path_or_sd} holds no state_dict (a mapping of names to "
                              f"tensors, optionally under {', '.join(map(repr, WRAPPERS))})")
    return {k.removeprefix("module."): v for k, v in obj.items()}
