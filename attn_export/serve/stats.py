"""Per-model statistics in the shape of Triton's statistics extension
(``GET v2/models/{m}/stats``, gRPC ``ModelStatistics``): counts and cumulative nanoseconds.

``inference_count`` counts rows served, ``execution_count`` batches executed, so their ratio is
the batch size the dynamic batcher achieved.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field


@dataclass
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, seconds: float, n: int = 1) -> None:
        self.count += n
        self.ns += int(seconds * 1e9)

    def to_dict(self) -> dict:
        return {"count": self.count, "ns": self.ns}


@dataclass
class ModelStats:
    name: str
    version: str
    last_inference_ms: int = 0
    inference_count: int = 0
    execution_count: int = 0
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    batches: dict[int, Duration] = field(default_factory=lambda: defaultdict(Duration))

    def record_batch(self, rows: int, requests: int, queue_s: list[float], compute_s: float) -> None:
        self.last_inference_ms = int(time.time() * 1000)
        self.inference_count += rows
        self.execution_count += 1
        for q in queue_s:
            self.queue.add(q)
        self.compute_infer.add(compute_s, requests)
        self.batches[rows].add(compute_s)

    def record_request(self, seconds: float, ok: bool) -> None:
        (self.success if ok else self.fail).add(seconds)

    def to_dict(self) -> dict:
        zero = Duration().to_dict()
        return {
            "name": self.name, "version": self.version, "last_inference": self.last_inference_ms,
            "inference_count": self.inference_count, "execution_count": self.execution_count,
            "inference_stats": {"success": self.success.to_dict(), "fail": self.fail.to_dict(),
                                "queue": self.queue.to_dict(), "compute_input": zero,
                                "compute_infer": self.compute_infer.to_dict(),
                                "compute_output": zero, "cache_hit": zero, "cache_miss": zero},
            "batch_stats": [{"batch_size": size, "compute_input": zero,
                             "compute_infer": d.to_dict(), "compute_output": zero}
                            for size, d in sorted(self.batches.items())],
        }
