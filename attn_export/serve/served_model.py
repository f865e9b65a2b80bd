"""One model as the server holds it: its config, its runners (one per instance), its batcher,
its statistics, and whether it is ready (and if not, why)."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import numpy as np

from attn_export.serve.backends import make_runner, model_file_for
from attn_export.serve.batcher import Batcher, BatchTiming
from attn_export.serve.config import DEFAULT_MAX_QUEUE
from attn_export.serve.config_checks import feed_dtype
from attn_export.serve.dtypes import protocol_dtype
from attn_export.serve.errors import BadRequest, Unavailable
from attn_export.serve.repository import RepoModel
from attn_export.serve.stats import ModelStats

INT64_FIELDS = {"dims", "max_queue_delay_microseconds", "default_timeout_microseconds", "shape"}
BACKEND_OF_PLATFORM = {"onnxruntime_onnx": "onnxruntime", "tensorrt_plan": "tensorrt"}


def config_json(cfg) -> dict:
    """The config as Triton's ``GET v2/models/{m}/config`` returns it: field names as in the
    proto, int64 values as numbers (protobuf's JSON would quote them), ``backend`` filled in."""
    from google.protobuf.json_format import MessageToDict

    data = MessageToDict(cfg, preserving_proto_field_name=True)
    data.setdefault("backend", BACKEND_OF_PLATFORM.get(cfg.platform, ""))
    data.setdefault("max_batch_size", 0)
    data.setdefault("version_policy", {"latest": {"num_versions": 1}})

    def ints(node):
        if isinstance(node, dict):
            return {k: ([int(x) for x in v] if isinstance(v, list) else int(v))
                    if k in INT64_FIELDS and not isinstance(v, dict) else ints(v) for k, v in node.items()}
        if isinstance(node, list):
            return [ints(x) for x in node]
        return node

    return ints(data)


def engine_profile(plan: Path) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """Profile 0's (min, max) per input, from the engine's sidecar (none: no check here, the
    runner still refuses)."""
    from attn_export.runtime.sidecar import read_sidecar

    sidecar = read_sidecar(plan)
    ranges: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
    for p in (sidecar.profiles if sidecar is not None else []):
        ranges.setdefault(str(p["name"]), (tuple(int(d) for d in p["min"]),
                                           tuple(int(d) for d in p["max"])))
    return ranges


class ServedModel:
    """Loads, checks and serves one repository model.

    Args:
        entry: the model folder as read by :func:`scan_repository` (``problem`` set if unusable).
        backend: ``auto`` (from the platform), ``onnxruntime`` or ``tensorrt``.
    """

    def __init__(self, entry: RepoModel, backend: str = "auto", metrics=None) -> None:
        self.entry = entry
        self.name, self.version = entry.name, entry.version or "1"
        self.config = entry.config
        self.backend = backend
        self.metrics = metrics
        self.state = "UNAVAILABLE" if entry.problem else "LOADING"
        self.reason = entry.problem or ""
        self.stats = ModelStats(self.name, self.version)
        self.batcher: Batcher | None = None
        self._children = None
        self.runners: list = []
        cfg = self.config
        self.max_batch = int(cfg.max_batch_size) if cfg is not None else 0
        self.inputs = {t.name: (feed_dtype(t), tuple(t.dims)) for t in cfg.input} if cfg else {}
        self.outputs = {t.name: (feed_dtype(t), tuple(t.dims)) for t in cfg.output} if cfg else {}
        self.model_file: Path | None = None
        """The file the runners loaded (for TensorRT, the plan picked for this GPU)."""
        self.profile: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
        """Input name -> (min, max) shape of the engine's profile 0 (TensorRT models only)."""

    @property
    def ready(self) -> bool:
        return self.state == "READY"

    def load(self) -> None:
        """Open one runner per instance and check the first against the golden file (blocking:
        called in a thread). Failures leave the model UNAVAILABLE with the reason."""
        if self.entry.problem:
            return
        try:
            chosen, path = self._model_file()
            self.model_file = path
            count = sum(g.count for g in self.config.instance_group) or 1
            self.runners = [make_runner(chosen, path).load() for _ in range(count)]
            if chosen == "tensorrt":
                self.profile = engine_profile(path)
            if self.entry.golden is not None:
                self._check_golden(self.runners[0])
        except Exception as exc:  # any load failure makes this model, not the server, unavailable
            self.state, self.reason = "UNAVAILABLE", str(exc).splitlines()[0] if str(exc) else repr(exc)
            return
        self.state = "READY"

    def _model_file(self) -> tuple[str, Path]:
        """(backend, file) to load: for TensorRT, the plan ``cc_model_filenames`` names for this
        GPU when the config has that map (refused when it has none for this GPU)."""
        from attn_export.serve.device_plans import plan_for_device

        cfg = self.config
        forced = self.backend if self.backend != "auto" else None
        if (forced or BACKEND_OF_PLATFORM.get(cfg.platform)) == "tensorrt":
            picked = plan_for_device(cfg, self.entry.path.parent, self.name)
            if picked is not None:
                return "tensorrt", picked
        return model_file_for(self.entry.path, cfg.platform, self.backend)

    def _check_golden(self, runner) -> None:
        from attn_export.errors import ModelFileError
        from attn_export.runtime.golden import load_golden
        from attn_export.runtime.validate import validate_runner

        rows = validate_runner(runner, load_golden(self.entry.golden), self.entry.precision)
        bad = [r for r in rows if not r.comparison.passed]
        if bad:
            worst = max(bad, key=lambda r: r.comparison.max_abs)
            raise ModelFileError(f"golden check failed: {len(bad)} of {len(rows)} outputs beyond the "
                                 f"{self.entry.precision} tolerance (worst: case {worst.case}, max abs "
                                 f"{worst.comparison.max_abs:.3g})")

    def start(self, max_queue: int | None = None) -> None:
        """Start the batcher on the running loop (after :meth:`load` succeeded)."""
        if not self.ready:
            return
        db = self.config.dynamic_batching if self.config.HasField("dynamic_batching") else None
        queue = max_queue or (db.default_queue_policy.max_queue_size if db else 0) or DEFAULT_MAX_QUEUE
        delay = int(db.max_queue_delay_microseconds) if db else 0
        self.batcher = Batcher(self.runners, self.max_batch if db else 0, delay, queue,
                               self._on_batch)
        self.batcher.start()

    def _on_batch(self, timing: BatchTiming) -> None:
        if timing.ok:
            self.stats.record_batch(timing.rows, timing.requests, timing.queue_s, timing.compute_s)
        if self.metrics is not None:
            queue, compute, rows, depth = self._metric_children()
            for q in timing.queue_s:
                queue.observe(q)
            compute.observe(timing.compute_s)
            rows.observe(timing.rows)
            depth.set(self.batcher.depth if self.batcher else 0)

    def _metric_children(self) -> tuple:
        """This model's labelled metrics, looked up once (``labels()`` costs a locked lookup)."""
        if self._children is None:
            m, labels = self.metrics, (self.name, self.version)
            self._children = (m.queue_seconds.labels(*labels), m.compute_seconds.labels(*labels),
                              m.batch_rows.labels(*labels), m.queue_depth.labels(*labels))
        return self._children

    def check_inputs(self, feed: dict[str, np.ndarray]) -> int:
        """Refuse a feed the config does not describe (names, dtype, shape); returns its rows."""
        if set(feed) != set(self.inputs):
            missing, extra = sorted(set(self.inputs) - set(feed)), sorted(set(feed) - set(self.inputs))
            raise BadRequest(f"model {self.name!r} expects inputs {sorted(self.inputs)}"
                             + (f"; missing {missing}" if missing else "")
                             + (f"; unexpected {extra}" if extra else ""))
        rows = 1
        for name, array in feed.items():
            dtype, dims = self.inputs[name]
            if array.dtype != dtype:
                raise BadRequest(f"input {name!r}: datatype {protocol_dtype(array.dtype)}, the model "
                                 f"expects {protocol_dtype(dtype)}")
            want = ((-1,) if self.max_batch > 0 else ()) + dims
            shape = array.shape
            if len(shape) != len(want) or any(w not in (-1, s) for w, s in zip(want, shape)) \
                    or 0 in shape:
                raise BadRequest(f"input {name!r}: shape {list(shape)}, the model expects {list(want)} "
                                 "(-1 = any positive size" + (", first dim = batch)" if self.max_batch
                                                              else ")"))
            self._check_profile(name, shape)
            if self.max_batch > 0:
                if shape[0] > self.max_batch:
                    raise BadRequest(f"input {name!r}: batch {shape[0]} exceeds max_batch_size "
                                     f"{self.max_batch}; split the request")
                rows = shape[0]
        return rows

    def _check_profile(self, name: str, shape: tuple[int, ...]) -> None:
        """A shape the engine cannot run is the request's fault (400, as Triton answers), caught
        before it is queued rather than as the engine's failure inside a batch."""
        if name not in self.profile:
            return
        lo, hi = self.profile[name]
        if len(lo) == len(shape) and not all(a <= d <= b for a, d, b in zip(lo, shape, hi)):
            fmt = "x".join
            raise BadRequest(f"input {name!r}: shape {fmt(map(str, shape))} is outside the engine's "
                             f"profile {fmt(map(str, lo))} .. {fmt(map(str, hi))}; send a shape in "
                             "that range or rebuild the engine with wider --min-shape/--max-shape")

    def refuse_if_busy(self) -> None:
        """Before a request's body is read: not ready, or its queue already full (503)."""
        if not self.ready or self.batcher is None:
            raise Unavailable(f"model {self.name!r} is not ready: {self.reason or self.state.lower()}")
        if self.batcher.full:
            raise Unavailable(f"model {self.name!r}: queue full ({self.batcher.max_queue} requests "
                              "waiting); retry later or raise max_queue_size / add instances")

    def arriving(self):
        """Context for receiving one request (see :meth:`Batcher.arriving`)."""
        if self.batcher is None:
            return contextlib.nullcontext()
        return self.batcher.arriving()

    async def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self.ready or self.batcher is None:
            raise Unavailable(f"model {self.name!r} is not ready: {self.reason or self.state.lower()}")
        rows = self.check_inputs(feed)
        started = time.perf_counter()
        ok = False
        try:
            outputs = await self.batcher.submit(feed, rows)
            ok = True
            return outputs
        finally:
            self.stats.record_request(time.perf_counter() - started, ok)

    def metadata(self) -> dict:
        batch = [-1] if self.max_batch > 0 else []
        return {"name": self.name, "versions": [self.version], "platform": self.config.platform
                if self.config else "",
                "inputs": [{"name": n, "datatype": protocol_dtype(d), "shape": [*batch, *dims]}
                           for n, (d, dims) in self.inputs.items()],
                "outputs": [{"name": n, "datatype": protocol_dtype(d), "shape": [*batch, *dims]}
                            for n, (d, dims) in self.outputs.items()]}

    async def close(self) -> None:
        if self.batcher is not None:
            await self.batcher.close()
        for runner in self.runners:
            runner.close()
