"""Request errors: each carries the HTTP status and gRPC code Triton uses for its kind, so both
protocols answer the same failure the same way (and the server keeps serving)."""

from __future__ import annotations


class ServeError(Exception):
    """A request that cannot be answered; ``str()`` is the one-line reason sent to the client."""

    http_status = 500
    grpc_code = "INTERNAL"


class BadRequest(ServeError):
    http_status, grpc_code = 400, "INVALID_ARGUMENT"


class NotFound(ServeError):
    http_status, grpc_code = 404, "NOT_FOUND"


class Unavailable(ServeError):
    """Model not ready, queue full, server shutting down: retry later or elsewhere."""

    http_status, grpc_code = 503, "UNAVAILABLE"


class TooLarge(ServeError):
    http_status, grpc_code = 413, "RESOURCE_EXHAUSTED"


class Overloaded(ServeError):
    """The server's memory bound (--max-inflight-bytes) is reached: retry shortly."""

    http_status, grpc_code = 503, "RESOURCE_EXHAUSTED"
