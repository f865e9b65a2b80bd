"""make docker-test's serving check, run on the host: a tritonclient request from outside the
container must come back with the golden output.

    python tools/docker_serve_check.py --http 127.0.0.1:PORT --model cbam --golden cbam.golden.npz

Waits for ``/v2/health/ready`` (the image's HEALTHCHECK URL), then sends every golden case over HTTP
and compares each output with PyTorch's, at the fp32 tolerance. Exit 0 only when all match.
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.error
import urllib.request

import numpy as np


def wait_ready(http: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"http://{http}/v2/health/ready", timeout=2) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            sys.exit(f"error: http://{http}/v2/health/ready not ready after {timeout_s:.0f} s")
        time.sleep(1)


def infer_golden(http: str, model: str, golden_path: str) -> bool:
    """Send each golden case through tritonclient.http; print one line per output."""
    import tritonclient.http as httpclient

    from attn_export.runtime.compare import compare
    from attn_export.runtime.golden import load_golden

    client = httpclient.InferenceServerClient(http)
    passed = True
    for case in load_golden(golden_path).cases:
        inputs = []
        for name, array in case.inputs.items():
            tensor = httpclient.InferInput(name, list(array.shape), "FP32")
            tensor.set_data_from_numpy(np.ascontiguousarray(array, dtype=np.float32))
            inputs.append(tensor)
        outputs = [httpclient.InferRequestedOutput(n) for n in case.outputs]
        result = client.infer(model, inputs, outputs=outputs)
        for name, expected in case.outputs.items():
            got = compare(result.as_numpy(name), expected, "fp32", name)
            passed &= got.passed
            print(f"{case.name} {name}: max abs {got.max_abs:.2e} "
                  f"{'pass' if got.passed else 'FAIL'}")
    return passed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http", required=True, help="host:port of the server's HTTP endpoint")
    parser.add_argument("--model", required=True)
    parser.add_argument("--golden", required=True)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    wait_ready(args.http, args.timeout)
    if not infer_golden(args.http, args.model, args.golden):
        sys.exit("error: the served model's outputs differ from the golden file")
    print(f"serve check: {args.model} over http://{args.http} matches {args.golden}")


if __name__ == "__main__":
    main()
