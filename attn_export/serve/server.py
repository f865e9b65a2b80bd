"""``attn-export serve``: load a repository, serve HTTP, gRPC and metrics on one event loop.

Stopping (SIGTERM or SIGINT) works at any time, also as PID 1 of a container (which ignores a
signal it has no handler for): while models load, the process exits at once (it has written
nothing and answered nothing, so there is nothing to finish); while serving, readiness turns
non-2xx, listeners stop accepting, batchers run what they hold without waiting out their queue
delay, requests already accepted are answered, and the process exits 0. The drain is bounded by
``--grace`` (default 5 s, under ``docker stop``'s 10 s): past it, or on a second signal, the
process exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import socket
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from attn_export.errors import AttnExportError


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    backend: str = "auto"
    strict: bool = False
    max_request_bytes: int = 64 << 20
    grace_s: float = 5.0
    """Seconds the drain may take after SIGTERM; below Docker's default stop timeout (10 s)."""
    max_inflight_bytes: int = 256 << 20
    """What requests in flight may hold in memory together (see serve/budget.py); the default
    suits an 8 GB Orin Nano."""
    keep_alive_s: float = 75.0
    """Idle HTTP keep-alive: above the idle timeout of the balancers in front (AWS ALB and nginx
    60 s), so the balancer, not the server, closes an idle connection (uvicorn's 5 s makes a
    balancer's reuse of a connection the server just closed fail with 502)."""


class Server:
    """One serving process over ``repo``; :meth:`serve` runs until :meth:`stop` or a signal."""

    def __init__(self, repo: str | Path, options: ServeOptions = ServeOptions(), log=print) -> None:
        self.repo = Path(repo)
        self.options = options
        self.log = log
        self.core = None
        self.budget = None
        self.started = asyncio.Event()
        self._stop: asyncio.Event | None = None
        self._http = None
        self.on_stop_requested = lambda: None
        """Called once when a stop begins (the process watchdog hooks in here)."""

    def _build_core(self):
        from attn_export.serve.core import InferenceCore
        from attn_export.serve.metrics import Metrics
        from attn_export.serve.repository import scan_repository
        from attn_export.serve.served_model import ServedModel

        metrics = Metrics()
        models = [ServedModel(entry, self.options.backend, metrics) for entry in scan_repository(self.repo)]
        return InferenceCore(models, metrics)

    def _report_models(self) -> None:
        for m in self.core.models.values():
            cfg = m.config
            if m.ready:
                picked = f" {m.model_file.name}" if cfg.cc_model_filenames and m.model_file else ""
                self.log(f"{m.name} v{m.version}: ready ({cfg.platform}{picked} on {m.runners[0].name}, "
                         f"max_batch_size {m.max_batch}, {len(m.runners)} instance(s)"
                         + (", golden check passed)" if m.entry.golden else ", no golden file)"))
            else:
                self.log(f"{m.name}: NOT READY: {m.reason}")
        bad = [m for m in self.core.models.values() if not m.ready]
        if bad and self.options.strict:
            raise AttnExportError(f"--strict: {len(bad)} model(s) not ready: "
                                  + "; ".join(f"{m.name}: {m.reason}" for m in bad))

    def _http_server(self):
        import uvicorn

        from attn_export.serve.protocol_http import make_app

        class QuietSignals(uvicorn.Server):
            """uvicorn re-raises a caught SIGTERM after shutdown (exit -15); we handle signals."""

            @contextlib.contextmanager
            def capture_signals(self):
                yield

        o = self.options
        config = uvicorn.Config(make_app(self.core, o.max_request_bytes, self.budget), host=o.host,
                                port=o.http_port, log_level="warning", access_log=False, lifespan="off",
                                limit_concurrency=MAX_HTTP_CONNECTIONS,
                                http="httptools", timeout_keep_alive=o.keep_alive_s,
                                timeout_graceful_shutdown=max(1, math.ceil(o.grace_s)))
        return QuietSignals(config)

    async def serve(self) -> None:
        """Load, check, listen; return after a clean shutdown."""
        from attn_export.serve.metrics import start_metrics_server
        from attn_export.serve.protocol_grpc import grpc_address, make_grpc_server

        o = self.options
        self._stop = asyncio.Event()
        from attn_export.serve.budget import MemoryBudget

        self.core = self._build_core()
        self.budget = MemoryBudget(o.max_inflight_bytes)
        self._install_signals()
        self.log(f"loading {len(self.core.models)} model(s) from {self.repo}")
        await self.core.load_all()
        try:
            self._report_models()
        except AttnExportError:
            await self.core.close()
            raise
        try:
            grpc_server, _ = make_grpc_server(self.core, o.host, o.grpc_port, o.max_request_bytes,
                                                self.budget)
        except AttnExportError:
            await self.core.close()
            raise
        await grpc_server.start()
        try:
            metrics_http = start_metrics_server(self.core.metrics, o.host, o.metrics_port) \
                if o.metrics_port >= 0 else None
        except AttnExportError:
            await grpc_server.stop(0)
            await self.core.close()
            raise
        self._http = self._http_server()
        try:
            sock = bind_socket(o.host, o.http_port)
        except AttnExportError:
            await grpc_server.stop(0)
            await self.core.close()
            raise
        http_task = asyncio.create_task(self._http.serve(sockets=[sock]))
        while not self._http.started and not http_task.done():
            await asyncio.sleep(0.01)
        if http_task.done():  # bind failure: uvicorn logged it and returned
            await grpc_server.stop(0)
            await self.core.close()
            raise AttnExportError(f"cannot serve HTTP on {o.host}:{o.http_port} (port in use?); "
                                  "pass --http-port")
        http_at, grpc_at, metrics_at = (grpc_address(o.host, p)  # [::]:8000 for an IPv6 host
                                        for p in (o.http_port, o.grpc_port, o.metrics_port))
        self.log(f"serving {len(self.core.models)} model(s) from {self.repo}: HTTP {http_at}, "
                 f"gRPC {grpc_at}" + (f", metrics {metrics_at}/metrics" if metrics_http else ""))
        self.started.set()
        await self._stop.wait()
        await self._shutdown(http_task, grpc_server, metrics_http)

    def _install_signals(self) -> None:
        """Handlers on the loop (main thread only: a no-op in the tests' threads). Installed
        before loading: loading runs in worker threads, and a signal must wake the loop."""
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: int) -> None:
        if not self.started.is_set():  # loading: nothing accepted yet, nothing to drain
            _exit_while_loading(self)(sig, None)
        if self._stop is not None and self._stop.is_set():
            self.log(f"{signal.Signals(sig).name} again: exiting without waiting for the drain")
            hard_exit(0)
        self.stop()

    def stop(self) -> None:
        """Begin a graceful shutdown (safe to call from the loop's thread only)."""
        if self._stop is not None and not self._stop.is_set():
            self._stop.set()
            self.on_stop_requested()

    async def _shutdown(self, http_task, grpc_server, metrics_http) -> None:
        self.core.stopping = True
        self.core.flush_batchers()  # queued requests run now, not after their queue delay
        self._http.should_exit = True
        await asyncio.gather(http_task, grpc_server.stop(self.options.grace_s))
        await self.core.close()
        if metrics_http is not None:
            server, thread = metrics_http
            server.shutdown()
            server.server_close()
        self.log("stopped: every accepted request was answered")


def bind_socket(host: str, port: int) -> socket.socket:
    """The HTTP listening socket, bound here so a busy port is one line, not uvicorn's exit 3."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise AttnExportError(f"cannot serve HTTP on {host}:{port} ({exc.strerror}); pass --http-port") \
            from None
    sock.set_inheritable(True)
    return sock


MAX_HTTP_CONNECTIONS = 512
"""uvicorn's limit_concurrency: open connections (and tasks) past it get 503 at once; each
connection's unread body is held back by uvicorn's flow control, so this bounds socket buffers."""

SWITCH_INTERVAL_S = 0.001
"""How long a thread holding the GIL (JSON encoding, numpy copies) may keep it while the event loop
waits: 1 ms instead of CPython's 5 ms, since the loop needs it several times per request."""


M_ARENA_MAX, M_MMAP_THRESHOLD = -8, -3
"""glibc ``mallopt`` parameters (malloc.h)."""
MMAP_THRESHOLD = 4 << 20
"""Buffers from this size up are mapped and unmapped per use. Not lower: a fresh mapping costs a
page fault per 4 KiB, measured at ~0.7 ms of CPU per request when 256 KiB tensors were mapped."""


def return_freed_memory_promptly() -> None:
    """glibc malloc tuned for a server whose requests come and go in MiB-sized buffers: buffers
    from :data:`MMAP_THRESHOLD` up are mapped and unmapped (not kept in the heap, where glibc's
    adaptive threshold would put them after the first free), in at most two arenas (not one per thread
    that ever allocated: the loop, each instance, gRPC's and the codec's threads). Measured: a
    flood of 2 MiB requests otherwise grows RSS ~2x past what the requests hold. A no-op off glibc."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        libc.mallopt(M_ARENA_MAX, 2)
    except (OSError, AttributeError):
        pass


def hard_exit(code: int) -> None:
    """Leave now, even with worker threads inside a model call (they hold nothing on disk)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _exit_while_loading(server: Server):
    """The handler from process start until serving begins: a stop during loading exits at once."""
    def handler(signum, _frame) -> None:
        server.log(f"{signal.Signals(signum).name}: stopped while loading; nothing was served")
        hard_exit(0)

    return handler


def _arm_watchdog(server: Server) -> None:
    """Bound the drain: ``grace`` seconds (plus a margin for closing the listeners), then exit."""
    limit = server.options.grace_s + 1.0

    def expire() -> None:
        server.log(f"drain still running after --grace {server.options.grace_s:g} s: exiting")
        hard_exit(0)

    timer = threading.Timer(limit, expire)
    timer.daemon = True
    timer.start()


def run_server(repo: str | Path, options: ServeOptions) -> None:
    """Run until SIGTERM/SIGINT (blocking). Signals are handled from here on, also while models
    load: PID 1 (a container without an init) ignores any signal it has no handler for."""
    server = Server(repo, options, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    return_freed_memory_promptly()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit_while_loading(server))
    server.on_stop_requested = lambda: _arm_watchdog(server)
    asyncio.run(server.serve())
