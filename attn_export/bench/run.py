"""One bench run: build the graphs for each shape, time them interleaved, reduce to statistics."""

from __future__ import annotations

import platform
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from attn_export.bench.graphs import DEPLOY, FLOOR, NAIVE, Graph, block_graphs, floor_onnx
from attn_export.bench.stats import Latency, Ratio, latency, ratio
from attn_export.bench.timing import Samples, interleaved, ort_runs
from attn_export.errors import ShapeModeError

BACKENDS = ("ort-cpu", "ort-cuda", "tensorrt")
MODEL = "model"


@dataclass
class BenchSettings:
    """How to time: rounds, untimed warm-up runs per graph, intra-op threads, backend."""

    rounds: int = 20
    warmup: int = 5
    threads: int | None = 2
    backend: str = "ort-cpu"
    iters: int | None = None  # per graph per round; None: a burst of about 40 ms
    seed: int = 0


@dataclass
class ShapeResult:
    """Everything measured at one input shape."""

    shape: tuple[int, ...]
    iters_per_round: int
    latency: dict[str, Latency]
    vs_floor: dict[str, Ratio]
    vs_naive: Ratio | None = None

    def to_dict(self) -> dict:
        out = {"shape": list(self.shape), "iters_per_round": self.iters_per_round,
               "latency_ms": {k: v.to_dict() for k, v in self.latency.items()},
               "ratio_to_floor": {k: v.to_dict() for k, v in self.vs_floor.items()}}
        if self.vs_naive is not None:
            out["deploy_over_naive"] = self.vs_naive.to_dict()
        return out


@dataclass
class BenchResult:
    """A bench of one block or model over one or more shapes."""

    target: str
    kind: str  # "block", "onnx" or "engine"
    settings: BenchSettings
    shapes: list[ShapeResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        s = self.settings
        return {"target": self.target, "kind": self.kind, "backend": s.backend,
                "threads": s.threads, "rounds": s.rounds, "warmup": s.warmup,
                "versions": versions(), "results": [r.to_dict() for r in self.shapes],
                "notes": list(self.notes)}


def versions() -> dict[str, str]:
    import onnxruntime

    return {"onnxruntime": onnxruntime.__version__, "python": platform.python_version(),
            "machine": platform.machine()}


def summarize(shape: tuple[int, ...], samples: dict[str, Samples], iters: int) -> ShapeResult:
    """Latency of every graph, each non-floor graph over the floor, deploy over naive."""
    batch = int(shape[0])
    lat = {role: latency(s, batch) for role, s in samples.items()}
    floor = samples.get(FLOOR)
    vs_floor = {role: ratio(s, floor) for role, s in samples.items()
                if floor is not None and role != FLOOR}
    vs_naive = ratio(samples[DEPLOY], samples[NAIVE]) if {DEPLOY, NAIVE} <= set(samples) else None
    return ShapeResult(tuple(shape), iters, lat, vs_floor, vs_naive)


def input_array(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def time_graphs(graphs: Sequence[Graph], shape: tuple[int, ...], settings: BenchSettings,
                on_round: Callable[[], None] | None = None) -> ShapeResult:
    """Time ``graphs`` on ONNX Runtime at ``shape``, interleaved, and reduce the samples."""
    from attn_export.bench.timing import iterations_for

    x = input_array(shape, settings.seed)
    provider = "cuda" if settings.backend == "ort-cuda" else "cpu"
    runs = ort_runs(graphs, x, settings.threads, provider)
    iters = settings.iters or min(iterations_for(r) for r in runs.values())
    samples = interleaved(runs, settings.rounds, settings.warmup, iters, on_round)
    return summarize(shape, samples, iters)


def bench_block(block: str, shapes: Sequence[tuple[int, int, int, int]], settings: BenchSettings,
                kwargs: dict | None = None, naive: bool = True,
                on_round: Callable[[], None] | None = None) -> BenchResult:
    """Floor, naive and deploy graphs of ``block`` at every shape (exported into a temp dir)."""
    result = BenchResult(block, "block", settings)
    with tempfile.TemporaryDirectory(prefix="attn-export-bench-") as tmp:
        for shape in shapes:
            graphs = block_graphs(block, shape, Path(tmp), kwargs, naive)
            result.shapes.append(time_graphs(graphs, shape, settings, on_round))
    return result


def onnx_input(path: Path) -> tuple[str, tuple[int | None, ...]]:
    """The single input of an ONNX file: its name and shape (``None`` for a dynamic dim)."""
    from attn_export.export.check import load_onnx

    model = load_onnx(path)
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ShapeModeError(f"{path} has {len(inputs)} inputs; the bench times single-input "
                             "graphs (one NCHW tensor)")
    dims = inputs[0].type.tensor_type.shape.dim
    return inputs[0].name, tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)


def resolve_shapes(declared: tuple[int | None, ...], asked: Sequence[tuple[int, ...]],
                   where: str) -> list[tuple[int, ...]]:
    """The shapes to time: ``asked`` (each checked against ``declared``) or the static one."""
    if not asked:
        if any(d is None for d in declared):
            dims = "x".join("?" if d is None else str(d) for d in declared)
            raise ShapeModeError(f"{where} has a dynamic input ({dims}); give the shapes to time "
                                 "with --shapes, e.g. --shapes 1x64x56x56")
        return [tuple(declared)]
    for shape in asked:
        if len(shape) != len(declared) or any(d is not None and d != s
                                               for d, s in zip(declared, shape)):
            dims = "x".join("?" if d is None else str(d) for d in declared)
            raise ShapeModeError(f"--shapes {'x'.join(map(str, shape))} does not fit {where}'s "
                                 f"input {dims} ('?' = any size)")
    return [tuple(s) for s in asked]


def bench_onnx(path: Path, shapes: Sequence[tuple[int, ...]], settings: BenchSettings,
               on_round: Callable[[], None] | None = None) -> BenchResult:
    """An exported model against the floor at each shape."""
    name, declared = onnx_input(path)
    result = BenchResult(str(path), "onnx", settings)
    with tempfile.TemporaryDirectory(prefix="attn-export-bench-") as tmp:
        for shape in resolve_shapes(declared, shapes, str(path)):
            floor = floor_onnx(shape, Path(tmp) / "floor.onnx", name)
            graphs = [Graph(FLOOR, floor, name), Graph(MODEL, path, name)]
            result.shapes.append(time_graphs(graphs, shape, settings, on_round))
    return result
