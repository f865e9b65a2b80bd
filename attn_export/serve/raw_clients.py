"""Minimal clients for ``bench-serve --client raw``: the request is built once and sent as bytes
(HTTP: a keep-alive ``http.client`` connection, binary tensors; gRPC: a serialized
``ModelInferRequest`` over a plain channel), and the answer is only checked, not decoded into
arrays. What they measure is the server plus the wire, without tritonclient's own per-call
Python work, which on a small edge CPU is a large share of the latency tritonclient reports."""

from __future__ import annotations

import http.client
import json

import numpy as np


class RawHttp:
    """One keep-alive connection; :meth:`infer` sends the prebuilt request and reads the answer."""

    def __init__(self, url: str, model: str, feed: dict[str, np.ndarray], datatypes: dict[str, str]) -> None:
        host, _, port = url.rpartition(":")
        self.conn = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=60)
        header = json.dumps({"inputs": [
            {"name": n, "shape": list(v.shape), "datatype": datatypes[n],
             "parameters": {"binary_data_size": v.nbytes}} for n, v in feed.items()],
            "parameters": {"binary_data_output": True}}).encode()
        self.body = b"".join([header, *(np.ascontiguousarray(v).astype(v.dtype.newbyteorder("<"))
                                        .tobytes() for v in feed.values())])
        self.headers = {"Inference-Header-Content-Length": str(len(header)),
                        "Content-Type": "application/octet-stream"}
        self.path = f"/v2/models/{model}/infer"

    def infer(self) -> None:
        self.conn.request("POST", self.path, self.body, self.headers)
        response = self.conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {data[:200]!r}")

    def close(self) -> None:
        self.conn.close()


class RawGrpc:
    """One channel; :meth:`infer` sends the prebuilt serialized request, keeps the raw answer."""

    def __init__(self, url: str, model: str, feed: dict[str, np.ndarray], datatypes: dict[str, str]) -> None:
        import grpc
        from tritonclient.grpc import service_pb2

        request = service_pb2.ModelInferRequest(model_name=model)
        for name, value in feed.items():
            request.inputs.add(name=name, datatype=datatypes[name], shape=value.shape)
            request.raw_input_contents.append(np.ascontiguousarray(value)
                                              .astype(value.dtype.newbyteorder("<")).tobytes())
        self.payload = request.SerializeToString()
        self.channel = grpc.insecure_channel(url, options=[("grpc.max_receive_message_length", -1),
                                                           ("grpc.max_send_message_length", -1)])
        self.call = self.channel.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                                             request_serializer=None, response_deserializer=None)

    def infer(self) -> None:
        if not self.call(self.payload):
            raise RuntimeError("empty ModelInfer response")

    def close(self) -> None:
        self.channel.close()


def raw_client(protocol: str, url: str, model: str, feed, datatypes):
    return (RawGrpc if protocol == "grpc" else RawHttp)(url, model, feed, datatypes)
