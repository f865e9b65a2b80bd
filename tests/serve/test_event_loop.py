"""The event loop answers health checks while large JSON tensors are encoded: JSON work runs in
worker threads, in chunks short enough that the GIL comes back to the loop between them."""

from __future__ import annotations

import http.client
import threading
import time

import numpy as np

from tests.serve.conftest import free_port
from tests.serve.rawhttp import decode_output, infer_body, spawn_server, stop, wait_ready


def test_health_answers_within_100ms_while_a_large_json_response_is_encoded(repo):
    import onnxruntime as ort

    ports = [free_port() for _ in range(3)]
    proc = spawn_server(repo, ports, "--max-request-bytes", str(16 << 20))
    try:
        wait_ready(ports[0], proc)
        x = np.random.default_rng(0).standard_normal((8, 64, 32, 32)).astype(np.float32)
        body, headers = infer_body(x, binary_output=False)  # ~10 MB of JSON numbers back
        answers: list[tuple[bytes, dict]] = []

        def big() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", ports[0], timeout=120)
            for _ in range(2):
                conn.request("POST", "/v2/models/se/infer", body, headers)
                response = conn.getresponse()
                answers.append((response.read(), dict(response.getheaders()), response.status))
            conn.close()

        threads = [threading.Thread(target=big) for _ in range(2)]
        for t in threads:
            t.start()
        probe = http.client.HTTPConnection("127.0.0.1", ports[0], timeout=10)
        latencies = []
        while any(t.is_alive() for t in threads):
            started = time.perf_counter()
            probe.request("GET", "/v2/health/ready")
            response = probe.getresponse()
            response.read()
            latencies.append(time.perf_counter() - started)
            assert response.status == 200
            time.sleep(0.005)
        probe.close()
        for t in threads:
            t.join()
    finally:
        out = stop(proc)
    assert len(answers) == 4 and all(status == 200 for _, _, status in answers), out
    assert len(latencies) >= 10, latencies  # the probe ran while the big answers were made
    slowest = max(latencies)
    assert slowest < 0.1, f"health took {slowest * 1e3:.0f} ms (p50 {np.median(latencies) * 1e3:.1f} ms)"
    session = ort.InferenceSession(str(repo / "se" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"input": x})[0]
    for raw, head, _ in answers:
        np.testing.assert_allclose(decode_output(raw, head), expected, rtol=1e-5, atol=1e-6)
