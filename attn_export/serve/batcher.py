"""Dynamic batching with Triton's semantics, on asyncio, one worker thread per model instance.

Requests to one model queue in arrival order. A free instance takes the oldest and joins the
following ones while the rows fit ``max_batch_size`` (never past the engine profile's max, which
the config check guarantees) and their non-batch shapes match; if the batch is not full it waits
until the oldest request has waited ``max_queue_delay_us``, then runs what it has; it waits only
while another request for the model is being received (its body read or decoded): with none on
the way, nothing can join, and waiting would only add the delay to every request of a single
client (concurrency 1). Results are
split back by row counts, so each request gets exactly its rows. The queue is bounded: a request
arriving when it is full is refused at once (HTTP 503 / gRPC UNAVAILABLE). Inference runs in the
instance's own thread, so the event loop never blocks on it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from attn_export.serve.errors import Unavailable


@dataclass
class Pending:
    feed: dict[str, np.ndarray]
    rows: int
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)

    def key(self) -> tuple:
        """Requests join only when every input agrees beyond the batch dim."""
        return tuple((k, v.dtype.str, v.shape[1:]) for k, v in sorted(self.feed.items()))


@dataclass(frozen=True)
class BatchTiming:
    """What one executed batch reports to statistics and metrics."""

    rows: int
    requests: int
    queue_s: list[float]
    compute_s: float
    ok: bool


class Batcher:
    """Queue + workers of one model.

    Args:
        runners: one loaded Runner per instance (each is used by one thread only).
        max_batch: the config's max_batch_size; 0 runs every request alone, as sent.
        max_delay_us: dynamic_batching max_queue_delay_microseconds.
        max_queue: requests allowed to wait; the next one is refused.
        on_batch: called on the loop with a :class:`BatchTiming` after each batch.
    """

    def __init__(self, runners: list, max_batch: int, max_delay_us: int, max_queue: int,
                 on_batch=None, outputs: list[str] | None = None) -> None:
        self.runners = runners
        self.max_batch = max_batch
        self.max_delay = max_delay_us / 1e6
        self.max_queue = max_queue
        self.on_batch = on_batch or (lambda timing: None)
        self._queue: collections.deque[Pending] = collections.deque()
        self._arrived: asyncio.Event | None = None
        self._tasks: list[asyncio.Task] = []
        self._pools = [ThreadPoolExecutor(1, thread_name_prefix="instance") for _ in runners]
        self._closing = False
        self._arriving = 0
        self._busy = 0
        self.executions = [0] * len(runners)
        """Batches run per instance (how evenly the instances share the load)."""

    def start(self) -> None:
        self._arrived = asyncio.Event()
        self._tasks = [asyncio.get_running_loop().create_task(self._worker(i))
                       for i in range(len(self.runners))]

    @property
    def depth(self) -> int:
        return len(self._queue)

    @property
    def full(self) -> bool:
        return len(self._queue) >= self.max_queue

    @contextlib.contextmanager
    def arriving(self):
        """Marks a request being received for this model: a batch waiting to fill waits for it
        (and stops waiting once none is on the way)."""
        self._arriving += 1
        try:
            yield
        finally:
            self._arriving -= 1
            if self._arrived is not None:
                self._arrived.set()

    async def submit(self, feed: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
        """Queue one request (``rows`` along the batch dim) and wait for its own outputs."""
        if self._closing:
            raise Unavailable("the server is shutting down; retry on another instance")
        if len(self._queue) >= self.max_queue:
            raise Unavailable(f"queue full ({self.max_queue} requests waiting); retry later or raise "
                              "max_queue_size / add instances")
        pending = Pending(feed, rows, asyncio.get_running_loop().create_future())
        self._queue.append(pending)
        self._arrived.set()
        return await pending.future

    def _take(self, batch: list[Pending], rows: int) -> int:
        """Move queued requests that fit into ``batch`` (arrival order, stop at the first misfit)."""
        key = batch[0].key()
        while self._queue and self.max_batch > 0:
            nxt = self._queue[0]
            if nxt.future.done():  # cancelled by a client that went away
                self._queue.popleft()
                continue
            if rows + nxt.rows > self.max_batch or nxt.key() != key:
                break
            batch.append(self._queue.popleft())
            rows += nxt.rows
        return rows

    async def _next_batch(self) -> list[Pending]:
        while True:
            while not self._queue:
                self._arrived.clear()
                await self._arrived.wait()
            first = self._queue.popleft()
            if not first.future.done():
                break
        batch = [first]
        rows = self._take(batch, first.rows)
        while self.max_batch > 0 and rows < self.max_batch and self.max_delay > 0 and not self._closing \
                and self._arriving > 0:
            left = first.enqueued + self.max_delay - time.perf_counter()
            if left <= 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except asyncio.TimeoutError:
                break
            rows = self._take(batch, rows)
        return batch

    async def _worker(self, index: int) -> None:
        loop = asyncio.get_running_loop()
        runner, pool = self.runners[index], self._pools[index]
        while True:
            batch = await self._next_batch()
            started = time.perf_counter()
            self._busy += 1
            try:
                outputs = await loop.run_in_executor(pool, _run_batch, runner, batch)
                ok = True
            except Exception as exc:  # the runner's error belongs to every request of the batch
                outputs, ok = exc, False
            self._busy -= 1
            self.executions[index] += 1
            compute = time.perf_counter() - started
            for i, pending in enumerate(batch):
                if pending.future.done():
                    continue
                if ok:
                    pending.future.set_result(outputs[i])
                else:
                    pending.future.set_exception(outputs)
            self.on_batch(BatchTiming(sum(p.rows for p in batch), len(batch),
                                      [started - p.enqueued for p in batch], compute, ok))

    def begin_close(self) -> None:
        """Refuse new requests; a worker waiting for its batch to fill runs it now."""
        self._closing = True
        if self._arrived is not None:
            self._arrived.set()

    async def close(self) -> None:
        """Refuse new requests, let queued ones finish, then stop the workers and threads."""
        self.begin_close()
        while self._queue or self._busy:
            await asyncio.sleep(0.005)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for pool in self._pools:
            pool.shutdown(wait=True)


def _run_batch(runner, batch: list[Pending]) -> list[dict[str, np.ndarray]]:
    """Concatenate, infer once, split by rows (in the instance's thread). Each request's input
    dict is emptied once consumed: the arrays (and the request bodies they view) are freed
    while the batch runs, not when the last response has been written."""
    if len(batch) == 1:
        try:
            return [runner.infer(batch[0].feed)]
        finally:
            batch[0].feed.clear()
    feed = {name: np.concatenate([p.feed[name] for p in batch]) for name in batch[0].feed}
    for p in batch:
        p.feed.clear()
    outputs = runner.infer(feed)
    del feed
    total = sum(p.rows for p in batch)
    for name, value in outputs.items():
        if value.ndim == 0 or value.shape[0] != total:
            raise RuntimeError(f"output {name!r} has shape {value.shape}, not {total} rows: the model "
                               "does not batch along dim 0; set max_batch_size 0")
    bounds = np.cumsum([p.rows for p in batch])[:-1]
    pieces = {name: np.split(value, bounds) for name, value in outputs.items()}
    return [{name: pieces[name][i] for name in outputs} for i in range(len(batch))]
