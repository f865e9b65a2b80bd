"""Judging on the user's data: held-out samples of ``--calib-data``, and seeded maps kept apart
when they lie far outside that data.

A graph calibrated on samples and judged on the same samples is judged on the easiest inputs it
will ever see. When the user gives ``--calib-data``, every fourth sample (at most
:data:`MAX_HELDOUT`) is held out: calibration never reads it, and the golden file carries it as a
``user-heldout`` case. ``--inputs`` maps are never calibrated on, so they are ``user-heldout``
too. A seeded map whose values reach beyond the user's data by more than the data's own span (a
post-ReLU map of magnitude 30 into a network trained on [-1, 2]) is ``user-out-of-range``: judged
and shown, never allowed to fail the graph (:mod:`attn_export.runtime.floor`).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from attn_export.runtime.base import Feed

HOLDOUT_EVERY = 4
MAX_HELDOUT = 8


def heldout_indices(count: int) -> list[int]:
    """Which of ``count`` calibration samples are held out: every fourth (3, 7, 11, ...), at most
    :data:`MAX_HELDOUT`; the last of two or three; none of one (nothing would remain)."""
    held = [i for i in range(HOLDOUT_EVERY - 1, count, HOLDOUT_EVERY)][:MAX_HELDOUT]
    if not held and count >= 2:
        held = [count - 1]
    return held


def split_calibration(feeds: Sequence[Feed]) -> tuple[list[Feed], list[Feed]]:
    """(calibration feeds, held-out feeds) of the samples read from ``--calib-data``."""
    held = set(heldout_indices(len(feeds)))
    return ([f for i, f in enumerate(feeds) if i not in held],
            [f for i, f in enumerate(feeds) if i in held])


def heldout_cases(calib_data: str | Path | None, input_name: str,
                  accepted: tuple[int | None, ...]) -> tuple[list[tuple[str, np.ndarray]],
                                                             tuple[float, float] | None]:
    """The held-out samples of ``calib_data`` as golden cases ``heldout<i>@NxCxHxW``, and the
    range of all its samples (calibration ones too)."""
    if calib_data is None:
        return [], None
    from attn_export.export.int8_from_onnx import calibration_feeds_from_dir, finite_feeds
    from attn_export.runtime.base import TensorSpec
    from attn_export.runtime.inputs import format_shape

    spec = TensorSpec(input_name, np.dtype(np.float32), accepted)
    feeds = finite_feeds(calibration_feeds_from_dir(calib_data, [spec]), calib_data)
    _, held = split_calibration(feeds)
    index = heldout_indices(len(feeds))
    cases = [(f"heldout{i}@{format_shape(f[input_name].shape)}",
              f[input_name].astype(np.float32)) for i, f in zip(index, held)]
    values = [f[input_name] for f in feeds]
    return cases, (min(float(v.min()) for v in values), max(float(v.max()) for v in values))


def out_of_range(array: np.ndarray, low: float, high: float) -> bool:
    """Whether ``array`` reaches beyond [low, high] by more than the span high - low."""
    span = max(high - low, 1e-6)
    return float(array.max()) > high + span or float(array.min()) < low - span


def input_kinds(cases: Sequence[tuple[str, np.ndarray]], seeded: Sequence[str],
                natural: Sequence[str], user: Sequence[str],
                data_range: tuple[float, float] | None = None) -> dict[str, str]:
    """``golden.meta["input_kinds"]``: each case's kind; seeded maps far outside the data (the
    ``user`` cases, ``data_range`` (every calibration sample) and the natural images, which
    ``--natural-inputs`` also calibrates on) are ``user-out-of-range``."""
    arrays = dict(cases)
    kinds = {name: "seeded" for name in seeded}
    kinds |= {name: "natural" for name in natural}
    kinds |= {name: "user-heldout" for name in user}
    # natural images stand for the data too: with --natural-inputs INT8 is calibrated on them
    ranges = [(float(arrays[n].min()), float(arrays[n].max())) for n in [*user, *natural]]
    ranges += [data_range] if data_range is not None else []
    if ranges:
        low, high = min(r[0] for r in ranges), max(r[1] for r in ranges)
        for name in seeded:
            if out_of_range(arrays[name], low, high):
                kinds[name] = "user-out-of-range"
    return kinds


def labelled_cases(seeded: list, user: list, req, accepted: tuple[int | None, ...]):
    """Every validation case of an export and its kind: the seeded maps, the natural images (if
    ``req.natural``), the user's ``--inputs`` and the held-out ``--calib-data`` samples."""
    from attn_export.export.onnx_from_torch import INPUT_NAME

    natural = []
    if getattr(req, "natural", False):
        from attn_export.runtime.natural_inputs import natural_cases

        natural = natural_cases(tuple(req.input_shape))
    held, data_range = heldout_cases(getattr(req, "calib_data", None), INPUT_NAME, accepted)
    user = [*user, *held]
    cases = [*seeded, *natural, *user]
    return cases, input_kinds(cases, [n for n, _ in seeded], [n for n, _ in natural],
                              [n for n, _ in user], data_range)


@contextmanager
def natural_calibration_dir(golden, calib_data, seed: int = 0):
    """Yield ``(calib_data, description)``: the user's folder as given, or, when there is none
    and the golden file validates on natural images (``--natural-inputs``), a temporary folder
    of natural calibration samples (never the validation one) and what they are."""
    kinds = golden.meta.get("input_kinds", {})
    natural = [c for c in golden.cases if kinds.get(c.name) == "natural"]
    if calib_data is not None or not natural or len(natural[0].inputs) != 1:
        yield calib_data, ""
        return
    import tempfile

    from attn_export.runtime.natural_inputs import natural_calibration

    (name, array), = natural[0].inputs.items()
    samples = natural_calibration(tuple(array.shape), seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        for i, sample in enumerate(samples):
            np.save(Path(tmp) / f"natural{i:02d}.npy", sample)
        what = "photographs" if array.shape[1] == 3 else "digits"
        yield Path(tmp), (f"{len(samples)} natural images (scikit-learn's {what}, not the "
                          "one validated on)")
