"""gRPC: ``inference.GRPCInferenceService`` on grpc.aio, subclassing the servicer base class and
protobufs that tritonclient ships (no ``.proto`` copied). Tensors travel as raw little-endian
contents (``raw_input_contents`` / ``raw_output_contents``), the way tritonclient sends them;
typed ``contents`` are accepted too, except FP16, which the protocol allows only raw."""

from __future__ import annotations

import functools
import time

import numpy as np

from attn_export.errors import ValidationError
from attn_export.serve.budget import (
    DEFAULT_MAX_INFLIGHT_BYTES,
    MemoryBudget,
    Reservation,
    output_cost,
)
from attn_export.serve.core import InferenceCore
from attn_export.serve.dtypes import numpy_dtype, protocol_dtype
from attn_export.serve.errors import BadRequest, ServeError

CONTENT_FIELDS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents",
                  "INT32": "int_contents", "INT64": "int64_contents", "UINT8": "uint_contents",
                  "UINT16": "uint_contents", "UINT32": "uint_contents", "UINT64": "uint64_contents",
                  "FP32": "fp32_contents", "FP64": "fp64_contents"}


def decode_inputs(request) -> dict[str, np.ndarray]:
    """``ModelInferRequest`` inputs -> arrays; a malformed request is a BadRequest."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise BadRequest(f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs; "
                         "give one per input")
    feed = {}
    for i, tensor in enumerate(request.inputs):
        name = tensor.name
        if name in feed:
            raise BadRequest(f"input {name!r} is given twice")
        try:
            dtype = numpy_dtype(tensor.datatype)
        except ValidationError as exc:
            raise BadRequest(f"input {name!r}: {exc}") from None
        shape = tuple(int(d) for d in tensor.shape)
        if any(d < 0 for d in shape):
            raise BadRequest(f"input {name!r}: negative dim in shape {list(shape)}")
        count = int(np.prod(shape, dtype=np.int64))
        if raw:
            data = raw[i]
            if len(data) != count * dtype.itemsize:
                raise BadRequest(f"input {name!r}: {len(data)} bytes of raw contents, but shape "
                                 f"{list(shape)} of {tensor.datatype} needs {count * dtype.itemsize}")
            feed[name] = np.frombuffer(data, dtype=dtype.newbyteorder("<")).astype(dtype, copy=False) \
                .reshape(shape)
            continue
        field = CONTENT_FIELDS.get(tensor.datatype)
        if field is None:
            raise BadRequest(f"input {name!r}: {tensor.datatype} must be sent as raw_input_contents")
        values = getattr(tensor.contents, field)
        if len(values) != count:
            raise BadRequest(f"input {name!r}: {len(values)} values for shape {list(shape)} "
                             f"({count} expected)")
        feed[name] = np.asarray(values, dtype=dtype).reshape(shape)
    return feed


def guarded(method):
    """Abort the RPC with Triton's status code on failure; the server keeps serving."""

    @functools.wraps(method)
    async def wrapper(self, request, context, *rest):
        import grpc

        try:
            return await method(self, request, context, *rest)
        except ServeError as exc:
            await context.abort(getattr(grpc.StatusCode, exc.grpc_code), str(exc))
        except Exception as exc:  # one failed RPC, never a dead server
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}")

    return wrapper


class GrpcEndpoints:
    """The RPCs tritonclient.grpc's common calls make; mixed into tritonclient's generated
    ``GRPCInferenceServiceServicer`` by :func:`make_servicer` (the others stay UNIMPLEMENTED)."""

    def __init__(self, core: InferenceCore, budget: MemoryBudget) -> None:
        from tritonclient.grpc import service_pb2

        self.core, self.pb, self.budget = core, service_pb2, budget

    def _tensors(self, items):
        meta = self.pb.ModelMetadataResponse.TensorMetadata
        return [meta(name=t["name"], datatype=t["datatype"], shape=t["shape"]) for t in items]

    @guarded
    async def ServerLive(self, request, context):
        return self.pb.ServerLiveResponse(live=True)

    @guarded
    async def ServerReady(self, request, context):
        return self.pb.ServerReadyResponse(ready=self.core.ready)

    @guarded
    async def ModelReady(self, request, context):
        return self.pb.ModelReadyResponse(ready=self.core.model(request.name, request.version).ready)

    @guarded
    async def ServerMetadata(self, request, context):
        return self.pb.ServerMetadataResponse(**self.core.server_metadata())

    @guarded
    async def ModelMetadata(self, request, context):
        meta = self.core.model(request.name, request.version).metadata()
        return self.pb.ModelMetadataResponse(name=meta["name"], versions=meta["versions"],
                                             platform=meta["platform"],
                                             inputs=self._tensors(meta["inputs"]),
                                             outputs=self._tensors(meta["outputs"]))

    @guarded
    async def ModelConfig(self, request, context):
        model = self.core.model(request.name, request.version)
        if model.config is None:
            raise ServeError(f"model {model.name!r} has no readable config: {model.reason}")
        return self.pb.ModelConfigResponse(config=model.config)

    @guarded
    async def ModelStatistics(self, request, context):
        from google.protobuf import json_format

        return json_format.ParseDict(self.core.statistics(request.name, request.version),
                                     self.pb.ModelStatisticsResponse())

    async def ModelInfer(self, raw: bytes, context):
        """Registered with no request deserializer or response serializer: the message's size is
        reserved against the memory bound before it is parsed (a parse copies every tensor), and
        the answer is bytes from :func:`encode_infer_response`."""
        started = time.perf_counter()
        state = {"status": "200", "name": ""}
        try:
            return await self._infer(raw, context, state)
        except BaseException:
            state["status"] = "error"
            raise
        finally:
            _count(self.core, state["name"], state["status"], started)

    @guarded
    async def _infer(self, raw: bytes, context, state: dict):
        reservation = Reservation(self.budget)
        if hasattr(context, "add_done_callback"):  # released once the response is sent
            context.add_done_callback(lambda _ctx: reservation.release())
        try:
            return await self._infer_reserved(raw, reservation, state)
        finally:
            if not hasattr(context, "add_done_callback"):
                reservation.release()

    async def _infer_reserved(self, raw: bytes, reservation: Reservation, state: dict):
        reservation.add(GRPC_INPUT_COPIES * len(raw))
        from google.protobuf.message import DecodeError

        try:
            request = self.pb.ModelInferRequest.FromString(raw)
        except DecodeError as exc:
            raise BadRequest(f"ModelInfer request is not a valid ModelInferRequest message ({exc})") \
                from None
        del raw
        state["name"] = request.model_name
        model = self.core.model(request.model_name, request.model_version)
        model.refuse_if_busy()  # before any tensor is decoded
        with model.arriving():  # a batch waiting to fill waits for this one
            wanted = [o.name for o in request.outputs] or list(model.outputs)
            unknown = sorted(set(wanted) - set(model.outputs))
            if unknown:
                raise BadRequest(f"model {model.name!r} has no outputs {unknown}; it has "
                                 f"{sorted(model.outputs)}")
            feed = decode_inputs(request)
            request.ClearField("raw_input_contents")
            model.check_inputs(feed)
            reservation.add(output_cost(model, feed, dict.fromkeys(wanted, True)) * 3 // 2)
        outputs = await model.infer(feed)
        del feed
        header = self.pb.ModelInferResponse(model_name=model.name, model_version=model.version,
                                            id=request.id)
        contents = []
        for name in wanted:
            value = np.ascontiguousarray(outputs[name])
            header.outputs.add(name=name, datatype=protocol_dtype(value.dtype), shape=value.shape)
            contents.append(value.astype(value.dtype.newbyteorder("<"), copy=False))
        return encode_infer_response(header, contents)


def encode_infer_response(header, contents: list[np.ndarray]) -> bytes:
    """A serialized ``ModelInferResponse``: ``header`` (everything but the tensors) serialized by
    protobuf, then each tensor appended as one ``raw_output_contents`` field by hand.

    Why: protobuf's (upb, 6.33) ``SerializeToString`` of a message holding one 256 KiB bytes field
    took 0.16-0.25 ms per request inside the server (p50, ``se`` at 1x64x32x32; 0.5 ms in a bare
    loop), a fifth of the whole gRPC round trip, after ``tobytes`` had already copied the tensor
    once; this is one copy in ~10 us. Protobuf's wire format allows it: a message's fields may
    come in any order, and a repeated field's elements are read in the order they appear."""
    field = header.DESCRIPTOR.fields_by_name["raw_output_contents"].number
    tag = _varint(field << 3 | 2)  # wire type 2: length-delimited
    parts = [header.SerializeToString()]
    for value in contents:
        parts += [tag, _varint(value.nbytes), value.reshape(-1).view(np.uint8)]
    return b"".join(parts)


def _varint(n: int) -> bytes:
    """Protobuf's base-128 varint: seven bits a byte, low first, the high bit says "more"."""
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


GRPC_INPUT_COPIES = 4
"""A gRPC request held as: the received message, its parse, the tensors' bytes, the batch copy."""


def make_servicer(core: InferenceCore, budget: MemoryBudget):
    """A servicer instance: our endpoints over tritonclient's generated base class."""
    from tritonclient.grpc import service_pb2_grpc

    cls = type("Servicer", (GrpcEndpoints, service_pb2_grpc.GRPCInferenceServiceServicer), {})
    return cls(core, budget)


class _Handlers:
    """Stands in for a server to collect the method handlers tritonclient's generated code makes."""

    def __init__(self) -> None:
        self.generic, self.methods = [], {}

    def add_generic_rpc_handlers(self, handlers) -> None:
        self.generic.extend(handlers)

    def add_registered_method_handlers(self, _service: str, handlers: dict) -> None:
        self.methods = dict(handlers)


def service_handler(servicer):
    """The service's generic handler, ModelInfer taking the request's raw bytes."""
    import grpc
    from tritonclient.grpc import service_pb2_grpc as pb_grpc

    collected = _Handlers()
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, collected)
    methods = collected.methods or dict(collected.generic[0]._method_handlers)  # older generated code
    methods = {k.rsplit("/", 1)[-1]: v for k, v in methods.items()}
    methods["ModelInfer"] = grpc.unary_unary_rpc_method_handler(  # bytes in, bytes out
        servicer.ModelInfer, request_deserializer=None, response_serializer=None)
    return grpc.method_handlers_generic_handler("inference.GRPCInferenceService", methods)


def _count(core: InferenceCore, name: str, status: str, started: float) -> None:
    model = core.models.get(name)
    if core.metrics is None or model is None:
        return
    labels = (model.name, model.version, "grpc")
    ok = status == "200"
    core.metrics.requests.labels(*labels, "success" if ok else "failure").inc()
    if not ok:
        core.metrics.failures.labels(*labels, status).inc()
    core.metrics.request_seconds.labels(*labels).observe(time.perf_counter() - started)


def grpc_address(host: str, port: int) -> str:
    """gRPC's ``host:port`` target: an IPv6 host goes in brackets (``[::]:8001``), else gRPC
    reads ``:::8001`` as a malformed address and the bind fails."""
    host = host.strip("[]")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


MAX_CONCURRENT_RPCS = 256
"""Past this many RPCs at once gRPC answers RESOURCE_EXHAUSTED before reading the message."""


def make_grpc_server(core: InferenceCore, host: str, port: int, max_message_bytes: int,
                     budget: MemoryBudget | None = None):
    """An unstarted grpc.aio server bound to ``host:port``; returns (server, bound port)."""
    import grpc

    budget = budget or MemoryBudget(DEFAULT_MAX_INFLIGHT_BYTES)
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", max_message_bytes),
                                      ("grpc.max_send_message_length", 2**31 - 1),
                                      ("grpc.so_reuseport", 0)],
                             maximum_concurrent_rpcs=MAX_CONCURRENT_RPCS)
    server.add_generic_rpc_handlers((service_handler(make_servicer(core, budget)),))
    from attn_export.errors import AttnExportError

    try:
        bound = server.add_insecure_port(grpc_address(host, port))
    except RuntimeError:  # grpcio >= 1.5x raises instead of returning 0
        bound = 0
    if bound == 0:
        raise AttnExportError(f"cannot bind gRPC to {host}:{port} (port in use?); pass --grpc-port")
    return server, bound
