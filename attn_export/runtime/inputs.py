"""Validation inputs: the maps that break attention blocks in practice, seeded and reproducible.

A gate that divides by a variance, an L2 norm or a softmax sum is only proven safe on the inputs that
make those quantities vanish or explode, so every validation runs all of these kinds.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from attn_export.errors import ValidationError

INPUT_KINDS = ("normal", "relu_large", "constant", "zeros")


def make_input(kind: str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """One float32 map of ``kind``.

    ``normal``: N(0, 1). ``relu_large``: post-ReLU activations of magnitude up to ~30, the range a
    detection neck sees. ``constant``: every element 0.5 (zero variance everywhere). ``zeros``.
    """
    rng = np.random.default_rng(seed)
    if kind == "normal":
        return rng.standard_normal(shape, dtype=np.float32)
    if kind == "relu_large":
        return np.maximum(rng.standard_normal(shape, dtype=np.float32) * 10.0, 0.0)
    if kind == "constant":
        return np.full(shape, 0.5, dtype=np.float32)
    if kind == "zeros":
        return np.zeros(shape, dtype=np.float32)
    raise ValidationError(f"unknown input kind {kind!r}; expected one of {', '.join(INPUT_KINDS)}")


def standard_cases(shape: tuple[int, ...], seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """Every input kind at ``shape``, named ``kind@NxCxHxW``."""
    return [(f"{kind}@{format_shape(shape)}", make_input(kind, shape, seed)) for kind in INPUT_KINDS]


def extra_shapes(shape: tuple[int, int, int, int], dynamic: str) -> list[tuple[int, int, int, int]]:
    """Two shapes other than the export shape, varying exactly the dims ``dynamic`` frees."""
    n, c, h, w = shape
    if dynamic == "none":
        return []
    if dynamic == "batch":
        return [(n + 2, c, h, w), (n + 1, c, h, w)]
    # Odd sizes and H != W catch kernels and reshapes baked from the export size.
    return [(n + 2, c, h + 5, max(1, w - 3)), (n + 1, c, max(1, h // 2 + 1), w + 7)]


def format_shape(shape: Iterable[int]) -> str:
    return "x".join(str(d) for d in shape)


def load_user_inputs(paths: Iterable[str | Path], channels: int) -> list[tuple[str, np.ndarray]]:
    """User ``.npy`` maps, checked to be finite real NCHW with the block's channel count."""
    cases = []
    for path in paths:
        array = read_npy(path, "input")
        if array.ndim == 3:
            array = array[None]
        if array.ndim != 4 or array.shape[1] != channels:
            raise ValidationError(
                f"input {path} has shape {array.shape}; expected NxCxHxW (or CxHxW) with "
                f"C={channels}, the block's channels"
            )
        cases.append((f"{Path(path).stem}@{format_shape(array.shape)}", array.astype(np.float32)))
    return cases


def extra_feeds(shapes: dict[str, tuple[int, ...]], batch: int, seed: int) -> dict[str, np.ndarray]:
    """N(0, 1) values for a block's inputs after the map (an LSTM or decoder state), batch first.

    Blocks with several inputs (``dia``, ``sca``) get their state inputs from here for every
    validation case, seeded so golden files reproduce.
    """
    return {name: make_input("normal", (batch, *shape), seed + i)
            for i, (name, shape) in enumerate(shapes.items())}


def read_npy(path: str | Path, what: str) -> np.ndarray:
    """A real, finite numeric array from a ``.npy`` file, or one line that says what is wrong.

    NaN/inf are refused here, on the way in, so that a non-finite output later can only be the
    block's doing; complex values are refused rather than silently dropping the imaginary part.
    """
    try:
        array = np.load(str(path), allow_pickle=False)
    except FileNotFoundError:
        raise ValidationError(f"{what} {path} does not exist") from None
    except (OSError, ValueError, EOFError) as exc:
        why = ("it is not in numpy's .npy format (a text or pickle file renamed .npy?)"
               if "pickle" in str(exc) or "magic" in str(exc).lower() else str(exc))
        raise ValidationError(f"cannot read {what} {path}: {why}; expected an array saved with "
                              "numpy.save") from None
    if not isinstance(array, np.ndarray):  # an .npz archive
        array.close()
        raise ValidationError(f"{what} {path} is an .npz archive; expected one array saved with "
                              "numpy.save (.npy)")
    return check_real_finite(array, f"{what} {path}")


def check_real_finite(array: np.ndarray, label: str) -> np.ndarray:
    """Refuse complex, non-numeric and NaN/inf arrays with one line naming ``label``."""
    if np.iscomplexobj(array):
        raise ValidationError(f"{label} is complex ({array.dtype}); expected real values: pass "
                              "the real part explicitly (array.real) if that is what you mean")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)
            or array.dtype == np.bool_):
        raise ValidationError(f"{label} has dtype {array.dtype}; expected a numeric array")
    if np.issubdtype(array.dtype, np.floating):
        bad = int((~np.isfinite(array)).sum())
        if bad:
            raise ValidationError(f"{label} holds {bad} NaN/inf value(s) of {array.size}; expected "
                                  "finite values (replace them, e.g. numpy.nan_to_num)")
    return array
