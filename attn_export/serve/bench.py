"""A bounded load generator on tritonclient: latency percentiles and throughput per protocol,
concurrency and model (batching on / off), beside the same model called in-process, so the
server's overhead is a measured difference and ratio, not a guess.

Each concurrency level runs ``requests`` calls split over that many threads, each with its own
client (tritonclient clients are not shared between threads), after a short warm-up. ``client``
is ``tritonclient`` (what users run) or ``raw`` (:mod:`attn_export.serve.raw_clients`: prebuilt
bytes, nothing decoded: the server's own share of the latency).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Level:
    """One measured row."""

    protocol: str
    model: str
    concurrency: int
    latencies_s: tuple[float, ...]
    wall_s: float
    errors: int

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_s, q)) if self.latencies_s else float("nan")

    @property
    def throughput(self) -> float:
        return len(self.latencies_s) / self.wall_s if self.wall_s else 0.0


def _client(protocol: str, url: str):
    if protocol == "grpc":
        import tritonclient.grpc as mod
    else:
        import tritonclient.http as mod
    return mod, mod.InferenceServerClient(url)


def _call(mod, client, model: str, feed: dict[str, np.ndarray], datatypes: dict[str, str]):
    inputs = []
    for name, value in feed.items():
        i = mod.InferInput(name, list(value.shape), datatypes[name])
        i.set_data_from_numpy(value)
        inputs.append(i)
    return client.infer(model, inputs)


class _TritonCall:
    """tritonclient's ``infer`` with fresh InferInputs per call, as an application makes them."""

    def __init__(self, protocol: str, url: str, model: str, feed, datatypes) -> None:
        self.mod, self.client = _client(protocol, url)
        self.model, self.feed, self.datatypes = model, feed, datatypes

    def infer(self) -> None:
        _call(self.mod, self.client, self.model, self.feed, self.datatypes)

    def close(self) -> None:
        self.client.close()


def _make_caller(client: str, protocol: str, url: str, model: str, feed, datatypes):
    if client == "raw":
        from attn_export.serve.raw_clients import raw_client

        return raw_client(protocol, url, model, feed, datatypes)
    return _TritonCall(protocol, url, model, feed, datatypes)


def run_level(protocol: str, url: str, model: str, feed, datatypes, concurrency: int, requests: int,
              warmup: int = 5, client: str = "tritonclient") -> Level:
    """``requests`` calls over ``concurrency`` threads; returns every latency and the wall time."""
    per_thread = max(1, requests // concurrency)
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    barrier = threading.Barrier(concurrency + 1)

    def worker() -> None:
        caller = _make_caller(client, protocol, url, model, feed, datatypes)
        try:
            for _ in range(warmup):
                caller.infer()
            barrier.wait()
            mine = []
            for _ in range(per_thread):
                start = time.perf_counter()
                try:
                    caller.infer()
                    mine.append(time.perf_counter() - start)
                except Exception:  # counted: a benchmark reports failures, it does not stop
                    errors[0] += 1
            with lock:
                latencies.extend(mine)
        finally:
            caller.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    return Level(protocol, model, concurrency, tuple(latencies), time.perf_counter() - started, errors[0])


def in_process(onnx_path: str, feed, requests: int, warmup: int = 10) -> Level:
    """The same model and input through OnnxRuntimeRunner in this process, one call at a time."""
    from attn_export.runtime.onnxruntime_runner import OnnxRuntimeRunner

    with OnnxRuntimeRunner(onnx_path, ["CPUExecutionProvider"]) as runner:
        for _ in range(warmup):
            runner.infer(feed)
        latencies = []
        started = time.perf_counter()
        for _ in range(requests):
            t = time.perf_counter()
            runner.infer(feed)
            latencies.append(time.perf_counter() - t)
        wall = time.perf_counter() - started
    return Level("in-process", "onnxruntime", 1, tuple(latencies), wall, 0)


def format_levels(levels: list[Level]) -> str:
    header = ("protocol", "model", "conc", "p50 ms", "p90 ms", "p99 ms", "req/s", "errors")
    rows = [(lv.protocol, lv.model, str(lv.concurrency), f"{lv.percentile(50) * 1e3:.3f}",
             f"{lv.percentile(90) * 1e3:.3f}", f"{lv.percentile(99) * 1e3:.3f}", f"{lv.throughput:.1f}",
             str(lv.errors)) for lv in levels]
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in (header, *rows)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def summary(levels: list[Level], batched_model: str) -> list[str]:
    """Overhead over in-process (p50 at concurrency 1) and the batching throughput gain, with the
    serving targets (HTTP <= 1 ms, gRPC <= 0.7 ms, c16/c1 >= 1.5x)."""
    base = next((lv for lv in levels if lv.protocol == "in-process"), None)
    lines = []
    targets = {"http": 1.0, "grpc": 0.7}
    for protocol, target in targets.items():
        one = next((lv for lv in levels if lv.protocol == protocol and lv.model == batched_model
                    and lv.concurrency == 1), None)
        if one is None or base is None:
            continue
        extra = (one.percentile(50) - base.percentile(50)) * 1e3
        ratio = one.percentile(50) / base.percentile(50)
        lines.append(f"{protocol} p50 overhead over in-process: {extra:.3f} ms ({ratio:.2f}x in-process "
                     f"p50 {base.percentile(50) * 1e3:.3f} ms); target <= {target} ms: "
                     + ("met" if extra <= target else "MISSED"))
    for protocol in targets:
        for model in sorted({lv.model for lv in levels if lv.protocol == protocol}):
            by_c = {lv.concurrency: lv for lv in levels if lv.protocol == protocol and lv.model == model}
            if 1 in by_c and len(by_c) > 1:
                top = max(by_c)
                gain = by_c[top].throughput / by_c[1].throughput if by_c[1].throughput else float("nan")
                verdict = (" (target >= 1.5x: " + ("met)" if gain >= 1.5 else "MISSED)")) \
                    if model == batched_model and top >= 16 else ""
                lines.append(f"{protocol} {model}: throughput at concurrency {top} = {gain:.2f}x "
                             f"concurrency 1{verdict}")
    return lines
