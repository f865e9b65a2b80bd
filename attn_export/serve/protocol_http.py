"""HTTP/REST: the Open Inference Protocol as Triton serves it, on Starlette.

Starlette rather than FastAPI: every route here reads raw bytes (the binary tensor extension) and
writes prebuilt bodies, so FastAPI's request models, validation and OpenAPI layer would be pure
per-request overhead against the 1 ms budget; Starlette is the routing core FastAPI itself runs on.
"""

from __future__ import annotations

import functools
import json
import time

from attn_export.serve.budget import (
    DEFAULT_MAX_INFLIGHT_BYTES,
    MemoryBudget,
    Reservation,
    input_cost,
    output_cost,
)
from attn_export.serve.codec_http import (
    decode_raw_request,
    decode_request,
    encode_response,
    json_value_count,
)
from attn_export.serve.core import InferenceCore
from attn_export.serve.errors import BadRequest, ServeError, TooLarge
from attn_export.serve.served_model import config_json

HEADER_LENGTH = "inference-header-content-length"
OFF_LOOP_JSON_BYTES = 64 << 10
"""A JSON request part larger than this is parsed in a worker thread, not on the event loop."""
OFF_LOOP_JSON_VALUES = 16384
"""A response with more JSON numbers than this is encoded in a worker thread (~5 ms of work);
smaller ones stay on the loop, where a thread hop would cost more than the encoding."""


def _json(data, status: int = 200):
    from starlette.responses import Response

    return Response(json.dumps(data, separators=(",", ":")), status, media_type="application/json")


def _error(status: int, message: str):
    return _json({"error": message}, status)


def guarded_method(handler):
    """Turn every failure into ``{"error": ...}`` with Triton's status; the server keeps serving."""

    @functools.wraps(handler)
    async def wrapper(self, request):
        try:
            return await handler(self, request)
        except ServeError as exc:
            return _error(exc.http_status, str(exc))
        except Exception as exc:  # a bug must cost one request, not the server
            first = str(exc).splitlines()[0][:300] if str(exc) else ""
            return _error(500, f"internal error: {type(exc).__name__}" + (f": {first}" if first else ""))

    return wrapper


def PartsResponse(parts: list, media_type: str, headers: dict, on_sent):  # noqa: N802 - a class
    """A response whose body goes out as ``parts`` (the JSON header, then each tensor's buffer,
    never joined into one copy); ``on_sent`` runs once they are handed to the connection (or it
    failed), which is when the request stops holding memory."""
    from starlette.responses import Response

    class _PartsResponse(Response):
        def __init__(self) -> None:
            total = sum(memoryview(p).nbytes for p in parts)
            super().__init__(b"", 200, {**headers, "content-length": str(total)}, media_type)
            self.parts = parts

        async def __call__(self, scope, receive, send) -> None:
            try:
                await send({"type": "http.response.start", "status": self.status_code,
                            "headers": self.raw_headers})
                for part in self.parts:
                    await send({"type": "http.response.body", "body": part, "more_body": True})
                self.parts = []
                # the last, empty message waits (uvicorn's flow control) until the connection has
                # taken the data out of its buffer: only then is the memory really given back
                await send({"type": "http.response.body", "body": b""})
            finally:
                self.parts = []
                on_sent()

    return _PartsResponse()


def _empty(status: int):
    from starlette.responses import Response

    return Response(status_code=status)


async def read_exactly(request, length: int) -> bytearray:
    """The body into one buffer of its declared length, filled in place as chunks arrive (no list
    of chunks joined at the end: that would hold the body twice)."""
    body = bytearray(length)
    view, pos = memoryview(body), 0
    async for chunk in request.stream():
        if pos + len(chunk) > length:
            raise BadRequest(f"request body is longer than its Content-Length {length}")
        view[pos:pos + len(chunk)] = chunk
        pos += len(chunk)
    if pos != length:
        raise BadRequest(f"request body has {pos} bytes, its Content-Length says {length}")
    return body


async def read_streamed(request, limit: int, reservation: Reservation, json_all: bool) -> bytearray:
    """A body without Content-Length (chunked): reserved chunk by chunk as it arrives."""
    body = bytearray()
    async for chunk in request.stream():
        if len(body) + len(chunk) > limit:
            raise TooLarge(f"request body exceeds --max-request-bytes {limit}")
        reservation.add(input_cost(len(chunk), len(chunk) if json_all else 0))
        body += chunk
    return body


def _json_part_bytes(length: int, header_length: str | None) -> int:
    """How much of a body of ``length`` bytes is JSON text."""
    if header_length is None:
        return length
    return min(length, int(header_length)) if header_length.isdigit() else 0


class HttpEndpoints:
    """The handlers, one small method per endpoint, over one :class:`InferenceCore`."""

    def __init__(self, core: InferenceCore, max_request_bytes: int, budget: MemoryBudget) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.core = core
        self.max_request_bytes = max_request_bytes
        self.budget = budget
        self.codec_pool = ThreadPoolExecutor(1, thread_name_prefix="json")
        """JSON tensor work (``json.loads``, ``tolist``, ``json.dumps``): off the loop that
        answers health checks and gRPC."""

    async def off_loop(self, func, *args):
        import asyncio

        return await asyncio.get_running_loop().run_in_executor(self.codec_pool, func, *args)

    def model_of(self, request):
        p = request.path_params
        return self.core.model(p["model"], p.get("version", ""))

    async def live(self, _request):
        return _empty(200)

    async def ready(self, _request):
        return _empty(200 if self.core.ready else 503)

    @guarded_method
    async def server_metadata(self, _request):
        return _json(self.core.server_metadata())

    @guarded_method
    async def model_metadata(self, request):
        return _json(self.model_of(request).metadata())

    @guarded_method
    async def model_ready(self, request):
        model = self.model_of(request)
        if model.ready:
            return _empty(200)
        return _error(503, f"model {model.name!r} is not ready: {model.reason or model.state.lower()}")

    @guarded_method
    async def model_config(self, request):
        model = self.model_of(request)
        if model.config is None:
            raise ServeError(f"model {model.name!r} has no readable config: {model.reason}")
        return _json(config_json(model.config))

    @guarded_method
    async def model_stats(self, request):
        p = request.path_params
        return _json(self.core.statistics(p.get("model", ""), p.get("version", "")))

    @guarded_method
    async def index(self, _request):
        return _json(self.core.index())

    async def infer(self, request):
        started = time.perf_counter()
        response = await self._infer(request)
        self._count(request.path_params["model"], response.status_code, started)
        return response

    def _count(self, name: str, status: int, started: float) -> None:
        metrics, model = self.core.metrics, self.core.models.get(name)
        if metrics is None or model is None:
            return
        labels = (model.name, model.version, "http")
        metrics.requests.labels(*labels, "success" if status == 200 else "failure").inc()
        if status != 200:
            metrics.failures.labels(*labels, str(status)).inc()
        metrics.request_seconds.labels(*labels).observe(time.perf_counter() - started)

    @guarded_method
    async def _infer(self, request):
        model = self.model_of(request)
        model.refuse_if_busy()  # not ready or queue full: refused before a body byte is read
        reservation = Reservation(self.budget)
        try:
            return await self._infer_reserved(request, model, reservation)
        except BaseException:
            reservation.release()
            raise

    async def _read(self, request, reservation: Reservation, header_length: str | None) -> bytearray:
        declared = request.headers.get("content-length")
        if declared is None or not declared.isdigit():
            return await read_streamed(request, self.max_request_bytes, reservation, header_length is None)
        length = int(declared)
        if length > self.max_request_bytes:
            raise TooLarge(f"request body of {length} bytes exceeds --max-request-bytes "
                           f"{self.max_request_bytes}")
        reservation.add(input_cost(length, 0 if header_length == "0"
                                   else _json_part_bytes(length, header_length)))
        return await read_exactly(request, length)

    async def _infer_reserved(self, request, model, reservation: Reservation):
        with model.arriving():  # a batch waiting to fill waits for this one
            feed, wanted, rid = await self._receive(request, model, reservation)
        outputs = await model.infer(feed)  # the batcher drops the inputs once they are consumed
        del feed
        encode = (model.name, model.version, rid, outputs, wanted)
        parts, header_length = await self.off_loop(encode_response, *encode) \
            if json_value_count(outputs, wanted) > OFF_LOOP_JSON_VALUES else encode_response(*encode)
        del outputs
        headers = {} if header_length is None else {"Inference-Header-Content-Length": str(header_length)}
        return PartsResponse(parts, "application/json" if header_length is None
                             else "application/octet-stream", headers, reservation.release)

    async def _receive(self, request, model, reservation: Reservation):
        """Read, decode and check one request: (inputs, wanted outputs, request id)."""
        header_length = request.headers.get(HEADER_LENGTH)
        body = await self._read(request, reservation, header_length)
        if header_length == "0":
            parsed = decode_raw_request(body, model.inputs, model.max_batch > 0)
        elif _json_part_bytes(len(body), header_length) > OFF_LOOP_JSON_BYTES:
            parsed = await self.off_loop(decode_request, body, header_length)
        else:
            parsed = decode_request(body, header_length)
        del body  # the tensors view into it: it lives exactly as long as they do
        wanted = parsed.outputs if parsed.outputs is not None else \
            [(n, parsed.binary_default) for n in model.outputs]
        unknown = sorted({n for n, _ in wanted} - set(model.outputs))
        if unknown:
            raise BadRequest(f"model {model.name!r} has no outputs {unknown}; it has {sorted(model.outputs)}")
        feed, parsed.inputs = parsed.inputs, {}
        model.check_inputs(feed)
        reservation.add(output_cost(model, feed, dict(wanted)))
        return feed, wanted, parsed.id

    def routes(self) -> list:
        from starlette.routing import Route

        routes = [
            Route("/v2/health/live", self.live), Route("/v2/health/ready", self.ready),
            Route("/v2", self.server_metadata), Route("/v2/models/stats", self.model_stats),
            Route("/v2/repository/index", self.index, methods=["POST", "GET"]),
        ]
        for prefix in ("/v2/models/{model}/versions/{version}", "/v2/models/{model}"):
            routes += [
                Route(prefix, self.model_metadata), Route(prefix + "/ready", self.model_ready),
                Route(prefix + "/config", self.model_config), Route(prefix + "/stats", self.model_stats),
                Route(prefix + "/infer", self.infer, methods=["POST"]),
            ]
        return routes


async def _no_route(request, exc):
    return _error(exc.status_code, f"no endpoint {request.method} {request.url.path} "
                  "(Open Inference Protocol v2 paths start with /v2)")


def make_app(core: InferenceCore, max_request_bytes: int, budget: MemoryBudget | None = None):
    """The Starlette application serving ``core``."""
    from starlette.applications import Starlette

    budget = budget or MemoryBudget(DEFAULT_MAX_INFLIGHT_BYTES)
    routes = HttpEndpoints(core, max_request_bytes, budget).routes()
    return Starlette(routes=routes, exception_handlers={404: _no_route, 405: _no_route})
