"""HTTP/REST: the Open Inference Protocol as Triton serves it, on Starlette.

Starlette rather than FastAPI: every route here reads raw bytes (the binary tensor extension) and
writes prebuilt bodies, so FastAPI's request models, validation and OpenAPI layer would be pure
per-request overhead against the 1 ms budget; Starlette is the routing core FastAPI itself runs on.
"""

from __future__ import annotations

import functools
import json
import time

from attn_export.serve.codec_http import decode_request, encode_response
from attn_export.serve.core import InferenceCore
from attn_export.serve.errors import BadRequest, ServeError, TooLarge
from attn_export.serve.served_model import config_json

HEADER_LENGTH = "inference-header-content-length"


def _json(data, status: int = 200):
    from starlette.responses import Response

    return Response(json.dumps(data, separators=(",", ":")), status, media_type="application/json")


def _error(status: int, message: str):
    return _json({"error": message}, status)


def guarded(handler):
    """Turn every failure into ``{"error": ...}`` with Triton's status; the server keeps serving."""

    @functools.wraps(handler)
    async def wrapper(request):
        try:
            return await handler(request)
        except ServeError as exc:
            return _error(exc.http_status, str(exc))
        except Exception as exc:  # a bug must cost one request, not the server
            return _error(500, f"internal error: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
                          if str(exc) else f"internal error: {type(exc).__name__}")

    return wrapper


async def read_body(request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"request body of {declared} bytes exceeds --max-request-bytes {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"request body exceeds --max-request-bytes {limit}")
        chunks.append(chunk)
    return b"".join(chunks)


def make_app(core: InferenceCore, max_request_bytes: int):
    """The Starlette application serving ``core``."""
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    def model_of(request):
        p = request.path_params
        return core.model(p["model"], p.get("version", ""))

    async def live(_request):
        return Response(status_code=200)

    async def ready(_request):
        return Response(status_code=200 if core.ready else 503)

    @guarded
    async def server_metadata(_request):
        return _json(core.server_metadata())

    @guarded
    async def model_metadata(request):
        return _json(model_of(request).metadata())

    @guarded
    async def model_ready(request):
        model = model_of(request)
        if model.ready:
            return Response(status_code=200)
        return _error(503, f"model {model.name!r} is not ready: {model.reason or model.state.lower()}")

    @guarded
    async def model_config(request):
        model = model_of(request)
        if model.config is None:
            raise ServeError(f"model {model.name!r} has no readable config: {model.reason}")
        return _json(config_json(model.config))

    @guarded
    async def model_stats(request):
        p = request.path_params
        return _json(core.statistics(p.get("model", ""), p.get("version", "")))

    @guarded
    async def index(_request):
        return _json(core.index())

    async def infer(request):
        started = time.perf_counter()
        model = None
        response = await _infer(request)
        if core.metrics is not None:
            p = request.path_params
            model = core.models.get(p["model"])
            if model is not None:
                labels = (model.name, model.version, "http")
                ok = response.status_code == 200
                core.metrics.requests.labels(*labels, "success" if ok else "failure").inc()
                if not ok:
                    core.metrics.failures.labels(*labels, str(response.status_code)).inc()
                core.metrics.request_seconds.labels(*labels).observe(time.perf_counter() - started)
        return response

    @guarded
    async def _infer(request):
        model = model_of(request)
        body = await read_body(request, max_request_bytes)
        parsed = decode_request(body, request.headers.get(HEADER_LENGTH))
        wanted = parsed.outputs if parsed.outputs is not None else \
            [(n, parsed.binary_default) for n in model.outputs]
        unknown = sorted({n for n, _ in wanted} - set(model.outputs))
        if unknown:
            raise BadRequest(f"model {model.name!r} has no outputs {unknown}; it has {sorted(model.outputs)}")
        outputs = await model.infer(parsed.inputs)
        content, header_length = encode_response(model.name, model.version, parsed.id, outputs, wanted)
        if header_length is None:
            return Response(content, media_type="application/json")
        return Response(content, media_type="application/octet-stream",
                        headers={"Inference-Header-Content-Length": str(header_length)})

    base, versioned = "/v2/models/{model}", "/v2/models/{model}/versions/{version}"
    routes = [
        Route("/v2/health/live", live), Route("/v2/health/ready", ready),
        Route("/v2", server_metadata), Route("/v2/models/stats", model_stats),
        Route("/v2/repository/index", index, methods=["POST", "GET"]),
    ]
    for prefix in (versioned, base):
        routes += [
            Route(prefix, model_metadata), Route(prefix + "/ready", model_ready),
            Route(prefix + "/config", model_config), Route(prefix + "/stats", model_stats),
            Route(prefix + "/infer", infer, methods=["POST"]),
        ]

    async def no_route(request, exc):
        return _error(exc.status_code, f"no endpoint {request.method} {request.url.path} "
                      "(Open Inference Protocol v2 paths start with /v2)")

    return Starlette(routes=routes, exception_handlers={404: no_route, 405: no_route})
