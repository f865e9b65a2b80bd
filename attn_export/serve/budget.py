"""The memory a server may hold for requests in flight (``--max-inflight-bytes``), and what one
request costs against it, estimated from sizes known *before* its body is read or decoded.

On a Jetson the CPU and the GPU share one memory (8 GB on an Orin Nano): a few large requests
held at once would get the server killed. Every infer request reserves its estimated peak before
its body is read (HTTP: ``Content-Length``; gRPC: the message's size) and its outputs' estimate
once its shapes are known; a reservation that does not fit is refused at once (HTTP 503, gRPC
RESOURCE_EXHAUSTED), and one that could never fit with 413. Reservations end when the response
has been handed to the socket. Single-threaded: used on the event loop only.

The estimates (bytes, per request):

* body: the bytes as read (one buffer of ``Content-Length``, filled in place, never joined);
* JSON text: :data:`JSON_FACTOR` x its size while ``json.loads`` holds Python numbers (a float is
  a 24-byte object plus an 8-byte list slot for as little as 4 bytes of text: ``1.0,``);
* tensors: the decoded inputs again, for the batch's concatenated copy;
* outputs: twice their size when binary (the arrays, the response buffers), :data:`JSON_OUT_FACTOR`
  x when sent as JSON text (a float32 prints as up to 24 characters).
"""

from __future__ import annotations

import contextlib

import numpy as np

from attn_export.serve.errors import Overloaded, TooLarge

DEFAULT_MAX_INFLIGHT_BYTES = 256 << 20
"""256 MiB: on an 8 GB Orin Nano, with the OS, the models (resident weights, CUDA context) and
the server's own ~0.3 GB, a bound that leaves the GPU its share of the memory."""

JSON_FACTOR = 10
JSON_OUT_FACTOR = 7


class MemoryBudget:
    """A byte counter with a limit; :meth:`hold` reserves, or refuses with a ServeError."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def reserve(self, n: int) -> None:
        if n > self.limit:
            raise TooLarge(f"this request needs about {n >> 20} MiB in the server, more than "
                           f"--max-inflight-bytes {self.limit >> 20} MiB allows; send tensors binary "
                           "(not JSON), split the batch, or raise --max-inflight-bytes")
        if self.held + n > self.limit:
            raise Overloaded(f"server busy: {self.held >> 20} MiB of requests in flight, this one needs "
                             f"about {max(1, n >> 20)} MiB more than --max-inflight-bytes "
                             f"{self.limit >> 20} MiB allows; retry shortly")
        self.held += n

    def release(self, n: int) -> None:
        self.held -= n

    @contextlib.contextmanager
    def hold(self, n: int):
        self.reserve(n)
        try:
            yield n
        finally:
            self.release(n)


class Reservation:
    """The bytes one request holds; grown step by step, released once (idempotent)."""

    def __init__(self, budget: MemoryBudget) -> None:
        self.budget, self.bytes = budget, 0

    def add(self, n: int) -> None:
        self.budget.reserve(n)
        self.bytes += n

    def release(self) -> None:
        self.budget.release(self.bytes)
        self.bytes = 0


def input_cost(body_bytes: int, json_bytes: int) -> int:
    """Peak bytes of reading and decoding a body of which ``json_bytes`` are JSON text."""
    tensors = (body_bytes - json_bytes) + 4 * json_bytes  # a JSON number of >= 2 chars -> <= 8 bytes
    return body_bytes + JSON_FACTOR * json_bytes + tensors


def output_cost(model, feed: dict[str, np.ndarray], binary: dict[str, bool]) -> int:
    """Estimated bytes of the outputs ``binary`` names (name -> sent binary) for ``feed``: exact
    when the model's output dims are fixed, else the size of the inputs."""
    rows = next(iter(feed.values())).shape[0] if model.max_batch > 0 and feed else 1
    inputs = sum(a.nbytes for a in feed.values())
    total = 0
    for name, is_binary in binary.items():
        dtype, dims = model.outputs[name]
        size = rows * int(np.prod(dims, dtype=np.int64)) * dtype.itemsize if all(d >= 0 for d in dims) \
            else inputs
        total += size * (2 if is_binary else JSON_OUT_FACTOR)
    return total
