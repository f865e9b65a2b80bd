"""Checks an export request passes before any work starts: each refusal is one line with the fix.

``pipeline.resolve`` fills the defaults; these checks then refuse what would otherwise fail deep
inside torch with a traceback (a list where a kernel size goes), or run for minutes and then die
(a map that cannot fit in memory), or quietly do something else (``--channels 0``).
"""

from __future__ import annotations

import inspect
import os
from typing import Any

from attn_export.errors import BlockConfigError, ShapeModeError

SEED_MAX = 2**32 - 1
"""numpy's seeded generators and torch.manual_seed both take 0 .. 2**32 - 1 everywhere."""

MEMORY_FACTOR = 24
"""Bytes held per input element, in units of one float32 map: 4 inputs + 4 outputs of the golden
cases, the extra shapes, PyTorch's intermediates and ONNX Runtime's arena (measured peak for cbam
and se at 1x64x256x256: ~20 maps). A lower bound, so a refusal is certain, never speculative."""

POSITION_ATTENTION_FAMILIES = ("self_attention",)
"""Blocks whose attention matrix is (H*W) x (H*W) per image: memory grows with the square."""


def check_scalars(channels: int | None, seed: int) -> None:
    """Channels and seed: a zero or negative channel count is refused, not replaced by the default."""
    if channels is not None and (isinstance(channels, bool) or not isinstance(channels, int)
                                 or channels < 1):
        raise BlockConfigError(f"--channels must be a positive integer, got {channels!r} "
                               "(e.g. --channels 64)")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise BlockConfigError(f"--seed must be an integer in 0..{SEED_MAX}, got {seed!r}")


def check_request(req) -> None:
    """Every check that needs the resolved request (shape, kwargs, memory), before any work."""
    check_scalars(req.channels, req.seed)
    check_kwargs(req.block, req.variant, req.kwargs)
    check_memory(req.block, req.input_shape, req.dynamic)
    from attn_export.runtime.inputs import load_user_inputs

    load_user_inputs(req.inputs, req.channels)  # unreadable or non-finite files, before any work


def _kinds(annotation: Any) -> list[str] | None:
    """The value kinds an annotation string admits (``"int | None"`` -> ["int", "None"]); None
    when it names something we do not check (a class, a callable)."""
    if not isinstance(annotation, str):
        annotation = getattr(annotation, "__name__", str(annotation))
    kinds = []
    for part in (p.strip() for p in annotation.split("|")):
        base = part.split("[", 1)[0].strip().split(".")[-1]
        if base in ("int", "float", "bool", "str", "None"):
            kinds.append(base)
        elif base in ("Sequence", "tuple", "list") and "[" in part:
            inner = part.split("[", 1)[1].rstrip("]").split(",")[0].strip()
            if inner not in ("int", "float", "str"):
                return None
            kinds.append(f"seq:{inner}")
        else:
            return None
    return kinds


def _fits(value: Any, kind: str) -> bool:
    if kind == "None":
        return value is None
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool) and value > 0
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
    if kind == "str":
        return isinstance(value, str)
    if kind.startswith("seq:"):
        return isinstance(value, (list, tuple)) and len(value) > 0 \
            and all(_fits(v, kind[4:]) for v in value)
    return True


_EXAMPLES = {"int": "a positive integer, e.g. 8", "float": "a positive number, e.g. 0.25",
             "bool": "True or False", "str": "a word, e.g. max", "None": "None",
             "seq:int": "a list of positive integers, e.g. [3,5]",
             "seq:float": "a list of positive numbers", "seq:str": "a list of words, e.g. [add]"}


def check_kwargs(block: str, variant: str, kwargs: dict[str, Any]) -> None:
    """Each ``--set`` value must have the kind (and sign) its constructor annotation says.

    Unknown names are left to ``create_block``, which lists the accepted ones.
    """
    if not kwargs:
        return
    from attn_export.modules.registry import block_class

    params = inspect.signature(block_class(block, variant).__init__).parameters
    for key, value in kwargs.items():
        if key not in params:
            continue
        kinds = _kinds(params[key].annotation)
        if kinds is None or any(_fits(value, k) for k in kinds):
            continue
        default = params[key].default
        hint = " or ".join(_EXAMPLES[k] for k in kinds)
        raise BlockConfigError(
            f"{block}: --set {key}={value!r} is not valid; expected {hint}"
            + (f" (default {default!r})" if default is not inspect.Parameter.empty else ""))


def memory_needed(block: str, shape: tuple[int, ...], dynamic: str) -> int:
    """Lower bound, in bytes, of what validating ``block`` at ``shape`` holds at once."""
    from attn_export.modules.registry import block_info

    n, c, h, w = shape
    scale = 1.0 if dynamic == "none" else 2.0  # the extra shapes add up to about one more set
    need = MEMORY_FACTOR * 4 * n * c * h * w * scale
    if block_info(block).family in POSITION_ATTENTION_FAMILIES:
        need += 2 * 4 * n * (h * w) ** 2 * scale  # the attention matrix and its softmax
    return int(need)


def available_memory() -> int | None:
    """MemAvailable from /proc/meminfo (what can be allocated without swapping), None if unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_memory(block: str, shape: tuple[int, ...], dynamic: str) -> None:
    """Refuse, with the estimate, a shape whose validation cannot fit in memory."""
    need = memory_needed(block, shape, dynamic)
    have = available_memory()
    if have is None:
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need > have:
        raise ShapeModeError(
            f"{block} at {'x'.join(map(str, shape))} needs at least {_gib(need)} of memory to "
            f"export and validate, {_gib(have)} is available; choose a smaller --input-shape")


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**28 else f"{n / 2**20:.0f} MiB"


def check_calibration_dir(folder) -> None:
    """Refuse NaN/inf/complex calibration files before the export starts, not after it."""
    from pathlib import Path

    import numpy as np

    from attn_export.errors import ValidationError
    from attn_export.runtime.inputs import check_real_finite

    for path in sorted(p for p in Path(folder).iterdir() if p.suffix in (".npy", ".npz")):
        try:
            loaded = np.load(str(path), allow_pickle=False)
        except (OSError, ValueError, EOFError):
            raise ValidationError(f"cannot read calibration file {path}: expected arrays saved "
                                  "with numpy.save / numpy.savez") from None
        arrays = {k: loaded[k] for k in loaded.files} if hasattr(loaded, "files") else {"": loaded}
        for key, array in arrays.items():
            check_real_finite(array, f"calibration file {path}" + (f" [{key}]" if key else ""))
