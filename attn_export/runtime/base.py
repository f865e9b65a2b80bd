"""The one Runner interface every backend implements (PyTorch, ONNX Runtime, TensorRT).

The base class owns the input checks so no backend can drift from them: names, dtypes and shapes
are checked against ``input_spec`` before a backend sees the feed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from attn_export.errors import ValidationError

Feed = dict[str, np.ndarray]


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output: ``None`` in ``shape`` marks a dynamic dimension.

    Runners check feeds against their inputs' specs; ``serve`` checks a Triton config against
    the specs of the file the config sits beside.
    """

    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...]

    def describe(self) -> str:
        dims = "x".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name}: {np.dtype(self.dtype).name}[{dims}]"


class Runner(ABC):
    """Load a model, run feeds through it, close it. Usable as a context manager."""

    name = "runner"

    def __init__(self) -> None:
        self._loaded = False

    def load(self) -> Runner:
        if not self._loaded:
            self._load()
            self._loaded = True
        return self

    def close(self) -> None:
        if self._loaded:
            self._close()
            self._loaded = False

    def __enter__(self) -> Runner:
        return self.load()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def input_spec(self) -> list[TensorSpec]:
        self.load()
        return self._input_spec()

    def infer(self, feed: Feed) -> Feed:
        """Run ``feed`` (input name -> array) and return output name -> array."""
        self.load()
        check_feed(self._input_spec(), feed, self.name)
        return self._infer(feed)

    @abstractmethod
    def _load(self) -> None: ...

    def _close(self) -> None:
        """Release backend resources; nothing to release by default."""

    @abstractmethod
    def _input_spec(self) -> list[TensorSpec]: ...

    @abstractmethod
    def _infer(self, feed: Feed) -> Feed: ...


def check_feed(spec: list[TensorSpec], feed: Feed, runner: str) -> None:
    """Raise a ValidationError naming what was expected where ``feed`` does not fit ``spec``."""
    expected = {s.name: s for s in spec}
    if set(feed) != set(expected):
        raise ValidationError(
            f"{runner}: inputs {sorted(feed)} do not match the model's inputs {sorted(expected)}"
        )
    for name, array in feed.items():
        want = expected[name]
        if array.dtype != np.dtype(want.dtype):
            raise ValidationError(
                f"{runner}: input {name!r} has dtype {array.dtype}, expected "
                f"{np.dtype(want.dtype).name} ({want.describe()})"
            )
        if len(array.shape) != len(want.shape) or any(
            d is not None and d != a for d, a in zip(want.shape, array.shape)
        ):
            raise ValidationError(
                f"{runner}: input {name!r} has shape {tuple(array.shape)}, expected "
                f"{want.describe()} ('?' = any size)"
            )
