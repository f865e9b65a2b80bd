"""TensorRT optimization profiles (min / opt / max input shapes) from the ONNX graph and the user.

A TensorRT engine built from a graph with dynamic dims needs one profile: for every input, the
smallest, the most frequent and the largest shape it will be run at. The graph says which dims are
dynamic (symbolic dims, the shape mode chosen at export); the export shape gives a sensible centre
(``opt``); ``--min-shape`` / ``--opt-shape`` / ``--max-shape`` override, in trtexec's syntax
(``1x64x32x32`` or ``input:1x64x32x32,other:1x3x8x8``). Everything here is pure Python, so the
shape rules are tested on machines without TensorRT.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from attn_export.errors import ShapeModeError
from attn_export.runtime.base import TensorSpec

DEFAULT_MAX_BATCH = 8
"""Largest batch a dynamic-batch engine accepts unless ``--max-shape`` says otherwise."""

SPATIAL_SHRINK = 2
SPATIAL_GROW = 2
"""Dynamic H/W default to [export // 2, export * 2]: wide enough for the usual neighbouring input
sizes, narrow enough that TensorRT's tactics chosen at ``opt`` stay good across the range."""

Shape = tuple[int, ...]


@dataclass(frozen=True)
class InputProfile:
    """Shapes one input accepts: every dim of ``min`` <= ``opt`` <= ``max``."""

    name: str
    min: Shape
    opt: Shape
    max: Shape

    def to_dict(self) -> dict:
        return {"name": self.name, "min": list(self.min), "opt": list(self.opt),
                "max": list(self.max)}

    @classmethod
    def from_dict(cls, data: Mapping) -> InputProfile:
        return cls(str(data["name"]), tuple(data["min"]), tuple(data["opt"]), tuple(data["max"]))

    def accepts(self, shape: Sequence[int]) -> bool:
        return len(shape) == len(self.min) and all(
            lo <= d <= hi for lo, d, hi in zip(self.min, shape, self.max, strict=True)
        )

    def describe(self) -> str:
        def fmt(s: Shape) -> str:
            return "x".join(str(d) for d in s)

        return f"{self.name}: min {fmt(self.min)}, opt {fmt(self.opt)}, max {fmt(self.max)}"


def format_shape(shape: Sequence[int]) -> str:
    return "x".join(str(d) for d in shape)


def parse_shapes(text: str | None) -> dict[str | None, Shape]:
    """Parse a trtexec-style shape list; an unnamed shape is keyed ``None`` (the only input).

    ``"1x64x32x32"`` -> ``{None: (1, 64, 32, 32)}``;
    ``"input:1x64x32x32,mask:1x1x32x32"`` -> ``{"input": (...), "mask": (...)}``.
    """
    if text is None or not text.strip():
        return {}
    shapes: dict[str | None, Shape] = {}
    for item in text.split(","):
        name, sep, dims = item.strip().rpartition(":")
        key = name.strip() if sep else None
        try:
            shape = tuple(int(d) for d in dims.strip().lower().split("x"))
        except ValueError:
            shape = ()
        if not shape or min(shape) < 1:
            raise ShapeModeError(
                f"cannot read shape {item.strip()!r}: expected positive dims joined by 'x', "
                "optionally prefixed by the input name (e.g. 1x64x32x32 or input:1x64x32x32)"
            )
        if key in shapes:
            raise ShapeModeError(f"shape for {key or 'the input'} given twice in {text!r}")
        shapes[key] = shape
    if None in shapes and len(shapes) > 1:
        raise ShapeModeError(
            f"{text!r} mixes named and unnamed shapes; name every shape (input:NxCxHxW)"
        )
    return shapes


def _for_inputs(shapes: Mapping[str | None, Shape], inputs: Sequence[TensorSpec], flag: str
                ) -> dict[str, Shape]:
    names = [s.name for s in inputs]
    if None in shapes:
        if len(names) != 1:
            raise ShapeModeError(
                f"{flag} gives one unnamed shape but the graph has inputs {names}; "
                f"name each one ({flag} {names[0]}:NxCxHxW,...)"
            )
        return {names[0]: shapes[None]}
    unknown = sorted(set(shapes) - set(names))  # type: ignore[arg-type]
    if unknown:
        raise ShapeModeError(f"{flag} names {unknown}, which the graph lacks; its inputs: {names}")
    return dict(shapes)  # type: ignore[arg-type]


def default_range(axis: int, size: int) -> tuple[int, int, int]:
    """(min, opt, max) of one dynamic dim around its export ``size``: batch or spatial."""
    if axis == 0:
        return 1, size, max(size, DEFAULT_MAX_BATCH)
    return max(1, size // SPATIAL_SHRINK), size, size * SPATIAL_GROW


def check_profile(profile: InputProfile, spec: TensorSpec) -> None:
    """Refuse a profile TensorRT would reject, saying which dim is wrong and why."""
    rank = len(spec.shape)
    for label, shape in (("min", profile.min), ("opt", profile.opt), ("max", profile.max)):
        if len(shape) != rank:
            raise ShapeModeError(
                f"{label} shape {format_shape(shape)} of input {spec.name!r} has rank "
                f"{len(shape)}; the graph's input is {spec.describe()} (rank {rank})"
            )
        for axis, (want, got) in enumerate(zip(spec.shape, shape, strict=True)):
            if want is not None and want != got:
                raise ShapeModeError(
                    f"{label} shape {format_shape(shape)} of input {spec.name!r} sets dim {axis} "
                    f"to {got}, but the graph fixes it to {want} ({spec.describe()}); only the "
                    "dynamic ('?') dims may vary: re-export with --dynamic to free more"
                )
    for axis, (lo, mid, hi) in enumerate(zip(profile.min, profile.opt, profile.max, strict=True)):
        if not lo <= mid <= hi:
            raise ShapeModeError(
                f"input {spec.name!r} dim {axis}: need min <= opt <= max, got {lo}, {mid}, {hi} "
                f"({profile.describe()})"
            )


def dynamic_axes_of_mode(shape_mode: str, rank: int) -> tuple[int, ...]:
    """The axes a shape mode frees: none -> (), batch -> (0,), all -> 0 and every axis from 2."""
    if shape_mode == "none":
        return ()
    if shape_mode == "batch":
        return (0,)
    if shape_mode == "all":
        return (0, *range(2, rank))
    raise ShapeModeError(f"unknown shape mode {shape_mode!r}; expected one of none, batch, all")


def check_shape_mode(inputs: Sequence[TensorSpec], shape_mode: str) -> None:
    """The graph's symbolic dims must be those ``shape_mode`` frees, or the request is confused."""
    for spec in inputs:
        graph_axes = tuple(i for i, d in enumerate(spec.shape) if d is None)
        mode_axes = dynamic_axes_of_mode(shape_mode, len(spec.shape))
        if graph_axes != mode_axes:
            raise ShapeModeError(
                f"shape mode {shape_mode!r} frees axes {list(mode_axes)}, but the graph's input "
                f"{spec.describe()} has dynamic axes {list(graph_axes)}; re-export with "
                f"--dynamic {shape_mode} or build with the mode the graph was exported in"
            )


def build_profile(
    inputs: Sequence[TensorSpec],
    export_shapes: Mapping[str, Shape] | None = None,
    min_shapes: str | Mapping[str | None, Shape] | None = None,
    opt_shapes: str | Mapping[str | None, Shape] | None = None,
    max_shapes: str | Mapping[str | None, Shape] | None = None,
    shape_mode: str | None = None,
) -> list[InputProfile]:
    """One optimization profile for ``inputs`` (the graph's inputs, ``None`` = dynamic dim).

    Args:
        inputs: graph inputs, e.g. from :func:`onnx_input_specs`.
        export_shapes: input name -> the shape it was exported (and validated) at; the centre of
            the default ranges. Needed for dynamic dims the overrides leave unset.
        min_shapes / opt_shapes / max_shapes: overrides, as trtexec text or parsed mappings.
        shape_mode: when given, the graph's dynamic dims must be exactly the mode's.

    Returns:
        One :class:`InputProfile` per input; a static input gets min = opt = max.

    Raises:
        ShapeModeError: an override names an unknown input, changes a static dim, breaks
            min <= opt <= max, or a dynamic dim has neither an override nor an export size.
    """
    if shape_mode is not None:
        check_shape_mode(inputs, shape_mode)
    given = {
        label: _for_inputs(parse_shapes(v) if isinstance(v, str) or v is None else v, inputs, flag)
        for label, flag, v in (("min", "--min-shape", min_shapes), ("opt", "--opt-shape",
                               opt_shapes), ("max", "--max-shape", max_shapes))
    }
    profiles = []
    for spec in inputs:
        centre = (given["opt"].get(spec.name) or (export_shapes or {}).get(spec.name)
                  or _static(spec))
        if centre is None:
            raise ShapeModeError(
                f"input {spec.describe()} has dynamic dims and no export shape is known; give "
                "--opt-shape (and --min-shape/--max-shape) or build from an export folder "
                "holding its golden file"
            )
        centre = tuple(int(d) for d in centre)
        if len(centre) != len(spec.shape):
            raise ShapeModeError(
                f"shape {format_shape(centre)} for input {spec.name!r} has rank {len(centre)}; "
                f"the graph's input is {spec.describe()}"
            )
        ranges = [default_range(axis, size) if spec.shape[axis] is None else (size, size, size)
                  for axis, size in enumerate(centre)]
        profile = InputProfile(
            spec.name,
            given["min"].get(spec.name, tuple(r[0] for r in ranges)),
            centre,
            given["max"].get(spec.name, tuple(r[2] for r in ranges)),
        )
        check_profile(profile, spec)
        profiles.append(profile)
    return profiles


def _static(spec: TensorSpec) -> Shape | None:
    return None if any(d is None for d in spec.shape) else tuple(spec.shape)  # type: ignore[arg-type]


def onnx_input_specs(model) -> list[TensorSpec]:
    """The graph inputs of an ``onnx.ModelProto`` (initializers excluded), ``None`` = dynamic."""
    import numpy as np
    import onnx

    initializers = {t.name for t in model.graph.initializer}
    specs = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        tensor = value.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                     for d in tensor.shape.dim)
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type))
        specs.append(TensorSpec(value.name, dtype, dims))
    return specs
