"""Interleaved timing on ONNX Runtime: every graph runs in every round, in a rotating order.

A shared or throttling machine changes speed over seconds; timing graph A for ten seconds and then
graph B for ten measures the machine as much as the graphs. Here each round runs every graph for a
short burst (the same number of iterations for each), and the order rotates from round to round, so
a slow stretch hits all graphs alike and the per-round ratios stay meaningful.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from attn_export.bench.graphs import Graph
from attn_export.errors import MissingDependencyError, ModelFileError

ROUND_TARGET_S = 0.2
"""Aim of one graph's burst in one round: long enough that its fastest run is an undisturbed
one, short enough to interleave finely."""
MIN_ITERS, MAX_ITERS = 8, 200
SETTLE_S = 0.02
"""Pause between bursts: ONNX Runtime's worker threads spin for a while after a run, and on a
small machine the last session's spinning threads would steal the cores from the next graph's
burst (measured here: a 2-thread session timed right after another one ran up to 8x slower)."""


@dataclass
class Samples:
    """Per-iteration latencies (seconds) of one graph, grouped by round."""

    role: str
    rounds: list[list[float]] = field(default_factory=list)

    def flat(self) -> np.ndarray:
        return np.array([t for r in self.rounds for t in r], dtype=np.float64)

    def round_minima(self) -> np.ndarray:
        """The fastest run of each round: the one the machine disturbed least."""
        return np.array([min(r) for r in self.rounds], dtype=np.float64)


def ort_session(path, threads: int | None, provider: str = "cpu", profile_prefix: str | None = None):
    """An ``InferenceSession`` with a fixed intra-op thread count and sequential execution.

    ``provider``: ``cpu`` or ``cuda`` (the CUDA EP of onnxruntime-gpu; refused where absent).
    """
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise MissingDependencyError("onnxruntime is not installed; `pip install onnxruntime`") \
            from exc
    providers = ["CPUExecutionProvider"]
    if provider == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise MissingDependencyError(
                "ONNX Runtime has no CUDA execution provider here (found "
                f"{', '.join(ort.get_available_providers())}); install onnxruntime-gpu on a CUDA "
                "machine or use --backend ort-cpu")
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    if threads:
        options.intra_op_num_threads = threads
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph/NoSuchFile types
        raise ModelFileError(f"ONNX Runtime cannot load {path}: {str(exc).splitlines()[0][:300]}; "
                             "expected a complete .onnx file") from None


def ort_callable(graph: Graph, x: np.ndarray, threads: int | None, provider: str = "cpu"
                 ) -> Callable[[], None]:
    """A no-argument function running ``graph`` once on ``x`` (outputs discarded)."""
    session = ort_session(graph.path, threads, provider)
    names = [o.name for o in session.get_outputs()]
    feed = {graph.input_name: x}
    session.run(names, feed)  # the first run allocates; it is never timed
    return lambda: session.run(names, feed)


def iterations_for(run: Callable[[], None], target_s: float = ROUND_TARGET_S) -> int:
    """How many iterations make a burst of about ``target_s`` seconds (MIN_ITERS..MAX_ITERS)."""
    start = time.perf_counter()
    run()
    one = max(time.perf_counter() - start, 1e-6)
    return int(min(MAX_ITERS, max(MIN_ITERS, round(target_s / one))))


def interleaved(runs: dict[str, Callable[[], None]], rounds: int, warmup: int,
                iters: int | None = None, on_round: Callable[[], None] | None = None
                ) -> dict[str, Samples]:
    """Time every function in ``runs`` in each of ``rounds`` rounds, rotating the order.

    ``warmup`` untimed runs of each function come first; ``iters`` per burst defaults to what
    the slowest function needs for a burst of :data:`ROUND_TARGET_S`.
    """
    for run in runs.values():
        for _ in range(warmup):
            run()
    if iters is None:
        iters = min(iterations_for(run) for run in runs.values())
    bursts = {role: (lambda n, run=run: burst(run, n)) for role, run in runs.items()}
    return interleaved_bursts(bursts, rounds, iters, on_round, SETTLE_S)


def interleaved_bursts(bursts: dict[str, Callable[[int], list[float]]], rounds: int, iters: int,
                       on_round: Callable[[], None] | None = None, settle_s: float = 0.0
                       ) -> dict[str, Samples]:
    """The round loop itself: ``bursts[role](n)`` runs a graph ``n`` times and returns each
    run's seconds (host clock for ONNX Runtime, CUDA events for TensorRT)."""
    samples = {role: Samples(role) for role in bursts}
    order = list(bursts)
    for r in range(rounds):
        shift = r % len(order)
        for role in order[shift:] + order[:shift]:
            if settle_s:
                time.sleep(settle_s)
            samples[role].rounds.append(list(bursts[role](iters)))
        if on_round is not None:
            on_round()
    return samples


def burst(run: Callable[[], None], iters: int) -> list[float]:
    """``iters`` back-to-back runs, each timed with ``perf_counter``."""
    times = []
    clock = time.perf_counter
    for _ in range(iters):
        start = clock()
        run()
        times.append(clock() - start)
    return times


def ort_runs(graphs: Sequence[Graph], x: np.ndarray, threads: int | None, provider: str = "cpu"
             ) -> dict[str, Callable[[], None]]:
    """Role -> run function for ``graphs`` on ONNX Runtime (one session each, opened once)."""
    return {g.role: ort_callable(g, x, threads, provider) for g in graphs}
